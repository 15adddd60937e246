//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::bindings::Binding;
use super::display::RowLimit;
use super::output::Format;

/// rlq — a small analysis language for looking inside language models.
///
/// With no arguments, starts the REPL (or, with stdin not a terminal, reads statements from it).
#[derive(Debug, Parser)]
#[command(
    name = "rlq",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Evaluate these statements and print each expression's value; repeatable (`-e 'let x = 1'
    /// -e 'x + 1'`), run in order in one session.
    #[arg(short = 'e', long = "eval", value_name = "SOURCE")]
    pub eval: Vec<String>,

    /// Rows a printed table shows whole (default 50; `all` for every row); longer tables show
    /// their first and last rows. polars' POLARS_FMT_MAX_ROWS, POLARS_FMT_MAX_COLS and
    /// POLARS_FMT_STR_LEN are honoured when set.
    #[arg(long, value_name = "N|all", value_parser = RowLimit::parse, global = true)]
    pub rows: Option<RowLimit>,

    /// How printed values look: tables as polars prints them, as CSV, or as JSON records.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,

    /// Bind a variable before the script runs (numbers, true/false and lists such as `[8, 16]`
    /// are parsed; else a string).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = Binding::parse, global = true)]
    pub set: Vec<Binding>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script, printing the value of each bare-expression statement.
    Run {
        /// The script; relative paths inside it resolve against its folder.
        file: PathBuf,
    },
    /// Parse and resolve a script without running it.
    Check { file: PathBuf },
    /// List the verbs, or describe one (`rlq help patch`).
    Help { verb: Option<String> },
}
