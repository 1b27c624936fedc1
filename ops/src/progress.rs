//! The rollout's progress on stderr: a bar (finished of targeted, with queued, in progress,
//! succeeded and failed) on a terminal, one plain line per change otherwise (CI logs, pipes).
//!
//! Owns: the display only. Must not know: where the counts come from.

use crate::status::Counts;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Call contract: [`Progress::show`] after each look at the job, [`Progress::finish`] once.
pub struct Progress {
    bar: Option<ProgressBar>,
    last: Option<(Counts, u64)>,
}

impl Progress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, last: None }
    }

    /// Shows `counts` against `targets` things.
    pub fn show(&mut self, counts: &Counts, targets: u64) {
        if self.last == Some((*counts, targets)) {
            return;
        }
        self.last = Some((*counts, targets));
        let message = format!(
            "queued {}, in progress {}, succeeded {}, failed {}",
            counts.queued,
            counts.in_progress,
            counts.succeeded,
            counts.unsuccessful()
        );
        let finished = u64::try_from(counts.finished()).unwrap_or(0);
        match &self.bar {
            Some(bar) => {
                bar.set_length(targets);
                bar.set_position(finished);
                bar.set_message(message);
            }
            None => eprintln!("progress: {finished}/{targets} finished; {message}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
