//! File-path completion inside string literals (`load "mod<TAB>`).

use std::path::Path;

use rustyline::completion::Pair;

/// If byte `pos` of `line` is inside a string literal, where its text starts.
///
/// ```
/// use rlq::repl::paths::string_start;
/// assert_eq!(string_start("read \"da", 8), Some(6));
/// assert_eq!(string_start("read \"a\" | wh", 13), None);
/// assert_eq!(string_start("# \"x", 4), None);
/// ```
pub fn string_start(line: &str, pos: usize) -> Option<usize> {
    let bytes = &line.as_bytes()[..pos.min(line.len())];
    let mut open: Option<(u8, usize)> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match open {
            Some(_) if b == b'\\' => i += 1,
            Some((q, _)) if b == q => open = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => open = Some((b, i + 1)),
            // A comment runs to the end of its line; quotes in it open nothing.
            None if b == b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            None => {}
        }
        i += 1;
    }
    open.map(|(_, start)| start)
}

/// Completions for a partial path: the position the replacement starts at, and the entries of
/// its folder whose names start with what was typed (folders end in `/`).
pub fn complete(partial: &str, partial_start: usize) -> (usize, Vec<Pair>) {
    let (dir, prefix) = match partial.rfind('/') {
        Some(i) => (&partial[..=i], &partial[i + 1..]),
        None => ("", partial),
    };
    let folder = if dir.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir)
    };
    let mut out: Vec<Pair> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hidden = name.starts_with('.') && !prefix.starts_with('.');
            if hidden || !name.starts_with(prefix) {
                return None;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let replacement = if is_dir { format!("{name}/") } else { name };
            Some(Pair {
                display: replacement.clone(),
                replacement,
            })
        })
        .collect();
    out.sort_by(|a, b| a.replacement.cmp(&b.replacement));
    (partial_start + dir.len(), out)
}
