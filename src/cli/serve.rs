//! `modelauth serve`: the JSON-RPC loop. A reader thread feeds a bounded channel; requests
//! run in order on this thread; output is flushed when no input is waiting; end of input or
//! SIGTERM/SIGINT finish the request in flight and exit 0 (after at most
//! [`SHUTDOWN_GRACE`], even when that request is stuck).

use super::output_failed;
use crate::protocol::dispatch::Dispatcher;
use crate::protocol::transport::{self, LineRead};
use std::io::{self, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// How long SIGTERM/SIGINT lets the request in flight finish before the process exits
/// anyway (PROTOCOL §11 *(r3)*).
pub(super) const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

enum Event {
    Line(Vec<u8>),
    TooLarge,
    Eof,
    Signal,
}

/// Process hardening of a long-lived `serve` (issue 11): no core dump
/// (`RLIMIT_CORE = 0`) and not dumpable (`PR_SET_DUMPABLE = 0`: no core, and another
/// process of the same user cannot ptrace it or read its memory through /proc), so
/// resolved keys do not end up on disk or in another process. Failures are ignored.
pub(crate) fn harden_process() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid arguments; they only change this process.
    unsafe {
        let _ = libc::setrlimit(libc::RLIMIT_CORE, &zero);
        #[cfg(target_os = "linux")]
        let _ = libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// The serve loop: a reader thread feeds lines through a bounded channel, in batches of
/// whatever is already buffered (so a pipelined client costs one hand-over per 64 KiB, not
/// per line); requests run in order on this thread; output is flushed whenever no more
/// input is waiting. SIGTERM/SIGINT: finish the request in flight, flush, exit 0.
pub(crate) fn serve(d: &Dispatcher, max: usize) -> i32 {
    harden_process();
    let (tx, rx) = mpsc::sync_channel::<Vec<Event>>(16);
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(tx.clone(), stop.clone());
    spawn_reader(tx, max);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut next = rx.recv().ok();
    'outer: while let Some(batch) = next.take() {
        for ev in batch {
            if stop.load(Ordering::SeqCst) {
                break 'outer;
            }
            let reply = match ev {
                Event::Line(mut line) => {
                    let r = d.handle_line(&line);
                    // The line may carry a secret (profiles.put): wipe it now rather than
                    // leave it in freed memory.
                    zeroize::Zeroize::zeroize(&mut line);
                    r
                }
                Event::TooLarge => Some(transport::too_large_response(max)),
                Event::Eof | Event::Signal => break 'outer,
            };
            if let Some(mut reply) = reply {
                let written = out
                    .write_all(reply.as_bytes())
                    .and_then(|_| out.write_all(b"\n"));
                // An auth.resolve answer holds a secret.
                zeroize::Zeroize::zeroize(&mut reply);
                if let Err(e) = written {
                    return output_failed(&e, 0);
                }
            }
        }
        next = match rx.try_recv() {
            Ok(b) => Some(b),
            Err(mpsc::TryRecvError::Empty) => {
                if let Err(e) = out.flush() {
                    return output_failed(&e, 0);
                }
                rx.recv().ok()
            }
            Err(mpsc::TryRecvError::Disconnected) => None,
        };
    }
    if let Err(e) = out.flush() {
        return output_failed(&e, 0);
    }
    tracing::debug!("serve loop finished");
    0
}

/// Installs the SIGTERM/SIGINT handlers and starts the thread that waits on them: a signal
/// sets `stop`, sends [`Event::Signal`] and, after [`SHUTDOWN_GRACE`], ends the process.
fn watch_signals(tx: mpsc::SyncSender<Vec<Event>>, stop: Arc<AtomicBool>) {
    // The SIGTERM/SIGINT handlers are installed here, on this thread, before the first
    // request is read: a signal sent right after the first answer must find them in
    // place (installed on the waiting thread, they were missing in about 1 run in 6).
    let handlers = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| {
            use tokio::signal::unix::{signal, SignalKind};
            let installed = {
                let _g = rt.enter();
                (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                )
            };
            match installed {
                (Ok(term), Ok(int)) => Some((rt, term, int)),
                _ => None,
            }
        });
    if handlers.is_none() {
        tracing::warn!("could not install the SIGTERM/SIGINT handlers");
    }
    std::thread::spawn(move || {
        let Some((rt, mut term, mut int)) = handlers else {
            return;
        };
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.store(true, Ordering::SeqCst);
            let _ = tx.try_send(vec![Event::Signal]);
        });
        // PROTOCOL §11 (r3): the request in flight has a grace period; a request
        // stuck past it (a silent server, a hung helper) does not keep the process.
        std::thread::sleep(SHUTDOWN_GRACE);
        tracing::warn!(
            grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
            "the request in flight did not finish within the shutdown grace period; exiting"
        );
        // SAFETY: _exit ends the process at once, running no handler that could wait
        // on a lock the stuck thread holds.
        unsafe { libc::_exit(0) };
    });
}

/// Starts the stdin reader thread: lines of at most `max` bytes, handed over in batches
/// of whatever is already buffered; ends with [`Event::Eof`].
fn spawn_reader(tx: mpsc::SyncSender<Vec<Event>>, max: usize) {
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut r = BufReader::with_capacity(64 * 1024, stdin.lock());
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        loop {
            let ev = match transport::read_line_limited(&mut r, max, &mut buf) {
                Ok(LineRead::Line) => Event::Line(std::mem::take(&mut buf)),
                Ok(LineRead::TooLarge) => Event::TooLarge,
                Ok(LineRead::Eof) | Err(_) => Event::Eof,
            };
            let end = matches!(ev, Event::Eof);
            batch.push(ev);
            // Hand the batch over before a read that could block.
            if end || !r.buffer().contains(&b'\n') {
                let sent = tx.send(std::mem::take(&mut batch)).is_ok();
                if !sent || end {
                    return;
                }
            }
        }
    });
}
