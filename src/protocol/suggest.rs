//! Did-you-mean for provider and profile ids (PROTOCOL §10 r3), for every caller (`serve`,
//! `call` and the verbs): the candidates are the
//! store's own ids (its profiles' providers and ids, registered providers and aliases) and
//! the built-in providers; the nearest one by edit distance, when it is near enough.

use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// Providers everyone means (OpenClaw's common ids), offered even on an empty store.
pub(crate) const WELL_KNOWN_PROVIDERS: [&str; 14] = [
    "openai",
    "anthropic",
    "google",
    "gemini",
    "mistral",
    "groq",
    "openrouter",
    "xai",
    "deepseek",
    "together",
    "cohere",
    "perplexity",
    "github-copilot",
    "openai-codex",
];

/// The nearest of `candidates` to `asked` (case-insensitive Damerau–Levenshtein), when the
/// distance is at least 1 and at most a third of the longer length (and at most 3). Pure.
pub(crate) fn nearest<'a>(
    asked: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let a = asked.trim().to_ascii_lowercase();
    let mut best: Option<(usize, String)> = None;
    for c in candidates {
        let cl = c.to_ascii_lowercase();
        if cl == a {
            return None;
        }
        let d = strsim::damerau_levenshtein(&a, &cl);
        let limit = (a.chars().count().max(cl.chars().count()) / 3).clamp(1, 3);
        if d <= limit && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, c.to_string()));
        }
    }
    best.map(|(_, c)| c)
}

fn call(d: &Dispatcher, method: &str, params: serde_json::Value) -> Option<serde_json::Value> {
    let r = d.call(method, Some(&params.to_string())).ok()?;
    serde_json::from_str(r.get()).ok()
}

/// Provider ids and profile ids the store knows in `agent`'s view, plus registered and
/// built-in providers and their aliases.
pub(crate) fn known_ids(d: &Dispatcher, agent: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut providers: Vec<String> = WELL_KNOWN_PROVIDERS.iter().map(|s| s.to_string()).collect();
    let mut profiles = vec![];
    let mut p = serde_json::json!({});
    if let Some(a) = agent {
        p["agent"] = a.into();
    }
    if let Some(v) = call(d, "profiles.list", p) {
        for x in v["profiles"].as_array().into_iter().flatten() {
            if let Some(id) = x["id"].as_str() {
                profiles.push(id.to_string());
            }
            if let Some(pr) = x["provider"].as_str() {
                providers.push(pr.to_string());
            }
        }
    }
    if let Some(v) = call(d, "providers.list", serde_json::json!({})) {
        for x in v["providers"].as_array().into_iter().flatten() {
            if let Some(id) = x["id"].as_str() {
                providers.push(id.to_string());
            }
            for a in x["aliases"].as_array().into_iter().flatten() {
                if let Some(a) = a.as_str() {
                    providers.push(a.to_string());
                }
            }
        }
    }
    providers.sort();
    providers.dedup();
    (providers, profiles)
}

/// Adds a did-you-mean (`data.didYouMean` and a hint that starts with it) to an error
/// about an unknown provider (`missing_credential`, `unknown_provider`) or profile id
/// (`unknown_profile`). `provider` and `profile_id` are what the person typed.
pub(crate) fn did_you_mean(
    d: &Dispatcher,
    e: RpcError,
    provider: Option<&str>,
    profile_id: Option<&str>,
    agent: Option<&str>,
) -> RpcError {
    let relevant = matches!(
        e.kind,
        ErrorKind::MissingCredential | ErrorKind::UnknownProvider | ErrorKind::UnknownProfile
    );
    if !relevant || e.extra.contains_key("didYouMean") {
        return e;
    }
    let (providers, profiles) = known_ids(d, agent);
    let guess = match (e.kind, profile_id) {
        (ErrorKind::UnknownProfile, Some(id)) => {
            nearest(id, profiles.iter().map(String::as_str)).or_else(|| {
                // The provider part mistyped: `opnai:default` → `openai:default`.
                let (p, n) = id.split_once(':')?;
                let np = nearest(p, providers.iter().map(String::as_str))?;
                let cand = format!("{np}:{n}");
                profiles.contains(&cand).then_some(cand)
            })
        }
        _ => provider.and_then(|p| nearest(p, providers.iter().map(String::as_str))),
    };
    match guess {
        Some(g) => {
            let hint = e
                .hint
                .clone()
                .unwrap_or_else(|| e.kind.default_hint().to_string());
            e.with("didYouMean", &g)
                .with_hint(format!("did you mean `{g}`? Otherwise: {hint}"))
        }
        None => e,
    }
}

/// [`did_you_mean`] for an error of `method` called with `params` (a JSON object): the
/// typed ids are its `provider` (or `id` for `providers.*`), `profileId` and `agent`.
/// Other errors, and the methods the suggestion itself calls, pass through unchanged.
pub(crate) fn for_params(
    d: &Dispatcher,
    e: RpcError,
    method: &str,
    params: Option<&str>,
) -> RpcError {
    let relevant = matches!(
        e.kind,
        ErrorKind::MissingCredential | ErrorKind::UnknownProvider | ErrorKind::UnknownProfile
    );
    if !relevant || matches!(method, "profiles.list" | "providers.list") {
        return e;
    }
    let v: serde_json::Value = params
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let provider = text("provider").or_else(|| text("id"));
    did_you_mean(
        d,
        e,
        provider.as_deref(),
        text("profileId").as_deref(),
        text("agent").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_not() {
        let c = ["openai", "anthropic", "google"];
        assert_eq!(nearest("opnai", c), Some("openai".into()));
        assert_eq!(nearest("OpenIA", c), Some("openai".into()));
        assert_eq!(nearest("antropic", c), Some("anthropic".into()));
        assert_eq!(nearest("openai", c), None);
        assert_eq!(nearest("zzz", c), None);
        assert_eq!(nearest("x", ["y"]), Some("y".into()));
        assert_eq!(
            nearest("openai:wrk", ["openai:work", "openai:default"]),
            Some("openai:work".into())
        );
    }
}
