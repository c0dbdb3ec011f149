//! `fjord-bench`: the load generator. See `docs/benchmarks.md` for the standard runs.

use clap::Parser;
use fjord_bench::load::{self, options::Options};

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    match runtime.block_on(load::run(options.clone())) {
        Ok(outcome) => {
            outcome.print(&options);
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
