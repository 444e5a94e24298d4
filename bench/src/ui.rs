//! Where a benchmark reports what it is doing: notes on stderr, and a
//! progress bar over its steps when stderr is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Notes and progress for a benchmark run.
#[derive(Debug, Clone)]
pub struct Ui {
    bar: ProgressBar,
    interactive: bool,
    quiet: bool,
}

impl Ui {
    /// A progress bar when stderr is a terminal and `quiet` is off; notes
    /// are printed to stderr unless `quiet`.
    pub fn new(quiet: bool) -> Ui {
        let interactive = !quiet && std::io::stderr().is_terminal();
        let bar = if interactive {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Ui {
            bar,
            interactive,
            quiet,
        }
    }

    /// No output at all (library use, tests).
    pub fn silent() -> Ui {
        Ui {
            bar: ProgressBar::hidden(),
            interactive: false,
            quiet: true,
        }
    }

    /// Say that contender `name` failed in (0-based) `round` and is dropped;
    /// returns the reason to record in its results.
    pub fn dropped(&self, name: &str, round: usize, e: &dyn std::error::Error) -> String {
        let chain = runtime::error::error_chain(e);
        self.note(format!(
            "{name} failed in round {}; dropping it: {chain}",
            round + 1
        ));
        format!("failed in round {}: {chain}", round + 1)
    }

    /// Print a note above the bar (or plainly, without a terminal).
    pub fn note(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let msg = msg.as_ref();
        if self.interactive {
            self.bar.suspend(|| eprintln!("{msg}"));
        } else {
            eprintln!("{msg}");
        }
    }

    /// Show a spinner with a message (for a long preparation step).
    pub fn spin(&self, msg: impl Into<String>) {
        if !self.interactive {
            return;
        }
        self.bar.reset();
        self.bar.set_length(0);
        self.bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_message(msg.into());
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    /// Start counting `total` steps.
    pub fn steps(&self, total: u64, msg: impl Into<String>) {
        if !self.interactive {
            return;
        }
        self.bar.disable_steady_tick();
        self.bar.reset();
        self.bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}, ~{eta} left]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_message(msg.into());
        self.bar.enable_steady_tick(Duration::from_millis(250));
    }

    /// Change the current message.
    pub fn message(&self, msg: impl Into<String>) {
        if self.interactive {
            self.bar.set_message(msg.into());
        }
    }

    /// One step done.
    pub fn inc(&self) {
        if self.interactive {
            self.bar.inc(1);
        }
    }

    /// Remove the bar.
    pub fn clear(&self) {
        if self.interactive {
            self.bar.disable_steady_tick();
            self.bar.finish_and_clear();
        }
    }
}
