//! Docker's exit statuses, in one place. A job's own status is 0–255;
//! death by signal N is 128+N; these mean something of their own.

/// skiff (or the daemon, under Docker) failed: the job did not run.
pub const SKIFF_FAILED: i32 = 125;
/// The command was found but cannot be invoked.
pub const CANNOT_INVOKE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// Killed by SIGKILL, as after an OOM kill (128 + 9).
pub const KILLED: i32 = 128 + libc::SIGKILL;

/// A status as a process exit code (0–255).
pub fn as_process_status(code: i32) -> u8 {
    code.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_codes_docker_values() {
        assert_eq!(
            (SKIFF_FAILED, CANNOT_INVOKE, NOT_FOUND, KILLED),
            (125, 126, 127, 137)
        );
        assert_eq!(as_process_status(-1), 0);
        assert_eq!(as_process_status(300), 255);
        assert_eq!(as_process_status(137), 137);
    }
}
