//! `modelauth list`, `rm` and `order`: the profiles of a scope and their walk order.

use serde_json::{json, Value};

use super::{
    call, print_json, scope_words, store_line, view_words, with_agent, ListArgs, OrderArgs, RmArgs,
};
use crate::cli::suggest::did_you_mean;
use crate::cli::{human_duration, print_error, write_stdout};
use crate::protocol::dispatch::Dispatcher;

/// `modelauth list`: one `profiles.list` (plus `order.get` per provider for the plain output).
pub(crate) fn list(d: &Dispatcher, a: ListArgs) -> i32 {
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
        return list_empty(d, &a);
    }
    let position = walk_positions(d, &profiles, a.agent.as_deref());
    let mut out = profile_table(&profiles, &position);
    out.push_str(&store_line());
    out.push('\n');
    write_stdout(&out, 0)
}

/// `list` with nothing to show: says so, with a did-you-mean for a near provider.
fn list_empty(d: &Dispatcher, a: &ListArgs) -> i32 {
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
        if let Some(g) = crate::cli::suggest::nearest(
            p,
            crate::cli::suggest::known_ids(d, a.agent.as_deref())
                .0
                .iter()
                .map(String::as_str),
        ) {
            out.push_str(&format!("did you mean `{g}`?\n"));
        }
    }
    out.push_str("add one: printf '%s' \"$KEY\" | modelauth add PROVIDER\n");
    write_stdout(&out, 0)
}

/// The 1-based walk position of each profile id, from one `order.get` per provider.
fn walk_positions(
    d: &Dispatcher,
    profiles: &[Value],
    agent: Option<&str>,
) -> std::collections::HashMap<String, usize> {
    let mut position = std::collections::HashMap::new();
    let mut providers: Vec<&str> = profiles
        .iter()
        .filter_map(|p| p["provider"].as_str())
        .collect();
    providers.dedup();
    for p in providers {
        let o = call(d, "order.get", &with_agent(json!({ "provider": p }), agent));
        if let Ok(o) = o {
            for (i, e) in o["effective"].as_array().into_iter().flatten().enumerate() {
                if let Some(id) = e["profileId"].as_str() {
                    position.insert(id.to_string(), i + 1);
                }
            }
        }
    }
    position
}

/// The plain table of `list`: ID, TYPE, SCOPE, STATUS, ORDER, SECRET (a fingerprint or a
/// ref, never the secret), one line per profile.
fn profile_table(
    profiles: &[Value],
    position: &std::collections::HashMap<String, usize>,
) -> String {
    let now = crate::handlers::now_ms();
    let mut rows = vec![[
        "ID".to_string(),
        "TYPE".into(),
        "SCOPE".into(),
        "STATUS".into(),
        "ORDER".into(),
        "SECRET".into(),
    ]];
    for p in profiles {
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
    out
}

/// `modelauth rm`: one `profiles.remove`.
pub(crate) fn rm(d: &Dispatcher, a: RmArgs) -> i32 {
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
pub(crate) fn order(d: &Dispatcher, a: OrderArgs) -> i32 {
    let agent = a.agent.as_deref();
    let provider = a.provider.trim().to_string();
    if a.clear {
        return order_clear(d, &a, &provider, agent);
    }
    if !a.ids.is_empty() {
        return order_set(d, &a, &provider, agent);
    }
    order_get(d, &a, &provider, agent)
}

/// `order PROVIDER --clear`: one `order.clear`.
fn order_clear(d: &Dispatcher, a: &OrderArgs, provider: &str, agent: Option<&str>) -> i32 {
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
            r["provider"].as_str().unwrap_or(provider),
            scope_words(agent)
        )
    } else {
        format!(
            "{} had no explicit order in {} (nothing to clear)",
            r["provider"].as_str().unwrap_or(provider),
            scope_words(agent)
        )
    };
    write_stdout(&format!("{what}\n{}\n", store_line()), 0)
}

/// `order PROVIDER ID...`: one `order.set` (a bare NAME is `PROVIDER:NAME`).
fn order_set(d: &Dispatcher, a: &OrderArgs, provider: &str, agent: Option<&str>) -> i32 {
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
            let e = did_you_mean(d, e, Some(provider), first_missing.as_deref(), agent);
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
    write_stdout(
        &format!(
            "order of {} in {}: {}\n{}\n",
            r["provider"].as_str().unwrap_or(provider),
            scope_words(agent),
            ids.join(", "),
            store_line()
        ),
        0,
    )
}

/// `order PROVIDER`: one `order.get`, shown as the order and the walk now.
fn order_get(d: &Dispatcher, a: &OrderArgs, provider: &str, agent: Option<&str>) -> i32 {
    let r = match call(
        d,
        "order.get",
        &with_agent(json!({ "provider": provider }), agent),
    ) {
        Ok(r) => r,
        Err(e) => return print_error(&did_you_mean(d, e, Some(provider), None, agent)),
    };
    if a.json {
        return print_json(&r);
    }
    let p = r["provider"].as_str().unwrap_or(provider).to_string();
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
        if let Some(g) = crate::cli::suggest::nearest(
            &p,
            crate::cli::suggest::known_ids(d, agent)
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
