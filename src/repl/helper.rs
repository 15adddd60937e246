//! The rustyline helper: completion from the session (and file paths inside strings), and
//! multi-line input while a statement is incomplete.

use std::cell::RefCell;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Cmd, ConditionalEventHandler, Context, Event, EventContext, RepeatCount};
use rustyline::{Helper, Highlighter, Hinter};

use super::continuation::{self, CONTINUATION};
use super::paths;
use super::statements::is_meta;
use crate::syntax::is_incomplete;
use crate::Session;

#[derive(Helper, Hinter, Highlighter)]
pub struct ReplHelper {
    /// Shared with the loop; only borrowed here while a line is being edited.
    session: Rc<RefCell<Session>>,
}

impl ReplHelper {
    pub fn new(session: Rc<RefCell<Session>>) -> ReplHelper {
        ReplHelper { session }
    }
}

/// True while the buffer is not a whole statement yet (meta-commands always are).
pub fn needs_more(buffer: &str) -> bool {
    let text = continuation::strip(buffer);
    !is_meta(&text) && is_incomplete(&text)
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if let Some(start) = paths::string_start(line, pos) {
            return Ok(paths::complete(&line[start..pos], start));
        }
        let word_start = line[..pos]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let (text, text_pos) = continuation::strip_at(line, pos);
        let names = match self.session.try_borrow() {
            Ok(session) => session.completions(&text, text_pos),
            Err(_) => Vec::new(),
        };
        let pairs = names
            .into_iter()
            .map(|name| Pair {
                display: name.clone(),
                replacement: name,
            })
            .collect();
        Ok((word_start, pairs))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if needs_more(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

/// Bound to Enter: at the end of an incomplete statement, starts a continuation line with the
/// `...> ` marker; otherwise leaves Enter to rustyline (which asks the [`Validator`]).
pub struct ContinueOnEnter;

impl ConditionalEventHandler for ContinueOnEnter {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let line = ctx.line();
        (ctx.pos() == line.len() && needs_more(line)).then(|| Cmd::Insert(1, CONTINUATION.into()))
    }
}
