//! `cargo run --release -p checker --example bench_checker -- --ops 1000000`: the same as
//! `schism bench-checker`, without building the harness.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    bench: checker::cli::BenchArgs,
}

fn main() {
    let args = Args::parse();
    std::process::exit(checker::cli::bench(&args.bench));
}
