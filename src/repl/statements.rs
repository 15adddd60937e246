//! Joins input lines into whole statements, with the parser's continuation rules: open brackets
//! or strings, a trailing `|`, `,` or `=`, or a next line that starts with `|`.

use std::iter::Peekable;

use crate::syntax::is_incomplete;

/// Yields chunks of source that are complete statements (possibly several, `;`-separated).
/// Blank lines between statements are skipped.
///
/// ```
/// use rlq::repl::statements::Statements;
/// let lines = ["1 + 2", "", "[1,", "2]", "t", "| top 1"].map(String::from);
/// let got: Vec<String> = Statements::new(lines.into_iter()).collect();
/// assert_eq!(got, ["1 + 2", "[1,\n2]", "t\n| top 1"]);
/// ```
pub struct Statements<I: Iterator<Item = String>> {
    lines: Peekable<I>,
}

impl<I: Iterator<Item = String>> Statements<I> {
    pub fn new(lines: I) -> Statements<I> {
        Statements {
            lines: lines.peekable(),
        }
    }
}

/// A line that starts a meta-command (`:vars`); these are never joined with others.
pub fn is_meta(line: &str) -> bool {
    line.trim_start().starts_with(':')
}

impl<I: Iterator<Item = String>> Iterator for Statements<I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let mut buf = String::new();
        loop {
            let Some(line) = self.lines.next() else {
                return (!buf.trim().is_empty()).then_some(buf);
            };
            if buf.is_empty() {
                if line.trim().is_empty() {
                    continue;
                }
                if is_meta(&line) {
                    return Some(line);
                }
            } else {
                buf.push('\n');
            }
            buf.push_str(&line);
            if is_incomplete(&buf) {
                continue;
            }
            // Looking ahead blocks until the next line arrives (or stdin closes).
            let next_continues = self
                .lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with('|'));
            if !next_continues {
                return Some(buf);
            }
        }
    }
}
