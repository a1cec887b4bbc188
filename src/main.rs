//! The `modelauth` binary: parses the command line and runs it (see [`modelauth::cli`]).

fn main() {
    modelauth::cli::install_panic_hook();
    let cli = match modelauth::cli::parse_args(std::env::args_os()) {
        Ok(c) => c,
        Err(code) => std::process::exit(code),
    };
    modelauth::cli::init_logging();
    let code = modelauth::cli::run(cli);
    std::process::exit(code);
}
