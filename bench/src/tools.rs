//! The other tools a benchmark runs: their versions, and running one to
//! completion with its failure kept.

use std::process::{Command, Stdio};

use crate::error::RunError;

/// First line of `tool ARGS`'s output.
pub(crate) fn tool_version(tool: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The last three non-empty lines of a program's stderr, on one line.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// Run a command to completion (no input); its output, or why it failed
/// (it could not start, or exited unsuccessfully: its status and stderr).
pub(crate) fn run_checked(cmd: &mut Command) -> Result<std::process::Output, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(RunError::Exit {
            program,
            status: out.status,
            stderr: tail(&out.stderr),
        })
    }
}
