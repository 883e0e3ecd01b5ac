//! Progress on stderr for long work (reading big inputs, the matrix, connectivity, lint, the
//! report, the lab's probes): one look for all commands, drawn only when stderr is a terminal,
//! so pipes, files and CI logs get nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

fn shown() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner saying what is being done, with the time taken so far.
pub fn spinner(what: impl Into<String>) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    s.set_message(what.into());
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// A bar over `len` units of work, with what is being done and the time left.
pub fn bar(len: u64, what: impl Into<String>) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template("{spinner} {msg} {bar:30} {pos}/{len} ({eta})").expect("valid template"));
    b.set_message(what.into());
    b.enable_steady_tick(Duration::from_millis(120));
    b
}
