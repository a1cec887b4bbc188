//! Process start-up for the `#![no_main]` binary (`src/main.rs`): what the Rust runtime's
//! own start-up did that this program relies on, and nothing more.
//!
//! The runtime's start-up also found the main thread's stack by reading and parsing the
//! whole of `/proc/self/maps` (glibc's `pthread_getattr_np`), and mapped an alternate
//! signal stack for its stack-overflow message: about 0.07 ms (4 %) of a 1.7 ms one-shot
//! call (issue 19, BENCHMARKS.md). Without them a stack overflow ends the process with SIGSEGV
//! instead of a message; the kernel's stack guard is unchanged.

use std::ffi::c_int;

/// Prepares the process; called first thing in `main`, before any file is opened.
///
/// - Each of stdin, stdout and stderr that is closed is opened on `/dev/null` (as the Rust
///   runtime does): a file this process opens later — the store, its lock — must never
///   take descriptor 1, where an answer meant for stdout would land in it.
/// - SIGPIPE is ignored (the Rust runtime's default since 2014): a write to a closed pipe
///   is an `EPIPE` error the caller reports (`modelauth list | head -n1`), not a silent
///   death. Children still start with SIGPIPE's default: std's `Command` resets it before
///   `exec` unless `-Zon-broken-pipe` was used, and it is not.
///
/// Aborts when a closed standard descriptor cannot be reopened, as the runtime does: no
/// later output could be trusted to reach the right file.
pub fn start_process() {
    reopen_closed_standard_fds();
    // SAFETY: `signal` with SIG_IGN installs no handler code; it is called before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed (`poll` reports
/// `POLLNVAL`), lowest first, so each `open` takes the descriptor that was missing.
fn reopen_closed_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd: c_int| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of 3 `pollfd`; a zero timeout never blocks.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    if polled < 0 {
        // EINTR, ENOMEM: this cannot tell; the runtime then checks each with fcntl.
        for pfd in &mut fds {
            // SAFETY: F_GETFD on any integer is defined; it only reports EBADF.
            if unsafe { libc::fcntl(pfd.fd, libc::F_GETFD) } == -1 {
                pfd.revents = libc::POLLNVAL;
            }
        }
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path and plain flags.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if fd != pfd.fd {
                std::process::abort();
            }
        }
    }
}
