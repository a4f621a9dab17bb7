//! `txform-bench`: benchmarks txform against Kafka Streams (exactly_once_v2), Kafka's
//! TransactionalMessageCopier and a plain non-transactional copier, all on the same real broker in
//! the same run, so that the ratios between them are measured under the same machine conditions.
//!
//! Every system runs as a child process of this one (resource usage is then the child's own) and
//! copies a seeded input topic to a fresh output topic; a read_committed reader in this process
//! decides when records became visible. See docs/benchmarks.md for the method and the results.
//!
//! `cargo run --release -p txform-bench -- --smoke` is the tiny CI version: it checks that every
//! system still runs end to end, and asserts nothing about timings.

mod baseline;
mod baseline_eos;
mod cli;
mod kafka;
mod listener;
mod machine;
mod payload;
mod pipeline;
mod process;
mod report;
mod run;
mod stats;
mod sweep;
mod systems;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // The copiers get txform's malloc settings, as they get its client properties: what the
    // benchmark compares is the loop, not the allocator.
    txform::allocator::tune();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_secs()
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(cli::Command::Copy(args)) if args.transactional => baseline_eos::run(&args),
        Some(cli::Command::Copy(args)) => baseline::run(&args),
        None => run::benchmark(&cli.options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("txform-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
