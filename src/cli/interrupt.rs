//! Ctrl-C while a statement runs: the first press sets the session's interrupt flag (long verbs
//! stop at their next check); a second press, before the statement has stopped, exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::exit;
use crate::Session;

/// The flag the handler sets; one per process because a process has one SIGINT handler.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes Ctrl-C interrupt `session`. Safe to call more than once.
pub fn install(session: &mut Session) {
    let flag = FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nrlq: interrupted twice, exiting");
                std::process::exit(exit::INTERRUPTED.into());
            }
            eprintln!("\nrlq: interrupting (Ctrl-C again to exit)");
        });
        if let Err(e) = installed {
            eprintln!("rlq: Ctrl-C will not interrupt statements: {e}");
        }
        flag
    });
    session.set_interrupt(flag.clone());
}
