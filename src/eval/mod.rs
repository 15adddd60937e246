//! The eval layer: values, the verb registry, the interpreter, table verbs compiled to polars.
//! The only layer that knows both the language and the engines.

pub mod args;
mod bind;
mod check;
pub mod columns;
mod command;
mod context;
pub mod error;
mod interp;
mod ops;
mod record;
pub mod registry;
pub mod signature;
pub mod value;
pub mod verbs;

pub use context::EvalContext;
pub use error::{Cause, ErrorCode, EvalError, EvalResult, SourceFile};
pub use registry::{
    Arg, ArgValue, Args, ColumnArg, Entry, Example, FnVerb, Param, Range, Registry, Shape,
    Signature, Type, Verb,
};
pub use value::{Function, Table, Value};

/// A registry holding every built-in verb.
pub fn builtin_registry() -> Registry {
    let mut reg = Registry::default();
    verbs::register_builtins(&mut reg);
    reg
}
