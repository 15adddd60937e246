//! Built-in verbs. Each file registers one family of verbs.

mod analysis;
mod circuit;
mod claims;
mod concat;
mod graph;
mod help;
mod io;
mod map;
mod model;
mod samples;
mod scalar;
mod study;
mod table;
mod tune;

pub use help::{help_text, HelpVerb};

use super::registry::Registry;

/// Registers every built-in verb. Other layers add their own verbs here with one line each,
/// e.g. `crate::analysis::register(reg);`.
pub fn register_builtins(reg: &mut Registry) {
    table::register(reg);
    io::register(reg);
    scalar::register(reg);
    model::register(reg);
    graph::register(reg);
    circuit::register(reg);
    study::register(reg);
    analysis::register(reg);
    tune::register(reg);
    tune::register_paths(reg);
    concat::register(reg);
    map::register(reg);
    claims::register(reg);
    reg.register(Box::new(HelpVerb));
}
