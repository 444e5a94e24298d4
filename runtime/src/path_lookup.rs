//! `PATH` lookup: on the host (runtime binaries, benchmark tools) and in a
//! job's environment (the executor's candidates).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::image_process::DEFAULT_PATH;

/// The first executable regular file called `name` on the host's `PATH`.
pub fn find_on_host(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The value of `PATH` in a job environment (`KEY=VALUE` entries), or
/// [`DEFAULT_PATH`].
pub fn path_of(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// `dir/cmd` for each non-empty directory of a job's `PATH`, in order.
pub fn candidates<'a>(env: &'a [String], cmd: &'a str) -> impl Iterator<Item = String> + 'a {
    path_of(env)
        .split(':')
        .filter(|d| !d.is_empty())
        .map(move |d| format!("{}/{}", d.trim_end_matches('/'), cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_path_candidates() {
        let env = vec!["PATH=/a/:/b::/c".to_string()];
        let c: Vec<String> = candidates(&env, "sh").collect();
        assert_eq!(c, ["/a/sh", "/b/sh", "/c/sh"]);
        assert_eq!(path_of(&[]), DEFAULT_PATH);
    }

    #[test]
    fn host_lookup_finds_sh_only_if_executable() {
        assert!(find_on_host("sh").is_some());
        assert!(find_on_host("no-such-tool-skiff").is_none());
    }
}
