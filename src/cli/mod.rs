//! The command line (protocol §8): `serve`, `call`, `check`, `schema`, `get`, `exec`,
//! `completions`, `man`; logs to stderr.
//!
//! Exit codes of every subcommand (a usage error — unknown flag, missing or malformed
//! argument, no subcommand — is always [`EX_USAGE`] = 64, so no other code is ambiguous;
//! `--help` and `--version` exit 0):
//!
//! | subcommand    | 0                         | 1                                              | other |
//! |---------------|---------------------------|------------------------------------------------|-------|
//! | `serve`       | end of input, SIGTERM/INT | the store cannot be opened                      | 64 usage |
//! | `call`        | result printed on stdout  | error object printed on stderr                  | 64 usage |
//! | `get`         | secret printed on stdout  | error object on stderr (nothing on stdout)      | 64 usage |
//! | `check`       | everything ok / static    | expired, missing, needs re-auth, ref_unavailable, failed refresh or `auth.status` error | 2 expiring within 24 h; 64 usage |
//! | `exec`        | —                         | a provider cannot be resolved (COMMAND not run) | COMMAND's own status or signal; 126 COMMAND not executable, 127 not found; 64 usage |
//! | `schema`      | document printed          | —                                               | 64 usage |
//! | `completions` | script printed            | —                                               | 64 usage (unknown shell) |
//! | `man`         | man page printed          | the page cannot be rendered (a bug)             | 64 usage |

use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::core::error::{ErrorKind, RpcError};
use crate::handlers::App;
use crate::protocol::dispatch::Dispatcher;
use crate::protocol::transport::{self, LineRead};
use crate::store::default_store_path;

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
    /// auth.status for cron: exit 1 when anything is expired, missing, needs re-auth or has
    /// a SecretRef that cannot be read (ref_unavailable), 2 when something expires within
    /// 24 h, else 0.
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
        /// Also run `exec` SecretRefs to check them (`env` and `file` refs are always checked).
        #[arg(long)]
        probe: bool,
        /// Print the auth.status result as JSON instead of the plain report.
        #[arg(long)]
        json: bool,
    },
    /// Print only the resolved secret and a newline, e.g. `$(modelauth get openai)`.
    ///
    /// Errors as `call`: the error object on stderr, nothing on stdout, exit 1.
    Get {
        /// The provider (normalised: trim, lower-case, aliases).
        provider: String,
        /// The agent whose view to resolve in (its own profiles and the shared ones).
        #[arg(long)]
        agent: Option<String>,
        /// The model, for model-scoped cooldowns.
        #[arg(long)]
        model: Option<String>,
        /// Use exactly this profile; its problem is the error.
        #[arg(long = "profile", value_name = "ID")]
        profile_id: Option<String>,
    },
    /// Run COMMAND with the resolved credentials in its environment (no shell, no argv).
    ///
    /// Resolves each provider and runs COMMAND (no shell) with the credentials in its
    /// environment: `--provider P` sets `<BASE>_API_KEY` (OPENAI_API_KEY, GEMINI_API_KEY
    /// for google) or the first of P's registered envVars; `--env VAR=P` sets exactly VAR.
    /// The secret is in no argv. COMMAND replaces this process, so its exit status and
    /// signals are COMMAND's; if a provider cannot be resolved COMMAND is not run (exit 1).
    #[command(group(clap::ArgGroup::new("credentials").required(true).multiple(true).args(["provider", "env"])))]
    Exec {
        /// The agent whose view to resolve in.
        #[arg(long)]
        agent: Option<String>,
        /// The model, for model-scoped cooldowns.
        #[arg(long)]
        model: Option<String>,
        /// A provider whose credential goes into its conventional variable (repeatable).
        #[arg(long, value_name = "P")]
        provider: Vec<String>,
        /// Put the credential of provider P into variable VAR (repeatable).
        #[arg(long, value_name = "VAR=P", value_parser = parse_env_binding)]
        env: Vec<(String, String)>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

/// EX_USAGE of sysexits(3): the exit code of every usage error.
pub const EX_USAGE: i32 = 64;

/// The shells `modelauth completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Parses `VAR=P` of `exec --env`: VAR a portable environment variable name
/// (`[A-Za-z_][A-Za-z0-9_]*`), P a non-empty provider id.
pub fn parse_env_binding(s: &str) -> Result<(String, String), String> {
    let (var, provider) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not VAR=PROVIDER"))?;
    let valid = var
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{var}` is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    if provider.trim().is_empty() {
        return Err(format!("`{s}` names no provider after `=`"));
    }
    Ok((var.to_string(), provider.to_string()))
}

/// Parses the command line: a usage error prints clap's message on stderr and gives
/// [`EX_USAGE`]; `--help` and `--version` print on stdout and give 0.
pub fn parse_args<I, T>(args: I) -> Result<Cli, i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    // When help is asked for, `call --help` also lists every method with its summary
    // (built only then, to keep a plain call's start-up short).
    if args
        .iter()
        .skip(1)
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        let d = Dispatcher::new(App::new(PathBuf::from("/dev/null")));
        let mut list = String::from("Methods (params and results: `modelauth schema`):\n");
        for s in d.specs() {
            list.push_str(&format!("  {:<20} {}\n", s.name, s.summary));
        }
        cmd = cmd.mut_subcommand("call", |c| c.after_help(list));
    }
    match cmd
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = e.print();
            Err(if e.use_stderr() { EX_USAGE } else { 0 })
        }
    }
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
        .with_target("rustls", tracing_subscriber::filter::LevelFilter::OFF);
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(false),
        )
        .with(targets)
        .try_init();
}

/// Crates whose logging is always off: jsonrpsee prints raw messages, HTTP and TLS
/// internals may print headers or bodies (tokens).
const SILENCED_CRATES: [&str; 6] = [
    "jsonrpsee",
    "jsonrpsee_core",
    "jsonrpsee_types",
    "ureq",
    "ureq_proto",
    "rustls",
];

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
            let text = serde_json::to_string_pretty(d.openrpc()).expect("json");
            write_stdout(&format!("{text}\n"), 0)
        }
        Command::Call { method, params } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            let params = match params.as_deref() {
                Some("-") => {
                    // Bounded like a `serve` line: at most --max-message-bytes' default.
                    let cap = transport::DEFAULT_MAX_MESSAGE_BYTES as u64;
                    let mut s = String::new();
                    if let Err(e) = io::stdin().take(cap + 1).read_to_string(&mut s) {
                        return print_error(&RpcError::invalid_params(format!(
                            "cannot read params from stdin: {e}"
                        )));
                    }
                    if s.len() as u64 > cap {
                        zeroize::Zeroize::zeroize(&mut s);
                        return print_error(
                            &RpcError::new(
                                ErrorKind::MessageTooLarge,
                                format!("params on stdin are larger than {cap} bytes"),
                            )
                            .with("maxMessageBytes", cap)
                            .with_hint("send smaller params, or use `serve`"),
                        );
                    }
                    Some(s)
                }
                Some(p) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(p) {
                        let at = secret_pointers(&v);
                        if !at.is_empty() {
                            eprintln!(
                                "modelauth: warning: the params in argv carry a secret ({}); any user can read argv (ps, /proc/PID/cmdline): pass them on stdin instead: `modelauth call {method} -`",
                                at.join(", ")
                            );
                        }
                    }
                    Some(p.to_string())
                }
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
                    Err(e) => {
                        return print_error(
                            &RpcError::new(
                                ErrorKind::ParseError,
                                format!("params are not valid JSON: {}", transport::json_error_text(&e)),
                            )
                            .with_hint("give one JSON object in single quotes, e.g. '{\"provider\":\"openai\"}', or `-` and the object on stdin"),
                        )
                    }
                },
            };
            match d.call(&method, params.as_deref()) {
                Ok(r) => write_stdout(&format!("{}\n", r.get()), 0),
                Err(e) => print_error(&e),
            }
        }
        Command::Check {
            agent,
            provider,
            refresh,
            probe,
            json,
        } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            check(&d, agent, provider, refresh, probe, json)
        }
        Command::Serve { max_message_bytes } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => serve(&d, max_message_bytes),
            Err(e) => print_error(&e),
        },
        Command::Get {
            provider,
            agent,
            model,
            profile_id,
        } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            match resolve_secret(
                &d,
                &provider,
                agent.as_deref(),
                model.as_deref(),
                profile_id.as_deref(),
            ) {
                Ok(r) => {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "{}", r.secret);
                    let _ = out.flush();
                    0
                }
                Err(e) => print_error(&e),
            }
        }
        Command::Exec {
            agent,
            model,
            provider,
            env,
            command,
        } => {
            let d = match dispatcher(cli.store.as_deref()) {
                Ok(d) => d,
                Err(e) => return print_error(&e),
            };
            exec(
                d,
                agent.as_deref(),
                model.as_deref(),
                &provider,
                &env,
                &command,
            )
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            // Rendered into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "modelauth", &mut buf);
            let mut out = io::stdout().lock();
            let _ = out.write_all(&buf).and_then(|_| out.flush());
            0
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                    0
                }
                Err(e) => print_error(&RpcError::internal(format!(
                    "cannot write the man page: {e}"
                ))),
            }
        }
    }
}

/// The parts of an `auth.resolve` result that `get` and `exec` use.
#[derive(serde::Deserialize)]
struct Resolved {
    provider: String,
    secret: String,
}

/// Runs `auth.resolve` for `get` and `exec`.
fn resolve_secret(
    d: &Dispatcher,
    provider: &str,
    agent: Option<&str>,
    model: Option<&str>,
    profile_id: Option<&str>,
) -> Result<Resolved, RpcError> {
    let mut params = serde_json::json!({ "provider": provider });
    if let Some(a) = agent {
        params["agent"] = a.into();
    }
    if let Some(m) = model {
        params["model"] = m.into();
    }
    if let Some(p) = profile_id {
        params["profileId"] = p.into();
    }
    let raw = d.call("auth.resolve", Some(&params.to_string()))?;
    serde_json::from_str(raw.get())
        .map_err(|_| RpcError::internal("auth.resolve returned an unexpected result"))
}

/// The variable `exec --provider P` sets: the first of P's registered `envVars`, else
/// [`default_env_var`] of the normalised provider id.
fn provider_env_var(d: &Dispatcher, provider: &str) -> String {
    let registered = d
        .call(
            "providers.get",
            Some(&serde_json::json!({ "id": provider }).to_string()),
        )
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        .and_then(|v| {
            v["provider"]["envVars"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|x| x.as_str())
                .map(str::to_string)
        });
    registered.unwrap_or_else(|| default_env_var(provider))
}

/// `<BASE>_API_KEY` of protocol §6 for a normalised provider id (`GEMINI_API_KEY` for
/// google). Pure.
pub fn default_env_var(provider: &str) -> String {
    format!("{}_API_KEY", crate::core::envkeys::env_base(provider))
}

/// `modelauth exec`: resolves every credential first (nothing runs unless all resolve),
/// then replaces this process with COMMAND (execvp(3): PATH lookup, no shell) with the
/// credentials added to the inherited environment. Returns only on failure: 1 when a
/// provider cannot be resolved (error object on stderr), 127 when COMMAND is not found,
/// 126 when it cannot be executed.
fn exec(
    d: Dispatcher,
    agent: Option<&str>,
    model: Option<&str>,
    providers: &[String],
    bindings: &[(String, String)],
    command: &[std::ffi::OsString],
) -> i32 {
    let Some((program, args)) = command.split_first() else {
        eprintln!("modelauth exec: no COMMAND after `--`");
        return EX_USAGE;
    };
    let mut vars: Vec<(String, crate::core::secret_value::Secret)> = vec![];
    for p in providers {
        match resolve_secret(&d, p, agent, model, None) {
            Ok(r) => {
                let var = provider_env_var(&d, &r.provider);
                vars.push((var, crate::core::secret_value::Secret::new(r.secret)));
            }
            Err(e) => return print_error(&e),
        }
    }
    for (var, p) in bindings {
        match resolve_secret(&d, p, agent, model, None) {
            Ok(r) => vars.push((
                var.clone(),
                crate::core::secret_value::Secret::new(r.secret),
            )),
            Err(e) => return print_error(&e),
        }
    }
    // Close the store before the process image is replaced.
    drop(d);
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (var, secret) in &vars {
        cmd.env(var, secret.expose());
    }
    use std::os::unix::process::CommandExt;
    let e = cmd.exec();
    let code = match e.kind() {
        io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    eprintln!(
        "modelauth exec: cannot run {}: {e}",
        program.to_string_lossy()
    );
    code
}

/// The secret fields `modelauth call` warns about when they are given in argv.
pub const SECRET_FIELDS: [&str; 4] = ["key", "token", "access", "refresh"];

/// JSON pointers of the non-empty string members named like a secret field
/// ([`SECRET_FIELDS`]) anywhere in `v`. Pure.
pub fn secret_pointers(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if SECRET_FIELDS.contains(&k.as_str())
                        && x.as_str().is_some_and(|s| !s.trim().is_empty())
                    {
                        out.push(here);
                    } else {
                        walk(x, &here, out);
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = vec![];
    walk(v, "", &mut out);
    out
}

/// `modelauth check`: runs `auth.status` and prints it (plain or `--json`); the exit code
/// follows OpenClaw's `models status --check` ([`crate::core::status::check_exit_code`]).
/// A failing `auth.status` prints the error object on stderr and exits 1.
fn check(
    d: &Dispatcher,
    agent: Option<String>,
    provider: Option<String>,
    refresh: bool,
    probe: bool,
    json: bool,
) -> i32 {
    let mut params = serde_json::Map::new();
    if probe {
        params.insert("probe".into(), true.into());
    }
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
    let mut code = crate::core::status::check_exit_code(&st.overall);
    if refresh_failed && code != 1 {
        code = 1;
    }
    let mut text = String::new();
    if json {
        // stdout stays one JSON document; the refresh notes go to stderr.
        for n in &notes {
            eprintln!("{n}");
        }
        text = format!("{}\n", raw.get());
    } else {
        for n in &notes {
            text.push_str(n);
            text.push('\n');
        }
        text.push_str(&render_status(&st));
    }
    write_stdout(&text, code)
}

/// Writes `text` to stdout and returns `code`. A reader that went away (`| head`, EPIPE)
/// is not an error worth a word: exit quietly with `code`. Any other failure (`> /dev/full`)
/// is said on stderr and exits 1, so a script never takes lost output for success.
fn write_stdout(text: &str, code: i32) -> i32 {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) => output_failed(&e, code),
    }
}

/// The exit code after a failed write to stdout (see [`write_stdout`]).
fn output_failed(e: &io::Error, code: i32) -> i32 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return code;
    }
    let _ = writeln!(
        io::stderr().lock(),
        "modelauth: cannot write to stdout: {e}"
    );
    1
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
            let _ = writeln!(
                o,
                "  no profile; add one: printf '{{\"profile\":{{\"id\":\"{}:default\",\"type\":\"api_key\",\"key\":\"%s\"}}}}' \"$KEY\" | modelauth call profiles.put -",
                p.provider
            );
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
            if let Some(fix) = profile_fix(&pr.profile_id, &pr.kind, &pr.status) {
                let _ = writeln!(o, "    fix: {fix}");
            }
        }
        if !p.env_vars.is_empty() {
            let _ = writeln!(o, "  environment keys: {}", p.env_vars.join(", "));
        }
    }
    o
}

/// What to run about a profile in a bad state, naming the profile's own id.
fn profile_fix(id: &str, kind: &str, status: &str) -> Option<String> {
    match status {
        "expired" | "needs_reauth" => Some(format!(
            "log in again, then store the new credential under the same id: {{\"profile\":{{\"id\":\"{id}\",\"type\":\"{kind}\",...}}}} on the stdin of `modelauth call profiles.put -`"
        )),
        "ref_unavailable" => Some(format!(
            "make what its SecretRef names readable; see it with modelauth call profiles.get '{{\"profileId\":\"{id}\"}}'"
        )),
        "disabled" | "cooldown" => Some(format!(
            "wait, or end it now: modelauth call auth.clearCooldown '{{\"profileId\":\"{id}\"}}'"
        )),
        _ => None,
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

/// Process hardening of a long-lived `serve` (issue 11): no core dump
/// (`RLIMIT_CORE = 0`) and not dumpable (`PR_SET_DUMPABLE = 0`: no core, and another
/// process of the same user cannot ptrace it or read its memory through /proc), so
/// resolved keys do not end up on disk or in another process. Failures are ignored.
pub fn harden_process() {
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
pub fn serve(d: &Dispatcher, max: usize) -> i32 {
    harden_process();
    let (tx, rx) = mpsc::sync_channel::<Vec<Event>>(16);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let tx = tx.clone();
        let stop = stop.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_hook_prints_where_but_never_the_message() {
        let secret = crate::core::secret_value::Secret::new("sk-hook-secret-0002");
        let r = with_quiet_panics(|| {
            std::panic::catch_unwind(|| -> () { panic!("refresh failed for {}", secret.expose()) })
        });
        assert!(r.is_err());
        let reports = PANIC_REPORTS.lock().unwrap().clone();
        let mine: Vec<_> = reports.iter().filter(|r| r.contains(file!())).collect();
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
        assert!(
            text.contains("fix: wait, or end it now: modelauth call auth.clearCooldown '{\"profileId\":\"anthropic:k\"}'"),
            "{text}"
        );
    }
}
