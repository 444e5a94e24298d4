//! Images of another platform than the host's (issue 10, defect 6): `skiff
//! image import` warns, naming the image's platform and the host's, and
//! `skiff run` warns as `docker run` does before the job fails to exec. The
//! images are built on the fly; their configs claim the other platform, and
//! their one "binary" is an ELF header for that machine.

mod support;

use std::process::Output;

use imagestore::Platform;
use sha2::Digest as _;
use support::env::Env;
use support::privilege::{is_root, prerequisite};
use support::tar::{docker_save, layer, Entry};

/// The architecture that is not the host's.
fn other_arch() -> &'static str {
    if Platform::host().arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// A 64-bit little-endian ELF header for `arch`: the kernel refuses it on
/// any other machine with ENOEXEC ("exec format error").
fn elf_header(arch: &str) -> Vec<u8> {
    let machine: u16 = if arch == "arm64" { 0xb7 } else { 0x3e };
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h
}

/// A `docker save` archive of one layer holding `/x`, whose config claims
/// `linux/<arch>`, tagged `tag`.
fn foreign_archive(env: &Env, arch: &str, tag: &str) -> std::path::PathBuf {
    let l = layer(&[Entry::File("x".into(), elf_header(arch), 0o755)]);
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&l)));
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let path = env.path(&format!("{arch}.tar"));
    std::fs::write(
        &path,
        docker_save(&[("l/layer.tar".into(), l)], &config, tag),
    )
    .expect("write archive");
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn test_platform_import_of_a_foreign_image_warns_naming_both_platforms() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let other = other_arch();
    let archive = foreign_archive(&env, other, "foreign:1");
    let path = archive.to_str().expect("utf8");
    let out = env.run(&["image", "import", path]);
    assert!(out.status.success(), "imports: {}", stderr(&out));
    let err = stderr(&out);
    let host = Platform::host().to_string();
    assert!(
        err.contains("warning:")
            && err.contains(&format!("linux/{other}"))
            && err.contains(&format!("({host})")),
        "the import warns, naming linux/{other} and the host's {host}: {err:?}"
    );
    // In the JSON report too.
    let report = env.json(&["image", "import", path]);
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains(&format!("linux/{other}")), "{report}");

    // An image for this host: no such warning.
    let native = foreign_archive(&env, &Platform::host().arch, "native:1");
    let out = env.run(&["image", "import", native.to_str().expect("utf8")]);
    assert!(out.status.success(), "imports: {}", stderr(&out));
    assert!(!stderr(&out).contains("does not match"), "{}", stderr(&out));

    // Asked for explicitly: no warning.
    let out = env.run(&[
        "image",
        "import",
        "--platform",
        &format!("linux/{other}"),
        path,
    ]);
    assert!(out.status.success(), "imports: {}", stderr(&out));
    assert!(!stderr(&out).contains("does not match"), "{}", stderr(&out));
}

#[test]
fn test_platform_run_of_a_foreign_image_warns_before_exec_fails() {
    let Some(run) = support::run::env() else {
        return;
    };
    let other = other_arch();
    let env = Env::new();
    let archive = foreign_archive(&env, other, "foreign:1");
    let path = archive.to_str().expect("utf8");
    let out = run.skiff(&["image", "import", path]);
    assert!(out.status.success(), "imports: {}", stderr(&out));
    let host = Platform::host().to_string();
    let docker = format!(
        "The requested image's platform (linux/{other}) does not match the detected host \
         platform ({host}) and no specific platform was requested"
    );
    for image in ["foreign:1", path] {
        let out = run.run(None, &[image]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{image}: the exec fails: {err}");
        let warned = err
            .find(&docker)
            .unwrap_or_else(|| panic!("{image}: Docker's warning on stderr: {err:?}"));
        let failed = err
            .to_ascii_lowercase()
            .find("exec format error")
            .unwrap_or_else(|| panic!("{image}: the exec error on stderr: {err:?}"));
        assert!(
            warned < failed,
            "{image}: warned before the failure: {err:?}"
        );
    }
    // `skiff run ARCHIVE` on a store that lacks it imports it on the way
    // and prints that import's warning too.
    let Some(fresh) = support::run::env() else {
        return;
    };
    let out = fresh.run(None, &[path]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "skiff: warning: image docker.io/library/foreign:1 is for platform linux/{other}"
        )),
        "the import's warning: {err:?}"
    );
    fresh.assert_clean("no job state left", "no job cgroup left");
    // A native image is not warned about.
    let out = run.run(None, &[support::run::BUSYBOX, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("does not match"), "{}", stderr(&out));
    run.assert_clean("no job state left", "no job cgroup left");
}
