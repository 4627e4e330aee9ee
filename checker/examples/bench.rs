//! `schism bench-checker` without the rest of schism: `cargo run --release -p checker --example
//! bench -- --case hot10` rebuilds only the checker, which is what changes when tuning the search.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: checker::cli::BenchArgs,
}

fn main() {
    std::process::exit(checker::cli::bench(&Cli::parse().args));
}
