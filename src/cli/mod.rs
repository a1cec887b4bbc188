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

mod call;
mod check;
mod exec;
mod fast_args;
pub(crate) mod human;
mod logging;
pub(crate) mod manpages;
mod openclaw_provider;
mod serve;
mod start;
mod store_cmd;
pub(crate) mod suggest;
pub(crate) mod verbs;

use check::check;
pub(crate) use check::human_duration;
#[cfg(test)]
pub(crate) use check::render_status;
use exec::{exec, resolve_secret};
pub use logging::{init_logging, install_panic_hook, panic_report};
#[cfg(test)]
pub(crate) use logging::{with_quiet_panics, PANIC_REPORTS};
pub(crate) use serve::serve;
pub use start::start_process;
pub(crate) use store_cmd::StoreAction;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::core::error::{ErrorKind, RpcError};
use crate::handlers::App;
use crate::protocol::dispatch::Dispatcher;
use crate::protocol::transport::{self};
use crate::store::default_store_path;

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
    /// Let a write create every missing directory of a --store / $MODELAUTH_STORE location
    /// (without it, only the store's own directory is created; the default location's
    /// directories always are).
    #[arg(long, global = true)]
    pub create_dirs: bool,
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
    /// OpenClaw's exec SecretRef provider (protocol v1): reads `{protocolVersion, provider,
    /// ids}` on stdin, answers `{protocolVersion, values, errors}` on stdout. An id is
    /// `PROVIDER[#agent:A][#model:M]`, resolved like auth.resolve; see docs/openclaw.md.
    #[command(name = "openclaw-provider")]
    OpenclawProvider,
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
    /// Print the man page (roff) on stdout: modelauth(1), or one subcommand's page; with
    /// --dir, write every page into a directory.
    Man(manpages::ManArgs),
    /// Store a key or token: the secret from stdin (one line), --from-file or --from-env,
    /// never from argv; or a SecretRef with --ref (profiles.put).
    Add(verbs::AddArgs),
    /// List the profiles: ids, types, status, order position; never secrets (profiles.list).
    List(verbs::ListArgs),
    /// Remove a profile, and it from every order of its scope (profiles.remove).
    Rm(verbs::RmArgs),
    /// Print a provider's order, set it (IDs), or clear it (--clear) (order.get/set/clear).
    Order(verbs::OrderArgs),
    /// Report a provider's HTTP answer for a profile, so its cooldowns follow (auth.report).
    Report(verbs::ReportArgs),
    /// Print the store location (absolute), backend, whether it exists and how it was chosen.
    Where(verbs::WhereArgs),
    /// The sealed store (r3): keygen, seal, rekey, unseal.
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreAction,
    },
}

/// EX_USAGE of sysexits(3): the exit code of every usage error.
pub(crate) const EX_USAGE: i32 = 64;

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
pub(crate) fn parse_env_binding(s: &str) -> Result<(String, String), String> {
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
    if crate::core::envkeys::is_reserved_env_var(var) {
        return Err(format!(
            "`{var}` changes how programs are loaded or started; a credential never goes in it"
        ));
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
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // `call …` and `get …` without clap's command tree (issue 19); any other line, clap.
    if let Some(cli) = fast_args::parse(&args) {
        return Ok(cli);
    }
    parse_with_clap(&args)
}

/// [`parse_args`] by clap alone (the reference [`fast_args`] is tested against).
fn parse_with_clap(args: &[std::ffi::OsString]) -> Result<Cli, i32> {
    use clap::{CommandFactory, FromArgMatches};
    let args = args.to_vec();
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
        .try_get_matches_from(args.clone())
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                if let Some(tip) = usage_tip(&args) {
                    eprintln!("{tip}");
                }
            }
            Err(if e.use_stderr() { EX_USAGE } else { 0 })
        }
    }
}

/// A tip after a usage error that clap's own message does not give: `exec` with a command
/// but no `--` before it.
fn usage_tip(args: &[std::ffi::OsString]) -> Option<String> {
    let pos = args.iter().skip(1).position(|a| a == "exec")? + 1;
    let rest = &args[pos + 1..];
    if rest.iter().any(|a| a == "--") {
        return None;
    }
    // The first word that is neither a flag nor a flag's value is the command.
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].to_string_lossy();
        if a.starts_with("--") {
            if !a.contains('=')
                && ["--provider", "--env", "--agent", "--model", "--store"].contains(&a.as_ref())
            {
                i += 1;
            }
            i += 1;
            continue;
        }
        let flags: Vec<String> = rest[..i]
            .iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        let cmd: Vec<String> = rest[i..]
            .iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        return Some(format!(
            "tip: put the command after `--`: modelauth exec {} -- {}",
            flags.join(" "),
            cmd.join(" ")
        ));
    }
    None
}

fn dispatcher(store: Option<&std::path::Path>) -> Result<Dispatcher, RpcError> {
    let path = default_store_path(store)?;
    // PROTOCOL §10 r3: the location is reported absolute (a relative --store too).
    let path = match path.to_str() {
        Some(s) if crate::store::location::is_postgres_url(s) => path,
        _ => human::absolute(&path),
    };
    Ok(Dispatcher::new(App::new(path)))
}

/// Refuses a `--store` that cannot be used as given: an unparsable PostgreSQL URL, or one
/// carrying a password (argv is visible to every user). Prints the error object; exit 64.
fn check_store_flag(store: Option<&std::path::Path>) -> Result<(), i32> {
    let Some(p) = store else { return Ok(()) };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match crate::store::parse_location(p, true, &env) {
        Ok(_) => Ok(()),
        Err(e) => {
            print_error(&e);
            Err(EX_USAGE)
        }
    }
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if !matches!(cli.command, Command::Schema) {
        if let Err(code) = check_store_flag(cli.store.as_deref()) {
            return code;
        }
        if let Some(ctx) = human::store_context(cli.store.as_deref()) {
            // PROTOCOL §10 r3: a write to a named location creates at most its own directory.
            if ctx.chosen_by.is_explicit() && !cli.create_dirs {
                crate::store::sqlite::set_create_parents(false);
            }
            human::set_context(ctx);
        }
    }
    if let Some(code) = run_verb(&cli) {
        return code;
    }
    match cli.command {
        Command::Schema => {
            // The schema does not depend on the store path.
            let d = Dispatcher::new(App::new(PathBuf::from("/dev/null")));
            let text = serde_json::to_string_pretty(d.openrpc()).expect("json");
            write_stdout(&format!("{text}\n"), 0)
        }
        Command::Call { method, params } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => call::call(&d, &method, params.as_deref()),
            Err(e) => print_error(&e),
        },
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
        Command::OpenclawProvider => match dispatcher(cli.store.as_deref()) {
            Ok(d) => openclaw_provider::run(&d),
            Err(e) => print_error(&e),
        },
        Command::Serve { max_message_bytes } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => serve(&d, max_message_bytes),
            Err(e) => print_error(&e),
        },
        Command::Get {
            provider,
            agent,
            model,
            profile_id,
        } => match dispatcher(cli.store.as_deref()) {
            Ok(d) => get(
                &d,
                &provider,
                agent.as_deref(),
                model.as_deref(),
                profile_id.as_deref(),
            ),
            Err(e) => print_error(&e),
        },
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
        Command::Completions { shell } => completions(shell),
        Command::Man(a) => manpages::man(&a),
        Command::Store { action } => store_cmd::run(cli.store.as_deref(), action),
        // The verbs for people ran in `run_verb` above.
        Command::Add(_)
        | Command::List(_)
        | Command::Rm(_)
        | Command::Order(_)
        | Command::Report(_)
        | Command::Where(_) => unreachable!("handled by run_verb"),
    }
}

/// `modelauth get`: the secret `auth.resolve` picks, alone on stdout.
fn get(
    d: &Dispatcher,
    provider: &str,
    agent: Option<&str>,
    model: Option<&str>,
    profile_id: Option<&str>,
) -> i32 {
    match resolve_secret(d, provider, agent, model, profile_id) {
        Ok(r) => {
            // The secret not delivered (`> /dev/full`, a closed pipe) is a failure:
            // exit 1, so a credential helper's caller never takes it for success.
            let mut out = io::stdout().lock();
            match writeln!(out, "{}", r.secret).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => output_failed(&e, 1),
            }
        }
        Err(e) => print_error(&suggest::did_you_mean(
            d,
            e,
            Some(provider),
            profile_id,
            agent,
        )),
    }
}

/// `modelauth completions SHELL`: the completion script on stdout.
fn completions(shell: CompletionShell) -> i32 {
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
    match out.write_all(&buf).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) => output_failed(&e, 0),
    }
}

/// The secret fields `modelauth call` warns about when they are given in argv.
pub(crate) const SECRET_FIELDS: [&str; 4] = ["key", "token", "access", "refresh"];

/// Whether a member name is a secret field: one of [`SECRET_FIELDS`] or another common
/// spelling of a key, compared without case, `_` or `-` (`apiKey`, `api_key`,
/// `clientSecret`, `accessToken`, `password`). Pure.
pub(crate) fn is_secret_field(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    SECRET_FIELDS.contains(&n.as_str())
        || [
            "apikey",
            "secret",
            "clientsecret",
            "accesstoken",
            "refreshtoken",
            "password",
            "secretkey",
            "idtoken",
            "bearertoken",
        ]
        .contains(&n.as_str())
}

/// JSON pointers of the non-empty string members named like a secret field
/// ([`SECRET_FIELDS`]) anywhere in `v`. Pure.
pub(crate) fn secret_pointers(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if is_secret_field(k) && x.as_str().is_some_and(|s| !s.trim().is_empty()) {
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

/// Prints an error (human form at a terminal, else the JSON object, both naming the
/// store: [`human::print_error`]); returns exit code 1.
fn print_error(e: &RpcError) -> i32 {
    human::print_error(e)
}

/// Runs one of the verbs for people (PROTOCOL §10 r3); `None` for the other subcommands.
fn run_verb(cli: &Cli) -> Option<i32> {
    let json = match &cli.command {
        Command::Add(a) => a.json,
        Command::List(a) => a.json,
        Command::Rm(a) => a.json,
        Command::Order(a) => a.json,
        Command::Report(a) => a.json,
        Command::Where(a) => a.json,
        _ => return None,
    };
    human::set_json(json);
    let d = match dispatcher(cli.store.as_deref()) {
        Ok(d) => d,
        Err(e) => return Some(print_error(&e)),
    };
    Some(match &cli.command {
        Command::Add(a) => verbs::add(&d, a.clone()),
        Command::List(a) => verbs::list(&d, a.clone()),
        Command::Rm(a) => verbs::rm(&d, a.clone()),
        Command::Order(a) => verbs::order(&d, a.clone()),
        Command::Report(a) => verbs::report(&d, a.clone()),
        Command::Where(a) => match human::context() {
            Some(ctx) => verbs::where_(&d, ctx, a.clone()),
            None => print_error(&RpcError::new(
                ErrorKind::StorePermissions,
                "no store path: set --store, MODELAUTH_STORE, XDG_STATE_HOME or HOME",
            )),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::check::when;
    use crate::core::profile::CredentialType;
    use crate::core::status::{Health, ProfileHealth};

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
            overall: Health::Expiring,
            now,
            providers: vec![ProviderStatus {
                provider: "anthropic".into(),
                status: Health::Expiring,
                expires: Some(now + 3_600_000),
                env_vars: vec!["ANTHROPIC_API_KEY".into()],
                profiles: vec![
                    ProfileStatus {
                        profile_id: "anthropic:t".into(),
                        kind: CredentialType::Token,
                        status: ProfileHealth::Expiring,
                        reason: None,
                        expires: Some(now + 3_600_000),
                        until: Some(now + 3_600_000),
                    },
                    ProfileStatus {
                        profile_id: "anthropic:k".into(),
                        kind: CredentialType::ApiKey,
                        status: ProfileHealth::Cooldown,
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
