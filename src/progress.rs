//! The progress bar of long store commands (import, pull).

use std::io::IsTerminal;
use std::time::Duration;

/// A progress bar on a terminal, hidden otherwise or with `--json`;
/// `doing` names the work (`unpacking`, `pulling`).
pub fn bar(json: bool, doing: &str) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {doing} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
