//! The syntax layer: `grammar/rlq.pest` → [`ast::Program`] with byte spans. No evaluation.
//!
//! # The language in one screen
//! - Statements: `let x = expr`, `fn name(a, b) = expr`, `import "file.rlq"`, or a bare
//!   expression (its value is printed by the REPL). Separate them with newlines or `;`.
//!   `# comments` run to the end of the line.
//! - A statement continues on the next line while a bracket is open, after a line ending in
//!   `|`, `,` or `=`, or when the next line starts with `|` ([`is_incomplete`] tells a REPL to
//!   read more).
//! - Literals: `42`, `0.5`, `1e-3`, `"text\n"` / `'text'`, `true`, `false`, `null`, `[1, 2]`.
//! - Operators, loosest first: `or`; `and`; `not`; `== != < <= > >= in`; `+ -`; `* / %`;
//!   unary `-`; `xs[i]`. `+` also joins strings and lists.
//! - Calls: `f(a, b)` (no space before `(`).
//! - Function values: `fn(x) = x * 2` (for verbs taking a function, like `map` and `reuse`); it
//!   sees the parameters of the function it is written in. Its body runs to the end of the item.
//! - Commands: `verb item item …` — one generic form for every verb. Items are expressions,
//!   optionally `expr as name` or `name = expr`, optionally separated by commas. Which items are
//!   keywords (`by`, `on`, `to`, `loss`…) is decided from the verb's signature after parsing
//!   (see `eval::registry`), so adding a verb never changes the grammar. The first item may not
//!   start with an operator, so `x - 1` is arithmetic.
//! - Pipes: `a | verb … | verb …` hands each value to the next verb.
//!
//! ```
//! let prog = rlq::syntax::parse("let x = 1 + 2\nt | where score > x").unwrap();
//! assert_eq!(prog.stmts.len(), 2);
//! assert!(rlq::syntax::is_incomplete("t | where (a > 1"));
//! ```

pub mod ast;
mod parser;
mod scan;

pub use ast::*;
pub use parser::parse;
pub use scan::{is_incomplete, Continuation};

/// A parse error: what was expected and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    /// Short text shown under the span.
    pub label: String,
    pub help: Option<String>,
}

impl SyntaxError {
    pub fn at(span: Span, message: impl Into<String>) -> SyntaxError {
        let message = message.into();
        SyntaxError {
            label: message.clone(),
            message,
            span,
            help: None,
        }
    }
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyntaxError {}
