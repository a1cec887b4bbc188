//! Commands for people (PROTOCOL §10 r3): `add`, `list`, `rm`, `order`, `report`, `where`.
//!
//! Each verb is one JSON-RPC call on the same methods (`profiles.put`, `profiles.list`,
//! `profiles.remove`, `order.get|set|clear`, `auth.report`, `helper.info`), so the rules and
//! the errors are the methods'; `--json` prints the method's result unchanged. Two verbs
//! read first: `report PROVIDER` without a name asks `order.get` which profile the walk
//! picks now, and `list` asks `order.get` for the position of each provider's profiles
//! (only for the plain output). A secret is read from stdin, a file or a variable, never
//! from argv.

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::human::{self, StoreContext};
use super::suggest::did_you_mean;
use super::{human_duration, print_error, write_stdout};
use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// The largest secret `add` reads (stdin or `--from-file`), in bytes.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

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

/// Reads one line of secret: at most [`MAX_SECRET_BYTES`], one trailing `\n` (or `\r\n`)
/// dropped; another line break anywhere, or nothing at all, is refused. Pure.
pub fn one_line_secret(mut raw: Vec<u8>, from: &str) -> Result<String, RpcError> {
    use zeroize::Zeroize;
    if raw.ends_with(b"\n") {
        raw.pop();
        if raw.ends_with(b"\r") {
            raw.pop();
        }
    }
    let bad = |msg: String, hint: &str| RpcError::invalid_params(msg).with_hint(hint.to_string());
    if raw.iter().any(|&b| b == b'\n' || b == b'\r') {
        raw.zeroize();
        return Err(bad(
            format!("the secret from {from} has more than one line; refused"),
            "give exactly one line: the key itself (e.g. printf '%s' \"$KEY\" | modelauth add openai)",
        )
        .with("reason", "multiline_secret"));
    }
    match String::from_utf8(raw) {
        Ok(s) if s.trim().is_empty() => Err(bad(
            format!("no secret in {from}"),
            "pipe the key on stdin (printf '%s' \"$KEY\" | modelauth add openai), or use --from-env VAR / --from-file PATH",
        )
        .with("reason", "empty_secret")),
        Ok(s) => Ok(s),
        Err(e) => {
            let mut b = e.into_bytes();
            b.zeroize();
            Err(bad(
                format!("the secret from {from} is not UTF-8"),
                "give the key as UTF-8 text",
            ))
        }
    }
}

fn read_capped(r: &mut dyn Read, from: &str) -> Result<Vec<u8>, RpcError> {
    let mut buf = Vec::new();
    r.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            RpcError::invalid_params(format!("cannot read the secret from {from}: {e}"))
        })?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        zeroize::Zeroize::zeroize(&mut buf);
        return Err(RpcError::invalid_params(format!(
            "the secret from {from} is larger than {MAX_SECRET_BYTES} bytes"
        )));
    }
    Ok(buf)
}

fn read_secret(a: &AddArgs) -> Result<String, RpcError> {
    if let Some(var) = &a.from_env {
        let v = std::env::var_os(var).unwrap_or_default();
        let from = format!("${var}");
        return one_line_secret(v.into_encoded_bytes(), &from);
    }
    if let Some(p) = &a.from_file {
        let from = p.display().to_string();
        let mut f = std::fs::File::open(p).map_err(|e| {
            RpcError::invalid_params(format!("cannot open {from}: {e}"))
                .with_hint("give a readable file holding the key on one line")
        })?;
        let buf = read_capped(&mut f, &from)?;
        return one_line_secret(buf, &from);
    }
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return Err(RpcError::invalid_params(
            "add reads the secret from stdin, and stdin is a terminal (modelauth never prompts)",
        )
        .with("reason", "stdin_is_terminal")
        .with_hint(
            "pipe it: printf '%s' \"$KEY\" | modelauth add PROVIDER, or use --from-env VAR / --from-file PATH",
        ));
    }
    let buf = read_capped(&mut stdin.lock(), "stdin")?;
    one_line_secret(buf, "stdin")
}

/// Parses `--ref`: `env:VAR`, `file:PROVIDER#/pointer`, `exec:PROVIDER#id`, `store:NAME`
/// into a SecretRef object (a `file:` with a path is kept as `(path, pointer)` in `Err`
/// for [`file_provider_for`]). Pure.
pub fn parse_ref(s: &str) -> Result<Value, RpcError> {
    let bad = || {
        RpcError::invalid_params(format!("--ref {s:?} is not a SecretRef"))
            .with_hint("use env:VAR, file:PROVIDER#/pointer, exec:PROVIDER#id or store:NAME")
    };
    let (source, rest) = s.split_once(':').ok_or_else(bad)?;
    let r = match source {
        "env" if !rest.is_empty() => json!({"source": "env", "provider": "default", "id": rest}),
        "store" if !rest.is_empty() => {
            json!({"source": "store", "provider": "default", "id": rest})
        }
        "file" | "exec" => {
            let (p, id) = rest.rsplit_once('#').ok_or_else(bad)?;
            if p.is_empty() || id.is_empty() {
                return Err(bad());
            }
            json!({"source": source, "provider": p, "id": id})
        }
        _ => return Err(bad()),
    };
    Ok(r)
}

/// For `file:/abs/path#/ptr`: the name of the `settings.secretProviders` file entry whose
/// path is that file.
fn file_provider_for(d: &Dispatcher, path: &str) -> Result<String, RpcError> {
    let s = call(d, "settings.get", &json!({}))?;
    let want = human::absolute(Path::new(path));
    if let Some(m) = s["settings"]["secretProviders"].as_object() {
        for (name, v) in m {
            if v["source"] == "file" && v["path"].as_str().map(Path::new) == Some(&want) {
                return Ok(name.clone());
            }
        }
    }
    Err(RpcError::new(
        ErrorKind::InvalidParams,
        format!("no file secret provider in settings.secretProviders reads {}", want.display()),
    )
    .with_hint(format!(
        "register it first: modelauth call settings.set '{{\"settings\":{{\"secretProviders\":{{\"files\":{{\"source\":\"file\",\"path\":\"{}\",\"mode\":\"json\"}}}}}}}}', then --ref file:files#/pointer",
        want.display()
    )))
}

/// Parses `--expires`: ms since the epoch, `YYYY-MM-DD[THH:MM[:SS]][Z]` (UTC), or a
/// duration from `now` (`90d`, `12h`, `30m`, `45s`, `2w`). Pure.
pub fn parse_expires(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let unit = |c: char| match c {
        's' => Some(1_000i64),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        'w' => Some(7 * 86_400_000),
        _ => None,
    };
    let body = s.strip_prefix('+').unwrap_or(s);
    if let Some(u) = body.chars().last().and_then(unit) {
        if let Ok(n) = body[..body.len() - 1].parse::<i64>() {
            return Ok(now + n * u);
        }
    }
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, t.trim_end_matches('Z')),
        None => (s, "00:00:00"),
    };
    let nums = |t: &str, sep: char| -> Option<Vec<i64>> {
        t.split(sep).map(|x| x.parse::<i64>().ok()).collect()
    };
    let bad =
        || format!("{s:?} is not a time: give ms since the epoch, 2027-01-31[T12:00:00Z] or 90d");
    let d = nums(date, '-').filter(|d| d.len() == 3).ok_or_else(bad)?;
    let t = nums(time, ':')
        .filter(|t| (2..=3).contains(&t.len()))
        .ok_or_else(bad)?;
    let (y, mo, da) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || t[0] > 23 || t[1] > 59 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t.get(2).copied().unwrap_or(0);
    Ok(secs * 1000)
}

/// `modelauth add`: one `profiles.put`.
pub fn add(d: &Dispatcher, a: AddArgs) -> i32 {
    let (provider, name) = split_id(&a.id);
    let id = format!("{provider}:{}", name.as_deref().unwrap_or("default"));
    let mut profile = json!({"id": id, "type": match a.kind { AddType::ApiKey => "api_key", AddType::Token => "token" }});
    if let Some(t) = &a.expires {
        match parse_expires(t, crate::handlers::now_ms()) {
            Ok(ms) => profile["expires"] = ms.into(),
            Err(m) => {
                return print_error(
                    &RpcError::invalid_params(m).with("pointer", "/profile/expires"),
                )
            }
        }
    }
    let field = match a.kind {
        AddType::ApiKey => "key",
        AddType::Token => "token",
    };
    let mut secret = None;
    if let Some(r) = &a.secret_ref {
        let mut r = match parse_ref(r) {
            Ok(r) => r,
            Err(e) => return print_error(&e),
        };
        if r["source"] == "file" && r["provider"].as_str().is_some_and(|p| p.contains('/')) {
            match file_provider_for(d, r["provider"].as_str().unwrap_or_default()) {
                Ok(name) => r["provider"] = name.into(),
                Err(e) => return print_error(&e),
            }
        }
        profile[format!("{field}Ref")] = r;
    } else {
        match read_secret(&a) {
            Ok(s) => secret = Some(s),
            Err(e) => return print_error(&e),
        }
        profile[field] = secret.clone().unwrap_or_default().into();
    }
    let mut params = with_agent(json!({ "profile": profile }), a.agent.as_deref());
    if a.primary {
        params["primary"] = true.into();
    }
    let r = call(d, "profiles.put", &params);
    // The secret leaves this process's memory as soon as the call is done.
    if let Some(mut s) = secret {
        zeroize::Zeroize::zeroize(&mut s);
    }
    if let Some(serde_json::Value::String(s)) =
        params.get_mut("profile").and_then(|p| p.get_mut(field))
    {
        zeroize::Zeroize::zeroize(s);
    }
    let r = match r {
        Ok(r) => r,
        Err(e) => return print_error(&e),
    };
    if a.json {
        return print_json(&r);
    }
    let verb = if r["created"] == true {
        "stored"
    } else {
        "replaced"
    };
    let mut out = format!(
        "{verb} {} ({}, {}, revision {})\n",
        r["profileId"].as_str().unwrap_or(&id),
        field_word(a.kind, a.secret_ref.is_some()),
        scope_words(a.agent.as_deref()),
        r["revision"]
    );
    if let Some(o) = r["order"].as_array() {
        let ids: Vec<&str> = o.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("order of {provider}: {}\n", ids.join(", ")));
    }
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

fn field_word(k: AddType, is_ref: bool) -> &'static str {
    match (k, is_ref) {
        (AddType::ApiKey, false) => "api_key",
        (AddType::ApiKey, true) => "api_key, SecretRef",
        (AddType::Token, false) => "token",
        (AddType::Token, true) => "token, SecretRef",
    }
}

/// `modelauth list`: one `profiles.list` (plus `order.get` per provider for the plain output).
pub fn list(d: &Dispatcher, a: ListArgs) -> i32 {
    let mut params = with_agent(json!({}), a.agent.as_deref());
    if let Some(p) = &a.provider {
        params["provider"] = p.as_str().into();
    }
    let r = match call(d, "profiles.list", &params) {
        Ok(r) => r,
        Err(e) => return print_error(&e),
    };
    if a.json {
        return print_json(&r);
    }
    let profiles = r["profiles"].as_array().cloned().unwrap_or_default();
    if profiles.is_empty() {
        let what = match &a.provider {
            Some(p) => format!("no profiles of provider {p}"),
            None => "no profiles".to_string(),
        };
        let mut out = format!(
            "{what} in {}\n{}\n",
            view_words(a.agent.as_deref()),
            store_line()
        );
        if let Some(p) = &a.provider {
            if let Some(g) = super::suggest::nearest(
                p,
                super::suggest::known_ids(d, a.agent.as_deref())
                    .0
                    .iter()
                    .map(String::as_str),
            ) {
                out.push_str(&format!("did you mean `{g}`?\n"));
            }
        }
        out.push_str("add one: printf '%s' \"$KEY\" | modelauth add PROVIDER\n");
        return write_stdout(&out, 0);
    }
    // The walk position of each profile, per provider.
    let mut position = std::collections::HashMap::new();
    let mut providers: Vec<&str> = profiles
        .iter()
        .filter_map(|p| p["provider"].as_str())
        .collect();
    providers.dedup();
    for p in providers {
        let o = call(
            d,
            "order.get",
            &with_agent(json!({ "provider": p }), a.agent.as_deref()),
        );
        if let Ok(o) = o {
            for (i, e) in o["effective"].as_array().into_iter().flatten().enumerate() {
                if let Some(id) = e["profileId"].as_str() {
                    position.insert(id.to_string(), i + 1);
                }
            }
        }
    }
    let now = crate::handlers::now_ms();
    let mut rows = vec![[
        "ID".to_string(),
        "TYPE".into(),
        "SCOPE".into(),
        "STATUS".into(),
        "ORDER".into(),
        "SECRET".into(),
    ]];
    for p in &profiles {
        let id = p["id"].as_str().unwrap_or("").to_string();
        let mut status = p["status"].as_str().unwrap_or("").to_string();
        if let Some(u) = p["usage"]["cooldownUntil"].as_i64().filter(|u| *u > now) {
            status = format!("{status}, cooldown {}", human_duration(u - now));
        }
        let secret = if let Some(r) = p.get("keyRef").or_else(|| p.get("tokenRef")) {
            format!(
                "ref {}:{}:{}",
                r["source"].as_str().unwrap_or(""),
                r["provider"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        } else if let Some(f) = p["secret"]["fingerprint"].as_str() {
            format!("{f} ({} chars)", p["secret"]["length"])
        } else {
            "-".into()
        };
        rows.push([
            id.clone(),
            p["type"].as_str().unwrap_or("").into(),
            p["scope"].as_str().unwrap_or("").into(),
            status,
            position.get(&id).map_or("-".into(), |n| n.to_string()),
            secret,
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

fn view_words(agent: Option<&str>) -> String {
    match agent {
        Some(a) => format!("agent {a}'s view"),
        None => "the shared scope".into(),
    }
}

/// `modelauth rm`: one `profiles.remove`.
pub fn rm(d: &Dispatcher, a: RmArgs) -> i32 {
    let mut params = with_agent(json!({ "profileId": a.profile_id }), a.agent.as_deref());
    if a.dry_run {
        params["dryRun"] = true.into();
    }
    let r = match call(d, "profiles.remove", &params) {
        Ok(r) => r,
        Err(e) => {
            let e = did_you_mean(d, e, None, Some(&a.profile_id), a.agent.as_deref());
            return print_error(&e);
        }
    };
    if a.json {
        return print_json(&r);
    }
    let id = r["profileId"].as_str().unwrap_or(&a.profile_id);
    let orders: Vec<&str> = r["orderEntriesRemoved"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = if a.dry_run {
        format!(
            "would remove {id} from {} (nothing changed)",
            scope_words(a.agent.as_deref())
        )
    } else {
        format!("removed {id} from {}", scope_words(a.agent.as_deref()))
    };
    if !orders.is_empty() {
        out.push_str(&format!(" and from the order of {}", orders.join(", ")));
    }
    out.push('\n');
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

/// `modelauth order`: `order.get`, `order.set` or `order.clear`.
pub fn order(d: &Dispatcher, a: OrderArgs) -> i32 {
    let agent = a.agent.as_deref();
    let provider = a.provider.trim().to_string();
    if a.clear {
        let r = match call(
            d,
            "order.clear",
            &with_agent(json!({ "provider": provider }), agent),
        ) {
            Ok(r) => r,
            Err(e) => return print_error(&e),
        };
        if a.json {
            return print_json(&r);
        }
        let what = if r["cleared"] == true {
            format!(
                "cleared the order of {} in {}",
                r["provider"].as_str().unwrap_or(&provider),
                scope_words(agent)
            )
        } else {
            format!(
                "{} had no explicit order in {} (nothing to clear)",
                r["provider"].as_str().unwrap_or(&provider),
                scope_words(agent)
            )
        };
        return write_stdout(&format!("{what}\n{}\n", store_line()), 0);
    }
    if !a.ids.is_empty() {
        let ids: Vec<String> = a
            .ids
            .iter()
            .map(|i| {
                if i.contains(':') {
                    i.clone()
                } else {
                    format!("{provider}:{i}")
                }
            })
            .collect();
        let params = with_agent(json!({ "provider": provider, "order": ids }), agent);
        let r = match call(d, "order.set", &params) {
            Ok(r) => r,
            Err(e) => {
                let first_missing = e
                    .extra
                    .get("missing")
                    .and_then(|m| m.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let e = did_you_mean(d, e, Some(&provider), first_missing.as_deref(), agent);
                return print_error(&e);
            }
        };
        if a.json {
            return print_json(&r);
        }
        let ids: Vec<&str> = r["order"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        return write_stdout(
            &format!(
                "order of {} in {}: {}\n{}\n",
                r["provider"].as_str().unwrap_or(&provider),
                scope_words(agent),
                ids.join(", "),
                store_line()
            ),
            0,
        );
    }
    let r = match call(
        d,
        "order.get",
        &with_agent(json!({ "provider": provider }), agent),
    ) {
        Ok(r) => r,
        Err(e) => return print_error(&did_you_mean(d, e, Some(&provider), None, agent)),
    };
    if a.json {
        return print_json(&r);
    }
    let p = r["provider"].as_str().unwrap_or(&provider).to_string();
    let mut out = match r["order"].as_array() {
        Some(o) => format!(
            "order of {p} ({} order): {}\n",
            r["source"].as_str().unwrap_or("shared"),
            o.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
        ),
        None => format!("{p} has no explicit order; the default applies (oauth, token, api_key; least recently used first)\n"),
    };
    let eff = r["effective"].as_array().cloned().unwrap_or_default();
    if eff.is_empty() {
        out.push_str(&format!("no profiles of {p} in {}\n", view_words(agent)));
        if let Some(g) = super::suggest::nearest(
            &p,
            super::suggest::known_ids(d, agent)
                .0
                .iter()
                .map(String::as_str),
        ) {
            out.push_str(&format!("did you mean `{g}`?\n"));
        }
    } else {
        out.push_str("the walk now:\n");
        let now = crate::handlers::now_ms();
        for (i, e) in eff.iter().enumerate() {
            let id = e["profileId"].as_str().unwrap_or("");
            let mut why = if e["usable"] == true {
                "usable".to_string()
            } else {
                e["reason"].as_str().unwrap_or("skipped").to_string()
            };
            if let Some(u) = e["until"].as_i64().filter(|u| *u > now) {
                why.push_str(&format!(" for {}", human_duration(u - now)));
            }
            out.push_str(&format!("  {}. {id}  {why}\n", i + 1));
        }
    }
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

/// `modelauth report`: one `auth.report` (without a name, `order.get` first says which
/// profile the walk picks now).
pub fn report(d: &Dispatcher, a: ReportArgs) -> i32 {
    let agent = a.agent.as_deref();
    let (provider, name) = split_id(&a.target);
    let profile_id = match name {
        Some(n) => format!("{provider}:{n}"),
        None => {
            let r = match call(
                d,
                "order.get",
                &with_agent(json!({ "provider": provider }), agent),
            ) {
                Ok(r) => r,
                Err(e) => return print_error(&did_you_mean(d, e, Some(&provider), None, agent)),
            };
            let first = r["effective"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["usable"] == true)
                .and_then(|e| e["profileId"].as_str())
                .map(str::to_string);
            match first {
                Some(id) => id,
                None => {
                    let empty = r["effective"].as_array().is_none_or(|v| v.is_empty());
                    let e = if empty {
                        RpcError::new(
                            ErrorKind::MissingCredential,
                            format!(
                                "no profile of provider `{provider}` to report on in {}",
                                view_words(agent)
                            ),
                        )
                        .with("provider", &provider)
                    } else {
                        RpcError::new(
                            ErrorKind::Unavailable,
                            format!("the walk picks no profile of `{provider}` now (every one is skipped); name the one to report on"),
                        )
                        .with("provider", &provider)
                        .with("candidates", r["effective"].clone())
                        .with_hint(format!("modelauth report {provider}:NAME --status N; `modelauth order {provider}` shows why each is skipped"))
                    };
                    return print_error(&did_you_mean(d, e, Some(&provider), None, agent));
                }
            }
        }
    };
    let mut params = with_agent(
        json!({ "profileId": profile_id, "httpStatus": a.status }),
        agent,
    );
    if let Some(s) = a.retry_after {
        params["retryAfterMs"] = s.saturating_mul(1000).into();
    }
    if let Some(m) = &a.model {
        params["model"] = m.as_str().into();
    }
    let r = match call(d, "auth.report", &params) {
        Ok(r) => r,
        Err(e) => return print_error(&did_you_mean(d, e, None, Some(&profile_id), agent)),
    };
    if a.json {
        return print_json(&r);
    }
    let now = crate::handlers::now_ms();
    let id = r["profileId"].as_str().unwrap_or(&profile_id);
    let mut out = format!(
        "reported HTTP {} for {id}: {}",
        a.status,
        r["outcome"].as_str().unwrap_or("?")
    );
    let u = &r["usage"];
    if let Some(t) = u["cooldownUntil"].as_i64().filter(|t| *t > now) {
        out.push_str(&format!(
            "; cooling down for {} ({})",
            human_duration(t - now),
            u["cooldownReason"].as_str().unwrap_or("")
        ));
    }
    if let Some(t) = u["disabledUntil"].as_i64().filter(|t| *t > now) {
        out.push_str(&format!(
            "; disabled for {} ({})",
            human_duration(t - now),
            u["disabledReason"].as_str().unwrap_or("")
        ));
    }
    if r["recorded"] == false {
        out.push_str(" (not recorded: the provider is exempt from cooldowns)");
    }
    out.push('\n');
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

/// `modelauth where`: `helper.info`'s store, made absolute, with how it was chosen.
pub fn where_(d: &Dispatcher, ctx: &StoreContext, a: WhereArgs) -> i32 {
    let r = match call(d, "helper.info", &json!({})) {
        Ok(r) => r,
        Err(e) => return print_error(&e),
    };
    let st = &r["store"];
    let exists = st["exists"].as_bool().unwrap_or(false);
    let v = json!({
        "path": ctx.path,
        "backend": st["backend"],
        "exists": exists,
        "chosenBy": ctx.chosen_by.as_str(),
        "schemaVersion": st["schemaVersion"],
        "reachable": st["reachable"],
    });
    if a.json {
        return print_json(&v);
    }
    let mut out = format!(
        "{}\nbackend: {}\nexists: {}\nchosen by: {}\n",
        ctx.path,
        st["backend"].as_str().unwrap_or(ctx.backend),
        if exists {
            "yes"
        } else {
            "no (created on the first write)"
        },
        ctx.chosen_by.phrase()
    );
    if st["reachable"] == false {
        out.push_str(&format!(
            "reachable: no ({})\n",
            st["error"]["message"].as_str().unwrap_or("")
        ));
    }
    write_stdout(&out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_only() {
        assert_eq!(
            one_line_secret(b"sk-a\"b\\c\n".to_vec(), "stdin").unwrap(),
            "sk-a\"b\\c"
        );
        assert_eq!(one_line_secret(b"k\r\n".to_vec(), "stdin").unwrap(), "k");
        assert_eq!(
            one_line_secret("clé-ü".as_bytes().to_vec(), "stdin").unwrap(),
            "clé-ü"
        );
        for bad in [&b"a\nb"[..], b"a\n\n", b"a\rb", b"", b"\n", b"  \n"] {
            assert!(one_line_secret(bad.to_vec(), "stdin").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refs_and_times() {
        assert_eq!(
            parse_ref("env:OPENAI_KEY").unwrap(),
            json!({"source":"env","provider":"default","id":"OPENAI_KEY"})
        );
        assert_eq!(
            parse_ref("exec:vault#openai/key").unwrap(),
            json!({"source":"exec","provider":"vault","id":"openai/key"})
        );
        assert_eq!(
            parse_ref("file:files#/openai/key").unwrap(),
            json!({"source":"file","provider":"files","id":"/openai/key"})
        );
        assert_eq!(parse_ref("store:OPENAI").unwrap()["source"], "store");
        assert!(parse_ref("vault:x").is_err());
        assert!(parse_ref("exec:vault").is_err());
        assert!(parse_ref("env:").is_err());
        assert_eq!(parse_expires("1800000000000", 0), Ok(1_800_000_000_000));
        assert_eq!(parse_expires("90d", 5), Ok(5 + 90 * 86_400_000));
        assert_eq!(parse_expires("1970-01-02", 0), Ok(86_400_000));
        assert_eq!(
            parse_expires("2027-01-31T12:00:00Z", 0),
            Ok(1_801_396_800_000)
        );
        assert!(parse_expires("soon", 0).is_err());
        assert!(parse_expires("2027-13-01", 0).is_err());
    }
}
