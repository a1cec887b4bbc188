//! The `modelauth` binary: parses the command line and runs it (see [`modelauth::cli`]).

fn main() {
    modelauth::cli::install_panic_hook();
    let cli = modelauth::cli::parse_args();
    modelauth::cli::init_logging();
    let code = modelauth::cli::run(cli);
    std::process::exit(code);
}
