//! The `rlq` binary's [`Reporter`]: a progress bar on stderr for each task (invisible when stderr
//! is not a terminal), warnings and messages on stderr as they are.
//!
//! The bar counts a task's units (`3/30 samples`) but moves inside one too: each unit is
//! [`STEPS_PER_UNIT`] bar positions, and [`Event::Within`] (the forwards of an exact patch, the
//! steps of EAP-IG, the tokens of an answer) moves it between them, so the bar, the rate and the
//! ETA advance during a sample that takes minutes, not only when it ends.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanFloatCount, ProgressBar, ProgressState, ProgressStyle};

use crate::report::{Event, Reporter};

/// Bar positions per unit of a task: fine enough for one edge of a 3691-edge exact patch to be
/// ~1/4 position, and the count and rate shown are divided back.
pub const STEPS_PER_UNIT: u64 = 1000;

/// Progress bars and messages on stderr.
#[derive(Default)]
pub struct Terminal {
    bar: Mutex<Option<Bar>>,
}

struct Bar {
    bar: ProgressBar,
    /// Units finished.
    done: u64,
    /// The task's status text ([`Event::Status`]).
    status: String,
    /// One unit's name (`sample` of `samples`).
    one: String,
    /// The progress inside the unit in progress, as shown (`120/3691 forwards`).
    within: String,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal::default()
    }
}

impl Reporter for Terminal {
    fn report(&self, event: &Event) {
        // A panic while drawing leaves nothing half-updated that matters.
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Start { task, total, unit } => {
                if let Some(old) = slot.take() {
                    old.bar.finish_and_clear();
                }
                *slot = Some(Bar::new(task, *total, unit));
            }
            Event::Done { done } => {
                if let Some(b) = slot.as_mut() {
                    b.done = *done as u64;
                    b.within.clear();
                    b.bar.set_position(b.done * STEPS_PER_UNIT);
                    b.show_message();
                }
            }
            Event::Within { done, total, unit } => {
                if let Some(b) = slot.as_mut() {
                    let part = (*done as u64 * STEPS_PER_UNIT) / (*total as u64).max(1);
                    b.bar
                        .set_position(b.done * STEPS_PER_UNIT + part.min(STEPS_PER_UNIT - 1));
                    b.within = format!("{done}/{total} {unit}");
                    b.show_message();
                }
            }
            Event::Status(text) => {
                if let Some(b) = slot.as_mut() {
                    b.status = text.clone();
                    b.show_message();
                }
            }
            Event::Finish => {
                if let Some(b) = slot.take() {
                    b.bar.finish_and_clear();
                }
            }
            Event::Warning(text) | Event::Info(text) => match slot.as_ref() {
                // Above the bar, which redraws below.
                Some(b) => b.bar.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
            },
        }
    }
}

impl Bar {
    fn new(task: &str, total: usize, unit: &str) -> Bar {
        let bar = ProgressBar::new(total as u64 * STEPS_PER_UNIT);
        let template = format!(
            "{{prefix}} {{spinner}} [{{bar:30}}] {{units}} {unit}  {{elapsed}} elapsed  {{rate}}  \
             eta {{eta}}  {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            let style = style
                .with_key("units", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let len = s.len().unwrap_or(0) / STEPS_PER_UNIT;
                    let _ = write!(w, "{}/{len}", s.pos() / STEPS_PER_UNIT);
                })
                .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let per_unit = s.per_sec() / STEPS_PER_UNIT as f64;
                    let _ = write!(w, "{}/s", HumanFloatCount(per_unit));
                });
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(task.to_string());
        // Redraws on its own (spinner, elapsed time) between events too.
        bar.enable_steady_tick(Duration::from_millis(250));
        Bar {
            bar,
            done: 0,
            status: String::new(),
            one: unit.strip_suffix('s').unwrap_or(unit).to_string(),
            within: String::new(),
        }
    }

    fn show_message(&self) {
        let mut msg = self.status.clone();
        if !self.within.is_empty() {
            if !msg.is_empty() {
                msg.push_str("  ");
            }
            let _ = write!(msg, "{} {}: {}", self.one, self.done + 1, self.within);
        }
        self.bar.set_message(msg);
    }
}
