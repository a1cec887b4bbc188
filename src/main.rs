//! The `modelauth` binary: parses the command line and runs it (see [`modelauth::cli`]).
//!
//! The entry point is C's `main`, not the Rust runtime's (`#![no_main]`): the runtime's
//! start-up reads and parses all of `/proc/self/maps` and maps an alternate signal stack,
//! about 0.07 ms (4 %) of a 1.7 ms one-shot call (issue 19). [`modelauth::cli::start_process`]
//! does what of it this program needs: standard descriptors that exist, SIGPIPE ignored.
#![no_main]

use std::ffi::{c_char, c_int};

/// Called by the C runtime with the process's arguments, which `std::env::args_os` reads
/// on its own (glibc hands them to std's initialiser). Never returns: the exit code goes
/// through `std::process::exit`, which flushes stdout. A panic is reported by the hook
/// and exits 101, as the Rust runtime's `main` does.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    modelauth::cli::start_process();
    modelauth::cli::install_panic_hook();
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    std::process::exit(code)
}

/// Parses the command line, sets up logging and runs the subcommand; the exit code.
fn run() -> i32 {
    let cli = match modelauth::cli::parse_args(std::env::args_os()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    modelauth::cli::init_logging();
    modelauth::cli::run(cli)
}
