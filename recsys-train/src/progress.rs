//! Progress reporting for long jobs (indicatif on stderr; silent when quiet or not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a long job reports progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// No bars and no summary lines.
    pub quiet: bool,
}

impl Progress {
    /// A progress reporter that prints nothing.
    pub fn quiet() -> Self {
        Progress { quiet: true }
    }

    /// A bar of `len` steps with a message; hidden when quiet (and by indicatif when stderr is
    /// not a terminal).
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(len), self.target());
        pb.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.set_message(message.to_string());
        pb
    }

    /// A spinner counting items of unknown total.
    pub fn counter(&self, message: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(None, self.target());
        pb.set_style(
            ProgressStyle::with_template("{msg:>12} {spinner} {human_pos} {per_sec} {elapsed}")
                .expect("static template"),
        );
        pb.set_message(message.to_string());
        pb
    }

    /// Prints a one-line summary on stderr unless quiet.
    pub fn summary(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}
