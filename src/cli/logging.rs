//! Logging to stderr (a `RUST_LOG`-style filter; HTTP, TLS and jsonrpsee internals always off)
//! and the panic hook that reports where, never what (a panic message may hold a secret).

use std::io::{self, Write};

/// Sets up logging to stderr with a `RUST_LOG`-style filter (default `warn`). jsonrpsee's
/// own tracing is always off: its trace events print raw requests and responses.
pub fn init_logging() {
    use tracing_subscriber::prelude::*;
    // `Targets` parses `RUST_LOG`'s `level` and `target=level` directives without compiling
    // regular expressions, which keeps a one-shot `call` fast.
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let parsed = if spec.trim().is_empty() {
        None
    } else {
        spec.parse::<tracing_subscriber::filter::Targets>().ok()
    };
    // A directive for a module *inside* a silenced crate (`ureq_proto::util=trace`) would
    // win over the crate-wide OFF below (the longest target matches): drop such directives.
    let parsed = parsed.map(|t| {
        let kept = t
            .iter()
            .filter(|(target, _)| !silenced_target(target))
            .map(|(target, level)| (target.to_string(), level))
            .collect::<Vec<_>>();
        let rebuilt = tracing_subscriber::filter::Targets::new().with_targets(kept);
        match t.default_level() {
            Some(l) => rebuilt.with_default(l),
            None => rebuilt,
        }
    });
    let default = parsed.unwrap_or_else(|| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    let targets = SILENCED_CRATES.iter().fold(default, |t, c| {
        t.with_target(*c, tracing_subscriber::filter::LevelFilter::OFF)
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        // The silencing is its own layer, judged on each event's real target: no `RUST_LOG`
        // spelling (`ureq_proto:=trace`, `ureq_proto:x=trace`, a longer prefix) reaches it.
        .with(tracing_subscriber::filter::filter_fn(|m| {
            !silenced_event(m.target())
        }))
        .try_init();
}

/// Crates whose logging is always off: jsonrpsee prints raw messages, HTTP and TLS
/// internals may print headers or bodies (tokens).
const SILENCED_CRATES: [&str; 9] = [
    "jsonrpsee",
    "jsonrpsee_core",
    "jsonrpsee_types",
    "ureq",
    "ureq_proto",
    "rustls",
    // rust-postgres logs statement parameters (profile bodies) at debug.
    "tokio_postgres",
    "postgres",
    "tokio_postgres_rustls",
];

/// Whether an event's target (a module path, `ureq_proto::util`) is in a silenced crate.
fn silenced_event(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    SILENCED_CRATES.contains(&krate)
}

/// Whether a `RUST_LOG` target is a silenced crate or a module inside one.
fn silenced_target(target: &str) -> bool {
    SILENCED_CRATES
        .iter()
        .any(|c| target == *c || target.starts_with(&format!("{c}::")))
}

/// What the panic hook prints: where the bug is, never the panic's message, which may hold
/// a secret (e.g. a value formatted into an `expect`).
pub fn panic_report(info: &std::panic::PanicHookInfo<'_>) -> String {
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!("modelauth: internal error (a bug){at}; the panic message is withheld because it may hold a secret")
}

/// Replaces the default panic hook (which prints the panic message) with one that prints
/// only [`panic_report`] on stderr. Called first thing in `main`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(io::stderr().lock(), "{}", panic_report(info));
    }));
}

/// Runs `f` with a panic hook that records [`panic_report`] lines instead of printing
/// them, and returns `f`'s value; for tests of the panic paths.
#[cfg(test)]
pub(crate) fn with_quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let r = panic_report(info);
        PANIC_REPORTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
    }));
    let r = f();
    std::panic::set_hook(prev);
    r
}

/// What [`with_quiet_panics`] recorded.
#[cfg(test)]
pub(crate) static PANIC_REPORTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
