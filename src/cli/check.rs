//! `modelauth check`: `auth.status` for cron, with exit codes (0 ok, 1 a problem, 2 expiring)
//! and a plain report whose fix lines name the real profile ids.

use super::{print_error, write_stdout};
use crate::api::StatusResult;
use crate::core::error::RpcError;
use crate::core::profile::CredentialType;
use crate::core::status::ProfileHealth;
use crate::protocol::dispatch::Dispatcher;

/// `modelauth check`: runs `auth.status` and prints it (plain or `--json`); the exit code
/// follows OpenClaw's `models status --check` ([`crate::core::status::check_exit_code`]).
/// A failing `auth.status` prints the error object on stderr and exits 1.
pub(super) fn check(
    d: &Dispatcher,
    agent: Option<String>,
    provider: Option<String>,
    refresh: bool,
    probe: bool,
    json: bool,
) -> i32 {
    let params = status_params(agent.as_deref(), provider, probe);
    let (notes, refresh_failed) = if refresh {
        match fetch_status(d, &params) {
            Ok((_, st)) => refresh_oauth(d, &st, agent.as_deref()),
            Err(code) => return code,
        }
    } else {
        (vec![], false)
    };
    let (raw, st) = match fetch_status(d, &params) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut code = crate::core::status::check_exit_code(st.overall);
    if refresh_failed && code != 1 {
        code = 1;
    }
    // *(r3)* Plaintext secrets at rest in a PostgreSQL store: a warning, never an exit code
    // (PROTOCOL §9); a failure to count is not a credential problem either.
    let plaintext = d.app().plaintext_at_rest().ok().flatten();
    let text = if json {
        // stdout stays one JSON document; the refresh notes go to stderr.
        for n in &notes {
            eprintln!("{n}");
        }
        json_report(raw.get(), plaintext)
    } else {
        plain_report(&st, &notes, plaintext)
    };
    write_stdout(&text, code)
}

/// The `auth.status` params of `check`.
fn status_params(agent: Option<&str>, provider: Option<String>, probe: bool) -> String {
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
    serde_json::Value::Object(params).to_string()
}

/// Calls `auth.status`: its raw result and the decoded one. A failure is printed (the
/// error object on stderr) and its exit code returned.
fn fetch_status(
    d: &Dispatcher,
    params: &str,
) -> Result<(Box<serde_json::value::RawValue>, StatusResult), i32> {
    let raw = d
        .call("auth.status", Some(params))
        .map_err(|e| print_error(&e))?;
    let st = serde_json::from_str(raw.get())
        .map_err(|e| print_error(&RpcError::internal(format!("decode auth.status: {e}"))))?;
    Ok((raw, st))
}

/// `check --refresh`: `auth.refresh` for every oauth profile of `st` that a refresh can help
/// (not `needs_reauth`). Returns a note per refresh done or failed, and whether one failed.
fn refresh_oauth(d: &Dispatcher, st: &StatusResult, agent: Option<&str>) -> (Vec<String>, bool) {
    let mut notes = vec![];
    let mut failed = false;
    for pr in st.providers.iter().flat_map(|p| &p.profiles) {
        if pr.kind != CredentialType::OAuth || pr.status == ProfileHealth::NeedsReauth {
            continue;
        }
        let mut rp = serde_json::json!({"profileId": pr.profile_id});
        if let Some(a) = agent {
            rp["agent"] = a.into();
        }
        match d.call("auth.refresh", Some(&rp.to_string())) {
            Ok(r) => {
                let v: serde_json::Value = serde_json::from_str(r.get()).unwrap_or_default();
                if v["refreshed"] == true {
                    notes.push(format!("refreshed {}", pr.profile_id));
                }
            }
            Err(e) => {
                failed = true;
                notes.push(format!(
                    "refresh of {} failed: {} ({})",
                    pr.profile_id,
                    e.kind.as_str(),
                    e.message
                ));
            }
        }
    }
    (notes, failed)
}

/// `check --json`: the `auth.status` result as is, plus `plaintextSecretsAtRest` (and its
/// warning) when the store counts them.
fn json_report(raw: &str, plaintext: Option<u64>) -> String {
    match (plaintext, serde_json::from_str::<serde_json::Value>(raw)) {
        (Some(n), Ok(serde_json::Value::Object(mut o))) => {
            o.insert("plaintextSecretsAtRest".into(), n.into());
            if n > 0 {
                o.insert("warnings".into(), serde_json::json!([plaintext_warning(n)]));
            }
            format!("{}\n", serde_json::Value::Object(o))
        }
        _ => format!("{raw}\n"),
    }
}

/// The plain report of `check`: the plaintext warning, the refresh notes, then
/// [`render_status`]; an empty answer names the store (PROTOCOL §10 r3: a typo in
/// `--store` reads empty).
fn plain_report(st: &StatusResult, notes: &[String], plaintext: Option<u64>) -> String {
    let mut text = String::new();
    if let Some(n) = plaintext.filter(|n| *n > 0) {
        text.push_str(&format!("warning: {}\n", plaintext_warning(n)));
    }
    for n in notes {
        text.push_str(n);
        text.push('\n');
    }
    text.push_str(&render_status(st));
    if st.providers.is_empty() {
        if let Some(c) = super::human::context() {
            text.push_str(&format!("store: {}\n", c.describe()));
        }
    }
    text
}

/// The warning line of `check` for `n` plaintext secret fields in a PostgreSQL store.
pub(super) fn plaintext_warning(n: u64) -> String {
    format!(
        "this PostgreSQL store holds {n} secret field(s) in plaintext, readable in its dumps, replicas and statement logs; configure a store key (MODELAUTH_STORE_KEY_FILE, $CREDENTIALS_DIRECTORY/modelauth-store-key, MODELAUTH_STORE_KEY_COMMAND or MODELAUTH_STORE_KEY) and run `modelauth store seal`"
    )
}

/// `3d 4h`, `5h 2m`, `12m`, `40s`: a duration in milliseconds for people.
/// Rounded to the nearest second first, so a 120 s cooldown read a few milliseconds later
/// still says `2m`, never `1m`.
pub(crate) fn human_duration(ms: i64) -> String {
    let s = (ms.unsigned_abs() + 500) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 && sec > 0 && m < 10 {
        format!("{m}m {sec}s")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

pub(super) fn when(t: i64, now: i64) -> String {
    if t >= now {
        format!("in {}", human_duration(t - now))
    } else {
        format!("{} ago", human_duration(now - t))
    }
}

/// The plain report of `modelauth check`: one line per provider and per profile.
pub(crate) fn render_status(st: &StatusResult) -> String {
    use std::fmt::Write as _;
    let now = st.now;
    let mut o = String::new();
    let scope = st
        .agent
        .as_deref()
        .map(|a| format!("agent {a} (own and shared profiles)"))
        .unwrap_or_else(|| "shared profiles".into());
    let _ = writeln!(
        o,
        "auth status: {} ({scope})",
        st.overall.as_str().to_uppercase()
    );
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
                if r != pr.status.as_str() {
                    detail.push(r.clone());
                }
            }
            if let Some(u) = pr.until {
                if matches!(pr.status, ProfileHealth::Cooldown | ProfileHealth::Disabled) {
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
                pr.profile_id,
                pr.kind.as_str(),
                pr.status
            );
            if let Some(fix) = profile_fix(&pr.profile_id, pr.kind, pr.status) {
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
fn profile_fix(id: &str, kind: CredentialType, status: ProfileHealth) -> Option<String> {
    let kind = kind.as_str();
    match status {
        ProfileHealth::Expired | ProfileHealth::NeedsReauth => Some(format!(
            "log in again, then store the new credential under the same id: {{\"profile\":{{\"id\":\"{id}\",\"type\":\"{kind}\",...}}}} on the stdin of `modelauth call profiles.put -`"
        )),
        ProfileHealth::RefUnavailable => Some(format!(
            "make what its SecretRef names readable; see it with modelauth call profiles.get '{{\"profileId\":\"{id}\"}}'"
        )),
        ProfileHealth::Disabled | ProfileHealth::Cooldown => Some(format!(
            "wait, or end it now: modelauth call auth.clearCooldown '{{\"profileId\":\"{id}\"}}'"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod duration_tests {
    use super::human_duration;

    #[test]
    fn durations_round_to_the_nearest_second_and_keep_seconds_under_ten_minutes() {
        assert_eq!(human_duration(119_973), "2m");
        assert_eq!(human_duration(90_000), "1m 30s");
        assert_eq!(human_duration(59_400), "59s");
        assert_eq!(human_duration(59_600), "1m");
        assert_eq!(human_duration(12 * 60_000 + 30_000), "12m");
        assert_eq!(human_duration(5 * 3_600_000 + 2 * 60_000), "5h 2m");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(human_duration(-40_000), "40s");
    }
}
