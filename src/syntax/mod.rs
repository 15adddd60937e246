//! The syntax layer: `grammar/rlq.pest` → [`ast::Program`] with byte spans. No evaluation.
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
pub use scan::is_incomplete;

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
