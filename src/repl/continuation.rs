//! The `...> ` continuation prompt. rustyline draws a prompt only before the first line of a
//! multi-line buffer, so continuation lines carry the marker in the buffer itself (inserted by
//! [`super::helper::ContinueOnEnter`]) and it is stripped before evaluation.

/// What Enter inserts when the statement is not complete yet.
pub const CONTINUATION: &str = "\n...> ";

/// The buffer without continuation markers.
///
/// ```
/// use rlq::repl::continuation::strip;
/// assert_eq!(strip("t |\n...> top 1"), "t |\ntop 1");
/// ```
pub fn strip(text: &str) -> String {
    text.replace(CONTINUATION, "\n")
}

/// [`strip`], with a byte position in `text` moved to the same place in the result.
///
/// ```
/// use rlq::repl::continuation::strip_at;
/// assert_eq!(strip_at("t |\n...> wh", 12), ("t |\nwh".to_string(), 6));
/// ```
pub fn strip_at(text: &str, pos: usize) -> (String, usize) {
    let pos = pos.min(text.len());
    let markers_before = text[..pos].matches(CONTINUATION).count();
    let removed = markers_before * (CONTINUATION.len() - 1);
    (strip(text), pos.saturating_sub(removed))
}
