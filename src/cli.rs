//! The command line (PROTOCOL §8): `serve`, `call`, `schema`; logs to stderr.
//!
//! Exit codes: 0 success; 1 a failed `call` (the error object is on stderr); 2 usage errors
//! (clap's own code).

use std::io::{self, BufRead, BufReader, Read, Write};
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
    /// The SQLite store (else $MODELAUTH_STORE, else $XDG_STATE_HOME/modelauth/store.db,
    /// else ~/.local/state/modelauth/store.db).
    #[arg(long, global = true, value_name = "PATH")]
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
}

/// Sets up logging to stderr with a `RUST_LOG`-style filter (default `warn`). jsonrpsee's
/// own tracing is always off: its trace events print raw requests and responses.
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{filter},jsonrpsee=off,jsonrpsee_core=off,jsonrpsee_types=off"
    ))
    .unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,jsonrpsee=off,jsonrpsee_core=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(false)
        .try_init();
}

fn dispatcher(store: Option<&std::path::Path>) -> Result<Dispatcher, RpcError> {
    let path = default_store_path(store)?;
    Ok(Dispatcher::new(App::new(path)))
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
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
        Command::Serve { max_message_bytes } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => serve(&d, max_message_bytes),
            Err(e) => print_error(&e),
        },
    }
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

/// The serve loop: a reader thread feeds lines through a bounded channel; requests run in
/// order on this thread; output is flushed whenever no more input is waiting.
/// SIGTERM/SIGINT: finish the request in flight, flush, exit 0.
pub fn serve(d: &Dispatcher, max: usize) -> i32 {
    let (tx, rx) = mpsc::sync_channel::<Event>(16);
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
                let _ = tx.try_send(Event::Signal);
            });
        });
    }
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut r = BufReader::with_capacity(64 * 1024, stdin.lock());
        let mut buf = Vec::new();
        loop {
            let ev = match transport::read_line_limited(&mut r, max, &mut buf) {
                Ok(LineRead::Line) => Event::Line(std::mem::take(&mut buf)),
                Ok(LineRead::TooLarge) => Event::TooLarge,
                Ok(LineRead::Eof) | Err(_) => Event::Eof,
            };
            let end = matches!(ev, Event::Eof);
            if tx.send(ev).is_err() || end {
                return;
            }
            let _ = r.fill_buf();
        }
    });
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut next = rx.recv().ok();
    while let Some(ev) = next.take() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let reply = match ev {
            Event::Line(line) => d.handle_line(&line),
            Event::TooLarge => Some(transport::too_large_response(max)),
            Event::Eof | Event::Signal => break,
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
        next = match rx.try_recv() {
            Ok(ev) => Some(ev),
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
