//! Progress reporting for long jobs: indicatif bars on a terminal, plain milestone lines when
//! stderr is a log, nothing when quiet.

use std::io::IsTerminal;

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

    /// Whether long jobs should also report progress as plain lines on stderr: not quiet, and
    /// stderr is not a terminal (a log file, CI, an Airflow task), where indicatif draws nothing.
    pub fn lines(&self) -> bool {
        !self.quiet && !std::io::stderr().is_terminal()
    }

    /// Whether step `step` of `total` is one to log as a line: the first steps (where a GPU
    /// backend compiles its kernels), then every tenth of the run and the last.
    pub fn is_milestone(step: usize, total: usize) -> bool {
        matches!(step, 1..=3 | 5 | 10 | 20) || step == total || step.is_multiple_of(total.div_ceil(10).max(1))
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn milestones_are_the_first_steps_every_tenth_and_the_last() {
        let logged: Vec<usize> = (1..=95).filter(|&s| Progress::is_milestone(s, 95)).collect();
        assert_eq!(logged, [1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]);
        assert!(Progress::is_milestone(1, 1));
        assert_eq!((1..=4).filter(|&s| Progress::is_milestone(s, 4)).count(), 4);
    }

    #[test]
    fn quiet_never_logs_lines() {
        assert!(!Progress::quiet().lines());
    }
}
