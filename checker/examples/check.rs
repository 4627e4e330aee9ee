//! `cargo run -p checker --example check -- PATH`: the same as `schism check PATH`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    check: checker::cli::CheckArgs,
}

fn main() {
    let args = Args::parse();
    std::process::exit(checker::cli::run(&args.check));
}
