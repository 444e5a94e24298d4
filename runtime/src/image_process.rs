//! Docker's rules for turning an image config plus overrides into a process:
//! Entrypoint/Cmd, and the environment.

use crate::error::{Error, Result};

/// The PATH Docker sets when neither the image nor the request has one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argv of the job.
///
/// - `--entrypoint` replaces the image's Entrypoint *and* discards its Cmd
///   (an empty override clears the Entrypoint);
/// - a non-empty command replaces the image's Cmd;
/// - argv = Entrypoint ++ Cmd, which must not be empty.
pub fn process_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint_override: Option<&[String]>,
    command: &[String],
) -> Result<Vec<String>> {
    let (entrypoint, default_cmd): (&[String], &[String]) = match entrypoint_override {
        Some(ep) => (ep, &[]),
        None => (image_entrypoint.unwrap_or(&[]), image_cmd.unwrap_or(&[])),
    };
    let cmd = if command.is_empty() {
        default_cmd
    } else {
        command
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if args.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(args)
}

fn key_of(entry: &str) -> &str {
    entry.split_once('=').map(|(k, _)| k).unwrap_or(entry)
}

/// The environment, in Docker's order: a default `PATH` and `HOSTNAME`,
/// then the image's Env and the overrides (a later `KEY=…` replaces an
/// earlier one in place), and `HOME` from the user's passwd entry if unset.
pub fn merge_env(
    image_env: &[String],
    overrides: &[String],
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::with_capacity(image_env.len() + overrides.len() + 3);
    let set = |env: &mut Vec<String>, entry: &str| {
        if !entry.contains('=') {
            return;
        }
        let key = key_of(entry);
        if let Some(slot) = env.iter_mut().find(|e| key_of(e) == key) {
            *slot = entry.to_string();
        } else {
            env.push(entry.to_string());
        }
    };
    // Docker's order: its default PATH and HOSTNAME first, then the image's
    // and the caller's entries, each replacing an earlier one in place.
    set(&mut env, &format!("PATH={DEFAULT_PATH}"));
    set(&mut env, &format!("HOSTNAME={hostname}"));
    for e in image_env.iter().chain(overrides) {
        set(&mut env, e);
    }
    if !env.iter().any(|e| key_of(e) == "HOME") {
        set(&mut env, &format!("HOME={home}"));
    }
    env
}

/// Parse an `--env-file`: one `KEY=VALUE` or `KEY` a line; `#` comments and
/// blank lines are skipped. A bare `KEY` takes its value from `lookup`
/// (the caller's environment), and is dropped when that has none.
pub fn parse_env_file(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.extend(expand_env_arg(line, &lookup));
    }
    out
}

/// One `-e` argument: `KEY=VALUE` as is, `KEY` from `lookup`.
pub fn expand_env_arg(arg: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    if arg.contains('=') {
        Some(arg.to_string())
    } else {
        lookup(arg).map(|v| format!("{arg}={v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn test_process_args_docker_rules() {
        let ep = v(&["/bin/echo", "compat:"]);
        let cmd = v(&["default-cmd"]);
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &[]).expect("ok"),
            v(&["/bin/echo", "compat:", "default-cmd"])
        );
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &v(&["a", "b"])).expect("ok"),
            v(&["/bin/echo", "compat:", "a", "b"])
        );
        // --entrypoint discards the image's Cmd.
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), Some(&v(&["id"])), &[]).expect("ok"),
            v(&["id"])
        );
        // --entrypoint "" clears it; the command then runs alone.
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), Some(&[]), &v(&["ls"])).expect("ok"),
            v(&["ls"])
        );
        assert!(matches!(
            process_args(None, None, None, &[]),
            Err(Error::NoCommand)
        ));
    }

    #[test]
    fn test_merge_env_overrides_and_defaults() {
        let env = merge_env(&v(&["A=1", "B=2"]), &v(&["B=3", "C=4"]), "h", "/root");
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"B=3".to_string()));
        assert!(!env.contains(&"B=2".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
        assert!(env.contains(&"HOME=/root".to_string()));
        let env = merge_env(&v(&["PATH=/x"]), &v(&["HOME=/h"]), "h", "/root");
        assert!(env.contains(&"PATH=/x".to_string()));
        assert!(env.contains(&"HOME=/h".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
        // Docker's order: PATH (replaced in place), HOSTNAME, the rest, HOME.
        let env = merge_env(&v(&["A=1", "PATH=/x"]), &[], "h", "/root");
        assert_eq!(env, v(&["PATH=/x", "HOSTNAME=h", "A=1", "HOME=/root"]));
    }

    #[test]
    fn test_parse_env_file_lookup() {
        let text = "# c\nA=1\n\nB\nMISSING\n";
        let env = parse_env_file(text, |k| (k == "B").then(|| "x".to_string()));
        assert_eq!(env, v(&["A=1", "B=x"]));
    }
}
