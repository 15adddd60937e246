//! The `rlq` binary: `rlq run FILE`, `rlq -e SOURCE`, `rlq check FILE`, or the REPL.

use clap::Parser;

fn main() -> std::process::ExitCode {
    rlq::tune_allocator();
    rlq::tune_cpu_threads();
    rlq::cli::run(rlq::cli::args::Cli::parse())
}
