//! The command line (PROTOCOL §8): `serve`, `call`, `check`, `schema`; logs to stderr.
//!
//! Exit codes: 0 success; 1 a failed `call` (the error object is on stderr); 2 usage errors
//! (clap's own code); 64 a `--store` that cannot be used (e.g. with a password in it). `check`: 1 expired/missing/needs re-auth, 2 expiring within 24 h, 0 ok.

use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::error::{ErrorKind, RpcError};
use crate::rpc::Dispatcher;
use crate::service::App;
use crate::store::default_store_path;
use crate::transport::{self, LineRead};

/// modelauth — keeps model-provider credentials and answers "which one do I use now, and why?"
/// over line-delimited JSON-RPC 2.0 on stdin/stdout. Never prompts, never opens a terminal.
#[derive(Debug, Parser)]
#[command(name = "modelauth", version, about, long_about = None)]
pub struct Cli {
    /// The store: a SQLite file, or postgres://user@host/db (no password here: use
    /// $MODELAUTH_STORE, PGPASSWORD or ~/.pgpass). Else $MODELAUTH_STORE, else
    /// $XDG_STATE_HOME/modelauth/store.db, else ~/.local/state/modelauth/store.db.
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub store: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve JSON-RPC 2.0, one message per line, until end of input or SIGTERM.
    Serve {
        /// Longest accepted line in bytes; longer ones are discarded and answered with -32600.
        #[arg(long, default_value_t = transport::DEFAULT_MAX_MESSAGE_BYTES)]
        max_message_bytes: usize,
    },
    /// Run one method: prints the result on stdout (exit 0) or the error object on stderr (exit 1).
    Call {
        /// Method name, e.g. auth.resolve.
        method: String,
        /// Params as a JSON object, or `-` to read them from stdin (the way to pass a secret).
        params: Option<String>,
    },
    /// Print the OpenRPC document (the same as rpc.discover).
    Schema,
    /// auth.status for cron: exit 1 when anything is expired, missing or needs re-auth,
    /// 2 when something expires within 24 h, else 0.
    Check {
        /// The agent whose view to check (its own profiles and the shared ones).
        #[arg(long)]
        agent: Option<String>,
        /// Only this provider (missing when it has no profile).
        #[arg(long)]
        provider: Option<String>,
        /// Refresh OAuth profiles inside the refresh margin first (auth.refresh for each);
        /// a failed refresh makes the exit code at least 1.
        #[arg(long)]
        refresh: bool,
        /// Print the auth.status result as JSON instead of the plain report.
        #[arg(long)]
        json: bool,
    },
}

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
    let targets = parsed
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
        })
        .with_target("jsonrpsee", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target(
            "jsonrpsee_core",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        .with_target(
            "jsonrpsee_types",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        // HTTP and TLS internals may log headers or bodies (tokens): always off.
        .with_target("ureq", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target("ureq_proto", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target("rustls", tracing_subscriber::filter::LevelFilter::OFF)
        // rust-postgres logs statement parameters (profile bodies) at debug: always off.
        .with_target(
            "tokio_postgres",
            tracing_subscriber::filter::LevelFilter::OFF,
        )
        .with_target("postgres", tracing_subscriber::filter::LevelFilter::OFF)
        .with_target(
            "tokio_postgres_rustls",
            tracing_subscriber::filter::LevelFilter::OFF,
        );
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .try_init();
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

fn dispatcher(store: Option<&std::path::Path>) -> Result<Dispatcher, RpcError> {
    let path = default_store_path(store)?;
    Ok(Dispatcher::new(App::new(path)))
}

/// Exit code of a usage error (BSD `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// Refuses a `--store` that cannot be used as given: an unparsable PostgreSQL URL, or one
/// carrying a password (argv is visible to every user). Prints the error object; exit 64.
fn check_store_flag(store: Option<&std::path::Path>) -> Result<(), i32> {
    let Some(p) = store else { return Ok(()) };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match crate::store::parse_location(p, true, &env) {
        Ok(_) => Ok(()),
        Err(e) => {
            print_error(&e);
            Err(EXIT_USAGE)
        }
    }
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if !matches!(cli.command, Command::Schema) {
        if let Err(code) = check_store_flag(cli.store.as_deref()) {
            return code;
        }
    }
    match cli.command {
        Command::Schema => {
            // The schema does not depend on the store path.
            let d = Dispatcher::new(App::new(PathBuf::from("/dev/null")));
            let mut out = io::stdout().lock();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(d.openrpc()).expect("json")
            );
            0
        }
        Command::Call { method, params } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            let params = match params.as_deref() {
                Some("-") => {
                    let mut s = String::new();
                    if let Err(e) = io::stdin().read_to_string(&mut s) {
                        return print_error(&RpcError::invalid_params(format!(
                            "cannot read params from stdin: {e}"
                        )));
                    }
                    Some(s)
                }
                Some(p) => Some(p.to_string()),
                None => None,
            };
            let params = match params.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => match serde_json::from_str::<&serde_json::value::RawValue>(p) {
                    Ok(_) if p.starts_with('{') => Some(p.to_string()),
                    Ok(_) if p == "null" => None,
                    Ok(_) => {
                        return print_error(&RpcError::invalid_params(
                            "params must be a JSON object of named params",
                        ))
                    }
                    Err(_) => {
                        return print_error(&RpcError::new(
                            ErrorKind::ParseError,
                            "params are not valid JSON",
                        ))
                    }
                },
            };
            match d.call(&method, params.as_deref()) {
                Ok(r) => {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{}", r.get());
                    let _ = out.flush();
                    0
                }
                Err(e) => print_error(&e),
            }
        }
        Command::Check {
            agent,
            provider,
            refresh,
            json,
        } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            check(&d, agent, provider, refresh, json)
        }
        Command::Serve { max_message_bytes } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => serve(&d, max_message_bytes),
            Err(e) => print_error(&e),
        },
    }
}

/// `modelauth check`: runs `auth.status` and prints it (plain or `--json`); the exit code
/// follows OpenClaw's `models status --check` ([`crate::status::check_exit_code`]).
/// A failing `auth.status` prints the error object on stderr and exits 1.
fn check(
    d: &Dispatcher,
    agent: Option<String>,
    provider: Option<String>,
    refresh: bool,
    json: bool,
) -> i32 {
    let mut params = serde_json::Map::new();
    if let Some(a) = agent {
        params.insert("agent".into(), a.into());
    }
    if let Some(p) = provider {
        params.insert("provider".into(), p.into());
    }
    let agent_v = params.get("agent").cloned();
    let params = serde_json::Value::Object(params).to_string();
    let mut notes = vec![];
    let mut refresh_failed = false;
    if refresh {
        let raw = match d.call("auth.status", Some(&params)) {
            Ok(r) => r,
            Err(e) => return print_error(&e),
        };
        let st: crate::api::StatusResult = match serde_json::from_str(raw.get()) {
            Ok(s) => s,
            Err(e) => return print_error(&RpcError::internal(format!("decode auth.status: {e}"))),
        };
        for pr in st.providers.iter().flat_map(|p| &p.profiles) {
            if pr.kind != "oauth" || pr.status == "needs_reauth" {
                continue;
            }
            let mut rp = serde_json::json!({"profileId": pr.profile_id});
            if let Some(a) = &agent_v {
                rp["agent"] = a.clone();
            }
            match d.call("auth.refresh", Some(&rp.to_string())) {
                Ok(r) => {
                    let v: serde_json::Value = serde_json::from_str(r.get()).unwrap_or_default();
                    if v["refreshed"] == true {
                        notes.push(format!("refreshed {}", pr.profile_id));
                    }
                }
                Err(e) => {
                    refresh_failed = true;
                    notes.push(format!(
                        "refresh of {} failed: {} ({})",
                        pr.profile_id,
                        e.kind.as_str(),
                        e.message
                    ));
                }
            }
        }
    }
    let raw = match d.call("auth.status", Some(&params)) {
        Ok(r) => r,
        Err(e) => return print_error(&e),
    };
    let st: crate::api::StatusResult = match serde_json::from_str(raw.get()) {
        Ok(s) => s,
        Err(e) => return print_error(&RpcError::internal(format!("decode auth.status: {e}"))),
    };
    let mut code = crate::status::check_exit_code(&st.overall);
    if refresh_failed && code != 1 {
        code = 1;
    }
    let mut out = io::stdout().lock();
    if json {
        // stdout stays one JSON document; the refresh notes go to stderr.
        for n in &notes {
            eprintln!("{n}");
        }
        let _ = writeln!(out, "{}", raw.get());
    } else {
        for n in &notes {
            let _ = writeln!(out, "{n}");
        }
        let _ = write!(out, "{}", render_status(&st));
    }
    let _ = out.flush();
    code
}

/// `3d 4h`, `5h 2m`, `12m`, `40s`: a duration in milliseconds for people.
pub fn human_duration(ms: i64) -> String {
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

fn when(t: i64, now: i64) -> String {
    if t >= now {
        format!("in {}", human_duration(t - now))
    } else {
        format!("{} ago", human_duration(now - t))
    }
}

/// The plain report of `modelauth check`: one line per provider and per profile.
pub fn render_status(st: &crate::api::StatusResult) -> String {
    use std::fmt::Write as _;
    let now = st.now;
    let mut o = String::new();
    let scope = st
        .agent
        .as_deref()
        .map(|a| format!("agent {a} (own and shared profiles)"))
        .unwrap_or_else(|| "shared profiles".into());
    let _ = writeln!(o, "auth status: {} ({scope})", st.overall.to_uppercase());
    if st.providers.is_empty() {
        let _ = writeln!(
            o,
            "  no auth profiles stored; add one with `modelauth call profiles.put -`"
        );
    }
    for p in &st.providers {
        let exp = p
            .expires
            .map(|e| format!(", earliest expiry {}", when(e, now)))
            .unwrap_or_default();
        let _ = writeln!(o, "{}: {}{exp}", p.provider, p.status);
        if p.profiles.is_empty() && p.env_vars.is_empty() {
            let _ = writeln!(o, "  no profile (add one with profiles.put)");
        }
        for pr in &p.profiles {
            let mut detail = vec![];
            if let Some(r) = &pr.reason {
                if r != &pr.status {
                    detail.push(r.clone());
                }
            }
            if let Some(u) = pr.until {
                if pr.status == "cooldown" || pr.status == "disabled" {
                    detail.push(format!("until {}", when(u, now)));
                }
            }
            if let Some(e) = pr.expires {
                let verb = if e <= now { "expired" } else { "expires" };
                detail.push(format!("{verb} {}", when(e, now)));
            }
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join(", "))
            };
            let _ = writeln!(
                o,
                "  {:<32} {:<8} {}{detail}",
                pr.profile_id, pr.kind, pr.status
            );
        }
        if !p.env_vars.is_empty() {
            let _ = writeln!(o, "  environment keys: {}", p.env_vars.join(", "));
        }
    }
    o
}

fn print_error(e: &RpcError) -> i32 {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{}", e.to_json());
    1
}

enum Event {
    Line(Vec<u8>),
    TooLarge,
    Eof,
    Signal,
}

/// The serve loop: a reader thread feeds lines through a bounded channel, in batches of
/// whatever is already buffered (so a pipelined client costs one hand-over per 64 KiB, not
/// per line); requests run in order on this thread; output is flushed whenever no more
/// input is waiting. SIGTERM/SIGINT: finish the request in flight, flush, exit 0.
pub fn serve(d: &Dispatcher, max: usize) -> i32 {
    let (tx, rx) = mpsc::sync_channel::<Vec<Event>>(16);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let tx = tx.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                stop.store(true, Ordering::SeqCst);
                let _ = tx.try_send(vec![Event::Signal]);
            });
        });
    }
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
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut next = rx.recv().ok();
    'outer: while let Some(batch) = next.take() {
        for ev in batch {
            if stop.load(Ordering::SeqCst) {
                break 'outer;
            }
            let reply = match ev {
                Event::Line(line) => d.handle_line(&line),
                Event::TooLarge => Some(transport::too_large_response(max)),
                Event::Eof | Event::Signal => break 'outer,
            };
            if let Some(reply) = reply {
                if out
                    .write_all(reply.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .is_err()
                {
                    return 0;
                }
            }
        }
        next = match rx.try_recv() {
            Ok(b) => Some(b),
            Err(mpsc::TryRecvError::Empty) => {
                if out.flush().is_err() {
                    return 0;
                }
                rx.recv().ok()
            }
            Err(mpsc::TryRecvError::Disconnected) => None,
        };
    }
    let _ = out.flush();
    tracing::debug!("serve loop finished");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_hook_prints_where_but_never_the_message() {
        let secret = crate::secret::Secret::new("sk-hook-secret-0002");
        let r = with_quiet_panics(|| {
            std::panic::catch_unwind(|| -> () { panic!("refresh failed for {}", secret.expose()) })
        });
        assert!(r.is_err());
        let reports = PANIC_REPORTS.lock().unwrap().clone();
        let mine: Vec<_> = reports.iter().filter(|r| r.contains("cli.rs")).collect();
        assert!(!mine.is_empty(), "{reports:?}");
        for r in reports {
            assert!(!r.contains("sk-hook-secret-0002"), "{r}");
            assert!(r.contains("internal error"), "{r}");
        }
    }
    use crate::api::{ProfileStatus, ProviderStatus, StatusResult};

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(40_000), "40s");
        assert_eq!(human_duration(12 * 60_000), "12m");
        assert_eq!(human_duration(5 * 3_600_000 + 2 * 60_000), "5h 2m");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(when(1_000, 61_000), "1m ago");
    }

    #[test]
    fn the_plain_report_names_providers_profiles_and_windows() {
        let now = 1_800_000_000_000;
        let st = StatusResult {
            agent: Some("main".into()),
            overall: "expiring".into(),
            now,
            providers: vec![ProviderStatus {
                provider: "anthropic".into(),
                status: "expiring".into(),
                expires: Some(now + 3_600_000),
                env_vars: vec!["ANTHROPIC_API_KEY".into()],
                profiles: vec![
                    ProfileStatus {
                        profile_id: "anthropic:t".into(),
                        kind: "token".into(),
                        status: "expiring".into(),
                        reason: None,
                        expires: Some(now + 3_600_000),
                        until: Some(now + 3_600_000),
                    },
                    ProfileStatus {
                        profile_id: "anthropic:k".into(),
                        kind: "api_key".into(),
                        status: "cooldown".into(),
                        reason: Some("rate_limit".into()),
                        expires: None,
                        until: Some(now + 30_000),
                    },
                ],
            }],
        };
        let text = render_status(&st);
        assert!(
            text.starts_with("auth status: EXPIRING (agent main"),
            "{text}"
        );
        assert!(text.contains("anthropic: expiring, earliest expiry in 1h 0m"));
        assert!(text.contains("expiring (expires in 1h 0m)"), "{text}");
        assert!(
            text.contains("cooldown (rate_limit, until in 30s)"),
            "{text}"
        );
        assert!(text.contains("environment keys: ANTHROPIC_API_KEY"));
    }
}
