//! The privilege gate: the one place that reads `SKIFF_REQUIRE_PRIVILEGED`.
//!
//! Without it (or with any value other than `1`) a test whose prerequisite
//! is missing prints why and skips; with `SKIFF_REQUIRE_PRIVILEGED=1` (CI)
//! the same test fails.

use std::io::Write as _;
use std::path::Path;

/// The variable CI sets to `1` to make a missing prerequisite a failure.
pub const REQUIRE_PRIVILEGED: &str = "SKIFF_REQUIRE_PRIVILEGED";

/// Whether CI demands that privileged prerequisites are present.
pub fn require_privileged() -> bool {
    std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v == "1")
}

/// A prerequisite is missing (`why`): fail under
/// `SKIFF_REQUIRE_PRIVILEGED=1`, otherwise say that the test (or the part
/// of it that needs the prerequisite) is skipped. The message goes to the
/// real stderr, so it shows even when the harness captures output.
pub fn skip_or_fail(why: &str) {
    if require_privileged() {
        panic!("{why} ({REQUIRE_PRIVILEGED}=1: a missing prerequisite is a failure)");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why} (set {REQUIRE_PRIVILEGED}=1 to make this a failure)"
    );
}

/// `true` when `ok`; otherwise skip or fail (see [`skip_or_fail`]) because
/// the test needs `what`, and `false`.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if !ok {
        skip_or_fail(&format!("needs {what}"));
    }
    ok
}

/// `true` when nothing is missing; otherwise skip or fail with the reason.
pub fn gate(missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) => {
            skip_or_fail(&why);
            false
        }
    }
}

/// Root is needed for chown, mknod, trusted xattrs and mounts.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What launching a job needs (root, overlayfs, a cgroup filesystem), or
/// the first thing missing.
pub fn missing_for_jobs() -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.contains("overlay") {
        return Some("overlayfs is not available".into());
    }
    if !Path::new("/sys/fs/cgroup").exists() {
        return Some("no cgroup filesystem".into());
    }
    None
}
