//! `modelauth add`: reading one secret (stdin, file, variable) or a SecretRef, then one
//! `profiles.put`.

use std::io::{self, IsTerminal, Read};
use std::path::Path;

use serde_json::{json, Value};

use super::{
    call, print_json, scope_words, split_id, store_line, with_agent, AddArgs, AddType,
    MAX_SECRET_BYTES,
};
use crate::cli::human;
use crate::cli::{print_error, write_stdout};
use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// Reads one line of secret: at most [`MAX_SECRET_BYTES`], one trailing `\n` (or `\r\n`)
/// dropped; another line break anywhere, or nothing at all, is refused. Pure.
pub(crate) fn one_line_secret(mut raw: Vec<u8>, from: &str) -> Result<String, RpcError> {
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
pub(crate) fn parse_ref(s: &str) -> Result<Value, RpcError> {
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
pub(crate) fn parse_expires(s: &str, now: i64) -> Result<i64, String> {
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
pub(crate) fn add(d: &Dispatcher, a: AddArgs) -> i32 {
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
