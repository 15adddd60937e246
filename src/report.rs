//! What a long computation tells the person waiting for it: progress and messages, through a
//! [`Reporter`] the host provides. The library never prints. The `rlq` binary's reporter draws
//! progress bars and writes messages on stderr (`cli::progress`); a [`crate::Session`] made
//! without one keeps the messages for its caller to read ([`Collect::messages`]); a test captures
//! every event ([`Collect::all`]) or reacts to them (any `Fn(&Event)` is a reporter).
//!
//! ```
//! use std::sync::Arc;
//! use rlq::report::{Collect, Event, Reporter, Task};
//! let log = Arc::new(Collect::all());
//! let reporter: Arc<dyn Reporter> = log.clone();
//! {
//!     let task = Task::start(&reporter, "patch", 2, "samples");
//!     task.within(10, 40, "forwards");
//!     task.done(1);
//! } // dropping the task finishes it
//! assert_eq!(log.events()[1], Event::Within { done: 10, total: 40, unit: "forwards" });
//! assert_eq!(log.events().last(), Some(&Event::Finish));
//! ```

use std::sync::{Arc, Mutex};

/// One thing reported. Tasks do not nest: a verb finishes one before it starts the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A task of `total` `unit`s starts (`patch`, 30 `samples`).
    Start {
        task: String,
        total: usize,
        unit: &'static str,
    },
    /// `done` of the task's units are finished.
    Done { done: usize },
    /// Progress inside the unit in progress: `done` of its `total` `unit`s (the forwards of an
    /// exact patch, the steps of EAP-IG, the tokens of an answer). One sample can take minutes;
    /// this is what moves meanwhile.
    Within {
        done: usize,
        total: usize,
        unit: &'static str,
    },
    /// What the task is doing now (a training step's reward and loss).
    Status(String),
    /// The task ended: finished, failed or interrupted.
    Finish,
    /// Something the user must know about a result (it is partial, a setting is suspect).
    Warning(String),
    /// Something worth knowing (a saved result was reused).
    Info(String),
}

impl Event {
    /// The text of a warning or an info message.
    pub fn message(&self) -> Option<&str> {
        match self {
            Event::Warning(text) | Event::Info(text) => Some(text),
            _ => None,
        }
    }
}

/// Receives what the library reports. Called from the thread doing the work, possibly often
/// (once per forward of an exact patch): keep it cheap.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event);
}

/// Any `Fn(&Event)` reports (a test that reacts to an event, a host that forwards them).
impl<F: Fn(&Event) + Send + Sync> Reporter for F {
    fn report(&self, event: &Event) {
        self(event)
    }
}

/// Reports nothing anywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: &Event) {}
}

/// Keeps what is reported, for the caller to read: every event, or only the messages (a long
/// session then keeps no per-forward progress).
#[derive(Debug, Default)]
pub struct Collect {
    events: Mutex<Vec<Event>>,
    messages_only: bool,
}

impl Collect {
    /// Keeps every event (tests).
    pub fn all() -> Collect {
        Collect::default()
    }

    /// Keeps only warnings and info messages.
    pub fn messages() -> Collect {
        Collect {
            messages_only: true,
            ..Collect::default()
        }
    }

    /// What was kept so far.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// What was kept so far, emptying the log.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        // A panic while pushing cannot leave the Vec half-written; the log is still good.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reporter for Collect {
    fn report(&self, event: &Event) {
        if !self.messages_only || event.message().is_some() {
            self.lock().push(event.clone());
        }
    }
}

/// A task in progress: reports its start when made and [`Event::Finish`] when dropped, so an
/// error or an interrupt that leaves the verb early still ends it.
pub struct Task {
    reporter: Arc<dyn Reporter>,
}

impl Task {
    pub fn start(
        reporter: &Arc<dyn Reporter>,
        task: impl Into<String>,
        total: usize,
        unit: &'static str,
    ) -> Task {
        reporter.report(&Event::Start {
            task: task.into(),
            total,
            unit,
        });
        Task {
            reporter: reporter.clone(),
        }
    }

    /// `done` units are finished.
    pub fn done(&self, done: usize) {
        self.reporter.report(&Event::Done { done });
    }

    /// `done` of `total` `unit`s of the unit in progress are finished.
    pub fn within(&self, done: usize, total: usize, unit: &'static str) {
        self.reporter.report(&Event::Within { done, total, unit });
    }

    /// What the task is doing now.
    pub fn status(&self, text: impl Into<String>) {
        self.reporter.report(&Event::Status(text.into()));
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.reporter.report(&Event::Finish);
    }
}
