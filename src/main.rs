//! The `rlq` binary: `rlq run FILE`, `rlq -e SOURCE`, `rlq check FILE`, or the REPL.

use clap::Parser;

fn main() -> std::process::ExitCode {
    rlq::tune_allocator();
    rlq::tune_cpu_threads();
    let cli = rlq::cli::args::Cli::parse();
    let mut session = rlq::cli::session(&cli);
    match rlq::cli::run(&cli, &mut session) {
        Some(code) => code,
        None => rlq::repl::run(session, cli.format),
    }
}
