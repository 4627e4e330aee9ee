fn main() {
    std::process::exit(schism::cli::main_with_args(std::env::args_os()));
}
