//! `modelauth report` and `where`: telling the store how a call went, and which store.

use serde_json::json;

use super::{
    call, print_json, split_id, store_line, view_words, with_agent, ReportArgs, WhereArgs,
};
use crate::cli::human::StoreContext;
use crate::cli::suggest::did_you_mean;
use crate::cli::{human_duration, print_error, write_stdout};
use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// `modelauth report`: one `auth.report` (without a name, `order.get` first says which
/// profile the walk picks now).
pub(crate) fn report(d: &Dispatcher, a: ReportArgs) -> i32 {
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
pub(crate) fn where_(d: &Dispatcher, ctx: &StoreContext, a: WhereArgs) -> i32 {
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
