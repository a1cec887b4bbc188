//! `providers.put`, `providers.get`, `providers.list`, `providers.remove` (protocol §3
//! "Secrets, providers and settings"): aliases that normalise provider ids everywhere,
//! extra environment key names (§6) and the OAuth client used for refresh (§5.2).
//!
//! A provider is stored as one row of the `providers` table: its id and the JSON body
//! `{aliases, envVars, oauth?, revision}`. `revision` lives in the body (the table has no
//! column for it): a row written before it existed reads as revision 1.

use crate::api::{
    ProviderGetResult, ProviderIdParams, ProviderOAuth, ProviderPutParams, ProviderPutResult,
    ProviderRemoveResult, ProviderView, ProvidersListParams, ProvidersListResult,
};
use std::collections::BTreeSet;

use serde_json::json;

use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids::{self, Aliases};
use crate::handlers::{load_aliases, revision_conflict, App};
use crate::store::Tx;

fn unknown_provider(id: &str) -> RpcError {
    RpcError::new(
        ErrorKind::UnknownProvider,
        format!("no registered provider `{id}`"),
    )
    .with("id", id)
    .with_hint(
        "list the registered providers with providers.list, or register it with providers.put",
    )
}

fn bad(pointer: &str, msg: impl Into<String>) -> RpcError {
    RpcError::invalid_params(msg).with("pointer", pointer)
}

/// The revision of a stored provider body: its `revision` member, 1 for a row written
/// before providers had one.
pub(crate) fn body_revision(body: &serde_json::Value) -> i64 {
    body.get("revision")
        .and_then(serde_json::Value::as_i64)
        .filter(|r| *r > 0)
        .unwrap_or(1)
}

/// A stored provider body without its `revision`: what two registrations are compared by.
pub(crate) fn body_without_revision(body: &serde_json::Value) -> serde_json::Value {
    let mut b = body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("revision");
    }
    b
}

/// Reads a stored provider body (lenient: broken members read as empty).
pub(crate) fn view_from_body(id: &str, body: &serde_json::Value) -> ProviderView {
    let strings = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    ProviderView {
        id: id.to_string(),
        aliases: strings("aliases"),
        env_vars: strings("envVars"),
        oauth: body
            .get("oauth")
            .cloned()
            .and_then(|o| serde_json::from_value(o).ok()),
        builtin: false,
        revision: body_revision(body),
    }
}

/// OpenClaw 2026.9.6's built-in OAuth clients (protocol §5.2): provider id, token endpoint
/// and public client id, as read from the installed `openclaw@2026.9.6` package
/// (`dist/provider-runtime.errors-*.mjs` for anthropic, `extensions/openai/.setup/
/// openai-chatgpt-oauth-flow.runtime-*.mjs` for openai-codex, `extensions/xai/xai-oauth.js`
/// for xai). Known without `providers.put`; a registration with `oauth` overrides one.
pub(crate) const BUILTIN_OAUTH: &[(&str, &str, &str)] = &[
    (
        "anthropic",
        "https://platform.claude.com/v1/oauth/token",
        "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    ),
    (
        "openai-codex",
        "https://auth.openai.com/oauth/token",
        "app_EMoamEEZ73f0CkXaXp7hrann",
    ),
    // OpenClaw 2026.9 keeps ChatGPT OAuth under `openai` (`openai-codex` is retired) and
    // refreshes it with the same client (`extensions/openai/openai-chatgpt-device-code.js`).
    (
        "openai",
        "https://auth.openai.com/oauth/token",
        "app_EMoamEEZ73f0CkXaXp7hrann",
    ),
    (
        "xai",
        "https://auth.x.ai/oauth/token",
        "b1a00492-073a-47ea-816f-4c329264a828",
    ),
];

/// The built-in OAuth client of `provider` ([`BUILTIN_OAUTH`]), if it has one.
pub(crate) fn builtin_oauth(provider: &str) -> Option<ProviderOAuth> {
    BUILTIN_OAUTH
        .iter()
        .find(|(id, _, _)| *id == provider)
        .map(|(_, url, client)| ProviderOAuth {
            token_url: url.to_string(),
            client_id: client.to_string(),
            client_secret_ref: None,
            scope: None,
        })
}

/// The view of a built-in provider that is not registered.
fn builtin_view(id: &str) -> Option<ProviderView> {
    builtin_oauth(id).map(|o| ProviderView {
        id: id.to_string(),
        aliases: vec![],
        env_vars: vec![],
        oauth: Some(o),
        builtin: true,
        revision: 0,
    })
}

/// A registered view, completed with the built-in OAuth client when it has none.
fn with_builtin(mut v: ProviderView) -> ProviderView {
    if v.oauth.is_none() {
        if let Some(o) = builtin_oauth(&v.id) {
            v.oauth = Some(o);
            v.builtin = true;
        }
    }
    v
}

fn find(c: &dyn Tx, raw: &str) -> Result<ProviderView> {
    let aliases = load_aliases(c)?;
    let id = ids::normalize_provider(raw, &aliases).map_err(|e| bad("/id", e.to_string()))?;
    c.providers()?
        .into_iter()
        .find(|(pid, _)| *pid == id)
        .map(|(pid, body)| with_builtin(view_from_body(&pid, &body)))
        .or_else(|| builtin_view(&id))
        .ok_or_else(|| unknown_provider(&id))
}

/// Validates `providers.put` params against the registered providers; returns the view
/// to store. Pure apart from the `existing` list passed in.
fn validate(
    p: &ProviderPutParams,
    existing: &[(String, serde_json::Value)],
) -> Result<ProviderView> {
    let id =
        ids::normalize_provider(&p.id, &Aliases::new()).map_err(|e| bad("/id", e.to_string()))?;
    // Aliases registered by other providers.
    let mut taken: Aliases = Aliases::new();
    for (pid, body) in existing.iter().filter(|(pid, _)| *pid != id) {
        for a in view_from_body(pid, body).aliases {
            taken.insert(a, pid.clone());
        }
    }
    if let Some(owner) = taken.get(&id) {
        return Err(
            bad("/id", format!("`{id}` is an alias of provider `{owner}`")).with_hint(format!(
                "register it under `{owner}`, or remove the alias there first"
            )),
        );
    }
    let mut aliases = BTreeSet::new();
    for (i, raw) in p.aliases.iter().flatten().enumerate() {
        let ptr = format!("/aliases/{i}");
        let a =
            ids::normalize_provider(raw, &Aliases::new()).map_err(|e| bad(&ptr, e.to_string()))?;
        if a == id {
            return Err(bad(&ptr, format!("`{a}` is the provider's own id")));
        }
        if let Some(owner) = taken.get(&a) {
            return Err(bad(&ptr, format!("`{a}` is already an alias of `{owner}`")));
        }
        if existing.iter().any(|(pid, _)| *pid == a) {
            return Err(bad(&ptr, format!("`{a}` is a registered provider itself")));
        }
        aliases.insert(a);
    }
    let mut env_vars = vec![];
    for (i, v) in p.env_vars.iter().flatten().enumerate() {
        let ok = v
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.len() <= 128
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(bad(
                &format!("/envVars/{i}"),
                "an environment variable name such as OPENAI_API_KEY",
            ));
        }
        if crate::core::envkeys::is_reserved_env_var(v) {
            return Err(bad(
                &format!("/envVars/{i}"),
                format!("`{v}` changes how programs are loaded or started; a key never goes in it"),
            ));
        }
        if !env_vars.contains(v) {
            env_vars.push(v.clone());
        }
    }
    if let Some(o) = &p.oauth {
        crate::secrets::oauth::check_token_url(&o.token_url)
            .map_err(|why| bad("/oauth/tokenUrl", why))?;
        if o.client_id.trim().is_empty() || o.client_id.chars().any(char::is_control) {
            return Err(bad(
                "/oauth/clientId",
                "`clientId` must be a non-empty string",
            ));
        }
        if let Some(r) = &o.client_secret_ref {
            let v = serde_json::to_value(r).map_err(|e| RpcError::internal(e.to_string()))?;
            crate::core::profile::validate_secret_ref(&v, "/oauth/clientSecretRef")?;
        }
    }
    Ok(ProviderView {
        id,
        aliases: aliases.into_iter().collect(),
        env_vars,
        oauth: p.oauth.clone(),
        builtin: false,
        revision: 0,
    })
}

/// The current revision of provider `id` among `existing` (0 when not registered), checked
/// against `expectedRevision` when given.
///
/// Errors: `revision_conflict` with `data.id`.
fn check_revision(
    p: &ProviderPutParams,
    id: &str,
    existing: &[(String, serde_json::Value)],
) -> Result<i64> {
    let current = existing
        .iter()
        .find(|(pid, _)| pid == id)
        .map(|(_, body)| body_revision(body))
        .unwrap_or(0);
    match p.expected_revision {
        Some(expected) if expected != current => {
            Err(revision_conflict(expected, current).with("id", id))
        }
        _ => Ok(current),
    }
}

impl App {
    /// `providers.put`: registers or replaces a provider (aliases, envVars, oauth). With
    /// `expectedRevision` it is a compare-and-set, as `profiles.put` (0 = must not be
    /// registered yet; a built-in provider that is not registered is at 0).
    ///
    /// Errors: `invalid_params` (bad id, alias taken, bad env var name, a token URL that is
    /// not https or loopback http, a bad clientSecretRef), `revision_conflict` (the
    /// registration's revision is not `expectedRevision`), store errors.
    pub(crate) fn providers_put(&self, p: ProviderPutParams) -> Result<ProviderPutResult> {
        let mut st = self.store();
        // Validate first so that refused params (and a stale revision) do not create the
        // store.
        st.read(|c| {
            let existing = c.providers()?;
            let view = validate(&p, &existing)?;
            check_revision(&p, &view.id, &existing).map(|_| ())
        })?;
        st.write(|c| {
            let existing = c.providers()?;
            let mut view = validate(&p, &existing)?;
            let current = check_revision(&p, &view.id, &existing)?;
            view.revision = current + 1;
            let mut body = json!({"aliases": view.aliases, "envVars": view.env_vars});
            if let Some(o) = &view.oauth {
                body["oauth"] =
                    serde_json::to_value(o).map_err(|e| RpcError::internal(e.to_string()))?;
            }
            body["revision"] = view.revision.into();
            let created = c.put_provider(&view.id, &body)?;
            tracing::info!(provider = %view.id, created, revision = view.revision, "provider stored");
            Ok(ProviderPutResult {
                provider: view,
                created,
            })
        })
    }

    /// `providers.get`: one provider, by id or alias.
    ///
    /// Errors: `invalid_params`, `unknown_provider`, store errors.
    pub(crate) fn providers_get(&self, p: ProviderIdParams) -> Result<ProviderGetResult> {
        self.store()
            .read(|c| find(c, &p.id))
            .map(|provider| ProviderGetResult { provider })
    }

    /// `providers.list`: every registered provider and every built-in OAuth provider
    /// (`builtin: true` while its OpenClaw client is the one in use), sorted by id.
    ///
    /// Errors: store errors.
    pub(crate) fn providers_list(&self, _: ProvidersListParams) -> Result<ProvidersListResult> {
        self.store().read(|c| {
            let mut providers: Vec<ProviderView> = c
                .providers()?
                .iter()
                .map(|(id, body)| with_builtin(view_from_body(id, body)))
                .collect();
            for (id, _, _) in BUILTIN_OAUTH {
                if !providers.iter().any(|p| p.id == *id) {
                    providers.extend(builtin_view(id));
                }
            }
            providers.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(ProvidersListResult { providers })
        })
    }

    /// `providers.remove`: unregisters a provider (by id or alias); profiles are kept.
    ///
    /// Errors: `invalid_params`, `unknown_provider`, store errors.
    pub(crate) fn providers_remove(&self, p: ProviderIdParams) -> Result<ProviderRemoveResult> {
        let mut st = self.store();
        st.read(|c| find(c, &p.id).map(|_| ()))?;
        st.write(|c| {
            let v = find(c, &p.id)?;
            if !c.delete_provider(&v.id)? {
                // A built-in provider that is not registered: nothing to remove.
                return Err(unknown_provider(&v.id).with_hint(
                    "a built-in OAuth provider is not removed; providers.put overrides it",
                ));
            }
            tracing::info!(provider = %v.id, "provider removed");
            Ok(ProviderRemoveResult {
                id: v.id,
                removed: true,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::core::error::ErrorKind;
    use crate::handlers::testing::{app, params};
    use serde_json::json;

    #[test]
    fn expected_revision_is_a_compare_and_set() {
        let (_d, app) = app();
        let put = |extra: serde_json::Value| {
            let mut p = json!({"id": "Acme", "envVars": ["ACME_KEY"]});
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            app.providers_put(params(p))
        };
        let e = put(json!({"expectedRevision": 1})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RevisionConflict);
        assert_eq!(e.extra.get("currentRevision"), Some(&json!(0)));
        let r = put(json!({"expectedRevision": 0})).unwrap();
        assert!(r.created);
        assert_eq!((r.provider.id.as_str(), r.provider.revision), ("acme", 1));
        let e = put(json!({"expectedRevision": 0})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RevisionConflict);
        assert_eq!(e.extra.get("id"), Some(&json!("acme")));
        assert_eq!(
            put(json!({"expectedRevision": 1}))
                .unwrap()
                .provider
                .revision,
            2
        );
        assert_eq!(put(json!({})).unwrap().provider.revision, 3);
        let g = app.providers_get(params(json!({"id": "acme"}))).unwrap();
        assert_eq!(g.provider.revision, 3);
    }

    #[test]
    fn a_row_without_revision_reads_as_revision_one() {
        assert_eq!(super::body_revision(&json!({"aliases": []})), 1);
        assert_eq!(super::body_revision(&json!({"revision": 7})), 7);
        assert_eq!(
            super::body_without_revision(&json!({"aliases": ["x"], "revision": 7})),
            json!({"aliases": ["x"]})
        );
    }

    #[test]
    fn an_alias_normalises_ids_and_cannot_be_taken_twice() {
        let (_d, app) = app();
        app.providers_put(params(
            json!({"id": "anthropic", "aliases": ["claude-cli"]}),
        ))
        .unwrap();
        let g = app
            .providers_get(params(json!({"id": "Claude-CLI"})))
            .unwrap();
        assert_eq!(g.provider.id, "anthropic");
        let e = app
            .providers_put(params(json!({"id": "other", "aliases": ["claude-cli"]})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
        assert_eq!(e.extra.get("pointer"), Some(&json!("/aliases/0")));
        let e = app
            .providers_put(params(json!({"id": "claude-cli"})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
    }

    #[test]
    fn a_builtin_provider_is_listed_at_revision_zero_and_cannot_be_removed() {
        let (_d, app) = app();
        let l = app.providers_list(params(json!({}))).unwrap();
        let a = l.providers.iter().find(|p| p.id == "anthropic").unwrap();
        assert!(a.builtin);
        assert_eq!(a.revision, 0);
        let e = app
            .providers_remove(params(json!({"id": "anthropic"})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownProvider);
    }
}
