//! Commands for people (PROTOCOL §10 r3): `add`, `list`, `rm`, `order`, `report`, `where`.
//!
//! Each verb is one JSON-RPC call on the same methods (`profiles.put`, `profiles.list`,
//! `profiles.remove`, `order.get|set|clear`, `auth.report`, `helper.info`), so the rules and
//! the errors are the methods'; `--json` prints the method's result unchanged. Two verbs
//! read first: `report PROVIDER` without a name asks `order.get` which profile the walk
//! picks now, and `list` asks `order.get` for the position of each provider's profiles
//! (only for the plain output). A secret is read from stdin, a file or a variable, never
//! from argv.

mod add;
mod list;
mod report;

use std::path::PathBuf;

use serde_json::Value;

use super::human;
use super::write_stdout;
use crate::core::error::RpcError;
use crate::protocol::dispatch::Dispatcher;

pub(crate) use add::add;
pub(crate) use list::{list, order, rm};
pub(crate) use report::{report, where_};

/// The largest secret `add` reads (stdin or `--from-file`), in bytes.
pub(crate) const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The credential type `add` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AddType {
    /// An API key (`key` / `keyRef`).
    #[value(name = "api_key", alias = "api-key")]
    ApiKey,
    /// A static token (`token` / `tokenRef`), optionally with `--expires`.
    #[value(name = "token")]
    Token,
}

/// `modelauth add`.
#[derive(Debug, Clone, clap::Args)]
pub struct AddArgs {
    /// PROVIDER or PROVIDER:NAME (NAME defaults to `default`), e.g. openai or openai:work.
    #[arg(value_name = "PROVIDER[:NAME]")]
    pub id: String,
    /// The credential type.
    #[arg(long = "type", value_enum, default_value = "api_key")]
    pub kind: AddType,
    /// Store it in this agent's scope (default: the shared scope every agent sees).
    #[arg(long)]
    pub agent: Option<String>,
    /// When a token expires: milliseconds since the epoch, a date (2027-01-31 or
    /// 2027-01-31T12:00:00Z) or a duration from now (90d, 12h, 30m).
    #[arg(long, value_name = "T")]
    pub expires: Option<String>,
    /// Read the secret from this file (one line) instead of stdin.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["from_env", "secret_ref"])]
    pub from_file: Option<PathBuf>,
    /// Read the secret from this environment variable instead of stdin.
    #[arg(long, value_name = "VAR", conflicts_with = "secret_ref")]
    pub from_env: Option<String>,
    /// Store a SecretRef instead of a secret: env:VAR, file:PROVIDER#/pointer (or
    /// file:/abs/path#/pointer of a settings.secretProviders file entry), exec:PROVIDER#id,
    /// store:NAME.
    #[arg(long = "ref", value_name = "REF")]
    pub secret_ref: Option<String>,
    /// Put it first in the provider's order (and record it as lastGood).
    #[arg(long)]
    pub primary: bool,
    /// Print the profiles.put result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `modelauth list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only this provider.
    pub provider: Option<String>,
    /// The agent whose view to list (its own profiles and the shared ones).
    #[arg(long)]
    pub agent: Option<String>,
    /// Print the profiles.list result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `modelauth rm`.
#[derive(Debug, Clone, clap::Args)]
pub struct RmArgs {
    /// The profile id, e.g. openai:work.
    #[arg(value_name = "PROFILE_ID")]
    pub profile_id: String,
    /// The agent scope to remove it from (default: the shared scope).
    #[arg(long)]
    pub agent: Option<String>,
    /// Say what would be removed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the profiles.remove result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `modelauth order`.
#[derive(Debug, Clone, clap::Args)]
pub struct OrderArgs {
    /// The provider.
    pub provider: String,
    /// The new order: profile ids (a bare NAME means PROVIDER:NAME). None: print the order.
    #[arg(value_name = "ID", conflicts_with = "clear")]
    pub ids: Vec<String>,
    /// Remove the explicit order (the walk's default order applies again).
    #[arg(long)]
    pub clear: bool,
    /// The agent scope (default: the shared scope).
    #[arg(long)]
    pub agent: Option<String>,
    /// Print the method's result (order.get, order.set or order.clear) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `modelauth report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// PROVIDER:NAME, or PROVIDER alone for the profile the walk picks now.
    #[arg(value_name = "PROVIDER[:NAME]")]
    pub target: String,
    /// The provider's HTTP status (429, 401, 200, ...).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,
    /// The Retry-After header, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub retry_after: Option<u64>,
    /// The model the request was for (model-scoped cooldowns).
    #[arg(long)]
    pub model: Option<String>,
    /// The agent whose view picks the profile.
    #[arg(long)]
    pub agent: Option<String>,
    /// Print the auth.report result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `modelauth where`.
#[derive(Debug, Clone, clap::Args)]
pub struct WhereArgs {
    /// Print `{path, backend, exists, chosenBy, schemaVersion, reachable}` as JSON.
    #[arg(long)]
    pub json: bool,
}

fn call(d: &Dispatcher, method: &str, params: &Value) -> Result<Value, RpcError> {
    let raw = d.call(method, Some(&params.to_string()))?;
    serde_json::from_str(raw.get())
        .map_err(|_| RpcError::internal(format!("{method} returned an unexpected result")))
}

fn with_agent(mut v: Value, agent: Option<&str>) -> Value {
    if let Some(a) = agent {
        v["agent"] = a.into();
    }
    v
}

fn print_json(v: &Value) -> i32 {
    write_stdout(&format!("{v}\n"), 0)
}

fn store_line() -> String {
    match human::context() {
        Some(c) => format!("store: {}", c.describe()),
        None => "store: (unknown)".into(),
    }
}

fn scope_words(agent: Option<&str>) -> String {
    match agent {
        Some(a) => format!("agent {a}'s scope"),
        None => "the shared scope".into(),
    }
}

/// Splits `PROVIDER[:NAME]`; NAME defaults to `default` when `default_name`.
fn split_id(s: &str) -> (String, Option<String>) {
    match s.split_once(':') {
        Some((p, n)) => (p.trim().to_string(), Some(n.to_string())),
        None => (s.trim().to_string(), None),
    }
}

/// "agent A's view" or "the shared scope", for plain output.
fn view_words(agent: Option<&str>) -> String {
    match agent {
        Some(a) => format!("agent {a}'s view"),
        None => "the shared scope".into(),
    }
}
