//! Validation of a caller's profile object (protocol §2.2) into a [`Profile`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{
    escape_pointer, exactly_one, get_millis, get_secret, get_string, invalid, json_type_name,
    near_miss_field, short, type_error, API_KEY_FIELDS, COMMON_FIELDS, EXAMPLE_HINT, OAUTH_FIELDS,
    TOKEN_FIELDS,
};
use super::secret_ref::validate_secret_ref;
use super::types::{Credential, Profile, SecretRef, VALID_TYPES};
use crate::core::error::{ErrorKind, RpcError};
use crate::core::ids::{self, Aliases};

/// (`/profile` for `profiles.put`).
///
/// Errors: `invalid_profile` (-32602) with `data.pointer`, `data.validTypes` and, for a near
/// miss, `data.hint`; `provider_mismatch` when `provider` and the id's provider part differ.
/// No error message contains a secret value.
pub fn validate_profile(v: &Value, base: &str, aliases: &Aliases) -> Result<Profile, RpcError> {
    let Value::Object(o) = v else {
        return Err(invalid(
            base,
            format!("a profile is a JSON object, not {}", json_type_name(v)),
        )
        .with_hint(EXAMPLE_HINT));
    };
    let ty = profile_type(o, base)?;
    check_known_fields(o, base, ty)?;
    let (id, provider) = id_and_provider(o, base, aliases)?;
    let email = get_string(o, "email", base)?;
    let display_name = get_string(o, "displayName", base)?;
    let credential = match ty {
        "api_key" => api_key_credential(o, base)?,
        "token" => token_credential(o, base)?,
        _ => oauth_credential(o, base)?,
    };
    Ok(Profile {
        id,
        provider,
        email,
        display_name,
        credential,
    })
}

/// Step 1: the `type`, one of [`VALID_TYPES`] (a `mode` without `type` gets a hint).
fn profile_type<'a>(o: &'a Map<String, Value>, base: &str) -> Result<&'a str, RpcError> {
    match o.get("type") {
        Some(Value::String(t)) if VALID_TYPES.contains(&t.as_str()) => Ok(t.as_str()),
        Some(other) => Err(type_error(&format!("{base}/type"), Some(other))),
        None => {
            if o.contains_key("mode") {
                return Err(invalid(&format!("{base}/mode"), "unknown field `mode`")
                    .with_hint("did you mean `type`?"));
            }
            Err(type_error(&format!("{base}/type"), None))
        }
    }
}

/// The fields of type `ty` besides the common ones.
fn own_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "api_key" => API_KEY_FIELDS,
        "token" => TOKEN_FIELDS,
        _ => OAUTH_FIELDS,
    }
}

/// Step 2: refuses the first field a profile of type `ty` does not have, with a
/// near-miss hint, the type it belongs to, or the list of the type's fields.
fn check_known_fields(o: &Map<String, Value>, base: &str, ty: &str) -> Result<(), RpcError> {
    let own = own_fields(ty);
    for k in o.keys() {
        if COMMON_FIELDS.contains(&k.as_str()) || own.contains(&k.as_str()) {
            continue;
        }
        let pointer = format!("{base}/{}", escape_pointer(k));
        let mut e = invalid(
            &pointer,
            format!("unknown field `{}` for type {ty}", short(k)),
        );
        if let Some(m) = near_miss_field(k, ty) {
            e = e.with_hint(format!("did you mean `{m}`?"));
        } else if let Some(t) = [
            ("api_key", API_KEY_FIELDS),
            ("token", TOKEN_FIELDS),
            ("oauth", OAUTH_FIELDS),
        ]
        .iter()
        .find(|(_, f)| f.contains(&k.as_str()))
        .map(|(t, _)| *t)
        {
            e = e.with_hint(format!(
                "`{k}` belongs to type {t}; fields of {ty}: {}",
                own.join(", ")
            ));
        } else {
            e = e.with_hint(format!(
                "fields of {ty}: {}, plus id, provider, email, displayName",
                own.join(", ")
            ));
        }
        return Err(e);
    }
    Ok(())
}

/// Step 3: the normalised `id` and `provider`; `provider` defaults to the id's provider
/// part and must match it (`provider_mismatch`).
fn id_and_provider(
    o: &Map<String, Value>,
    base: &str,
    aliases: &Aliases,
) -> Result<(String, String), RpcError> {
    let raw_id = match o.get("id") {
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(invalid(
                &format!("{base}/id"),
                format!(
                    "`id` must be a string such as `openai:default`, not {}",
                    json_type_name(v)
                ),
            ))
        }
        None => {
            return Err(
                invalid(&format!("{base}/id"), "missing `id` (`<provider>:<name>`)")
                    .with_hint(EXAMPLE_HINT),
            )
        }
    };
    let (id, id_provider) = ids::normalize_profile_id(raw_id, aliases)
        .map_err(|e| invalid(&format!("{base}/id"), e.to_string()))?;
    let provider = match o.get("provider") {
        None | Some(Value::Null) => id_provider.clone(),
        Some(Value::String(p)) => {
            let p = ids::normalize_provider(p, aliases)
                .map_err(|e| invalid(&format!("{base}/provider"), e.to_string()))?;
            if p != id_provider {
                return Err(RpcError::new(
                    ErrorKind::ProviderMismatch,
                    format!("profile id `{id}` belongs to provider `{id_provider}`, but `provider` is `{p}`"),
                )
                .with("pointer", format!("{base}/provider"))
                .with_hint(format!("use id `{p}:<name>` or provider `{id_provider}`")));
            }
            p
        }
        Some(v) => {
            return Err(invalid(
                &format!("{base}/provider"),
                format!("`provider` must be a string, not {}", json_type_name(v)),
            ))
        }
    };
    Ok((id, provider))
}

/// The SecretRef in `field` (`keyRef` / `tokenRef`), if any.
fn optional_ref(
    o: &Map<String, Value>,
    field: &str,
    base: &str,
) -> Result<Option<SecretRef>, RpcError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(validate_secret_ref(v, &format!("{base}/{field}"))?)),
    }
}

/// Step 4, api_key: exactly one of `key` and `keyRef`, and `metadata` of strings.
fn api_key_credential(o: &Map<String, Value>, base: &str) -> Result<Credential, RpcError> {
    let key = get_secret(o, "key", base, Some("keyRef"))?;
    let key_ref = optional_ref(o, "keyRef", base)?;
    exactly_one(key.is_some(), key_ref.is_some(), base, "key", "keyRef")?;
    let metadata = metadata(o, base)?;
    Ok(Credential::ApiKey {
        key,
        key_ref,
        metadata,
    })
}

/// An api_key's `metadata`: an object of strings.
fn metadata(
    o: &Map<String, Value>,
    base: &str,
) -> Result<Option<BTreeMap<String, String>>, RpcError> {
    match o.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(invalid(
                            &format!("{base}/metadata/{}", escape_pointer(k)),
                            "metadata values must be strings",
                        ))
                    }
                }
            }
            Ok(Some(out))
        }
        Some(_) => Err(invalid(
            &format!("{base}/metadata"),
            "`metadata` must be an object of strings",
        )),
    }
}

/// Step 4, token: exactly one of `token` and `tokenRef`; `expires` in ms since the epoch.
fn token_credential(o: &Map<String, Value>, base: &str) -> Result<Credential, RpcError> {
    let token = get_secret(o, "token", base, Some("tokenRef"))?;
    let token_ref = optional_ref(o, "tokenRef", base)?;
    exactly_one(
        token.is_some(),
        token_ref.is_some(),
        base,
        "token",
        "tokenRef",
    )?;
    let expires = get_millis(o, "expires", base)?;
    Ok(Credential::Token {
        token,
        token_ref,
        expires,
    })
}

/// Step 4, oauth: inline `access`, `refresh` and `expires` (ms since the epoch) are
/// required; `tokenUrl` must be an http(s) URL.
fn oauth_credential(o: &Map<String, Value>, base: &str) -> Result<Credential, RpcError> {
    let access = get_secret(o, "access", base, None)?.ok_or_else(|| {
        invalid(
            &format!("{base}/access"),
            "oauth needs `access` (the access token)",
        )
    })?;
    let refresh = get_secret(o, "refresh", base, None)?.ok_or_else(|| {
        invalid(
            &format!("{base}/refresh"),
            "oauth needs `refresh` (the refresh token)",
        )
    })?;
    let expires = get_millis(o, "expires", base)?.ok_or_else(|| {
        invalid(
            &format!("{base}/expires"),
            "oauth needs `expires` (milliseconds since the Unix epoch)",
        )
    })?;
    let token_url = get_string(o, "tokenUrl", base)?;
    if let Some(u) = &token_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(invalid(
                &format!("{base}/tokenUrl"),
                "`tokenUrl` must be an http(s) URL",
            ));
        }
    }
    Ok(Credential::OAuth {
        access,
        refresh,
        expires,
        token_url,
        client_id: get_string(o, "clientId", base)?,
        account_id: get_string(o, "accountId", base)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Profile, RpcError> {
        validate_profile(&v, "/profile", &Aliases::new())
    }

    #[test]
    fn an_api_key_profile_is_accepted_and_normalised() {
        let p = check(json!({"id": "OpenAI:work", "type": "api_key", "key": " sk-abc\n"})).unwrap();
        assert_eq!(p.id, "openai:work");
        assert_eq!(p.provider, "openai");
        assert_eq!(p.credential.inline_secret().unwrap().expose(), "sk-abc");
    }

    #[test]
    fn unknown_type_lists_valid_types_at_the_type_pointer() {
        let e = check(json!({"id": "openai:x", "type": "bearer", "token": "t"})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidProfile);
        let d = e.data();
        assert_eq!(d["pointer"], "/profile/type");
        assert_eq!(d["validTypes"], json!(["api_key", "oauth", "token"]));
        assert_eq!(d["hint"], "did you mean `token`?");
    }

    #[test]
    fn near_misses_get_hints_without_echoing_the_secret() {
        let e = check(json!({"id": "openai:x", "type": "api_key", "apiKey": "sk-hidden-1"}))
            .unwrap_err();
        let j = e.to_json().to_string();
        assert!(j.contains("did you mean `key`?"), "{j}");
        assert!(!j.contains("sk-hidden-1"));
        assert_eq!(e.data()["pointer"], "/profile/apiKey");

        let e = check(json!({"id": "openai:x", "mode": "api_key", "key": "k"})).unwrap_err();
        assert_eq!(e.data()["hint"], "did you mean `type`?");
        let e = check(json!({"id": "openai:x", "type": "apiKey", "key": "k"})).unwrap_err();
        assert_eq!(e.data()["hint"], "did you mean `api_key`?");
    }

    #[test]
    fn exactly_one_secret_source_is_required() {
        let e = check(json!({"id": "openai:x", "type": "api_key"})).unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/key");
        let e = check(json!({"id": "openai:x", "type": "api_key", "key": "k",
            "keyRef": {"source": "env", "provider": "default", "id": "K"}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef");
    }

    #[test]
    fn secret_refs_have_exactly_three_keys() {
        let ok = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "OPENAI_API_KEY"}}));
        assert!(ok.is_ok());
        let e = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "K", "x": 1}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef/x");
        let e = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "vault", "provider": "default", "id": "K"}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef/source");
    }

    #[test]
    fn oauth_needs_inline_tokens_and_integer_expires() {
        let ok = check(
            json!({"id": "openai-codex:me", "type": "oauth", "access": "a", "refresh": "r", "expires": 1}),
        );
        assert!(ok.is_ok());
        let e = check(json!({"id": "x:me", "type": "oauth", "access": "a", "refresh": "r"}))
            .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/expires");
        let e = check(
            json!({"id": "x:me", "type": "oauth", "access": "a", "refresh": "r", "expires": 1.5}),
        )
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/expires");
        let e = check(json!({"id": "x:me", "type": "oauth", "access": {"source": "env", "provider": "default", "id": "A"}, "refresh": "r", "expires": 5})).unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/access");
    }

    #[test]
    fn provider_must_match_the_id() {
        let e = check(
            json!({"id": "openai:x", "provider": "anthropic", "type": "api_key", "key": "k"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProviderMismatch);
        assert!(check(
            json!({"id": "openai:x", "provider": " OPENAI ", "type": "api_key", "key": "k"})
        )
        .is_ok());
    }

    #[test]
    fn fields_of_another_type_are_named() {
        let e = check(json!({"id": "openai:x", "type": "api_key", "key": "k", "expires": 5}))
            .unwrap_err();
        assert!(e.hint.unwrap().contains("belongs to type"));
    }

    #[test]
    fn stored_form_round_trips() {
        let p = check(
            json!({"id": "openai:x", "type": "token", "token": "t", "expires": 7, "email": "a@b"}),
        )
        .unwrap();
        let s = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&s).unwrap();
        assert_eq!(back, p);
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap()["type"], "token");
    }
}
