//! Identifiers: provider ids, agent ids and profile ids (protocol §2.1, §2.2).
//!
//! Pure functions: normalisation and validation only, no I/O. Provider aliases
//! (registered with `providers.put`) are passed in as a map.

use std::collections::BTreeMap;

/// Registered provider aliases: alias → canonical provider id (`claude-cli` → `anthropic`).
pub type Aliases = BTreeMap<String, String>;

/// Why an identifier was refused. The message never repeats a secret-looking input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdError {
    /// A provider id that does not match `^[a-z0-9][a-z0-9._-]{0,63}$` after trim and lower-case.
    Provider(String),
    /// An agent id that does not match `^[a-z0-9][a-z0-9._-]{0,63}$`.
    Agent(String),
    /// A profile id that is not `<provider>:<name>`.
    ProfileShape,
    /// A profile name with characters outside letters, digits and `@ . _ + -`, or too long.
    ProfileName,
    /// A profile id that looks like a secret (a known key prefix or a long random string).
    LooksLikeSecret,
}

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdError::Provider(p) => write!(
                f,
                "provider id `{p}` must match ^[a-z0-9][a-z0-9._-]{{0,63}}$ (after trim and lower-case)"
            ),
            IdError::Agent(a) => write!(f, "agent id `{a}` must match ^[a-z0-9][a-z0-9._-]{{0,63}}$"),
            IdError::ProfileShape => f.write_str("a profile id is `<provider>:<name>`, e.g. `openai:default`"),
            IdError::ProfileName => f.write_str(
                "a profile name (after `<provider>:`) is 1 to 128 letters, digits and `@ . _ + -`",
            ),
            IdError::LooksLikeSecret => f.write_str(
                "this profile id looks like a secret (a key prefix or a long random string); ids are names such as `openai:work` — put the key in `key`",
            ),
        }
    }
}

fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Normalises a provider id: trim, lower-case, then map a registered alias to its
/// canonical id. Errors when the result does not match `^[a-z0-9][a-z0-9._-]{0,63}$`.
/// Only ASCII is accepted, so a Unicode look-alike (`оpenai` with a Cyrillic `о`) is refused.
pub(crate) fn normalize_provider(raw: &str, aliases: &Aliases) -> Result<String, IdError> {
    let p = raw.trim().to_ascii_lowercase();
    if !is_slug(&p) {
        // Do not echo something long: it may be a pasted key.
        let shown = if p.chars().count() > 64 {
            "<too long>".to_string()
        } else {
            p
        };
        return Err(IdError::Provider(shown));
    }
    Ok(aliases.get(&p).cloned().unwrap_or(p))
}

/// Validates an agent id (`main`, `cron-nightly`): `^[a-z0-9][a-z0-9._-]{0,63}$`, used as is.
pub(crate) fn validate_agent(raw: &str) -> Result<String, IdError> {
    if is_slug(raw) {
        Ok(raw.to_string())
    } else {
        let shown = if raw.chars().count() > 64 {
            "<too long>".to_string()
        } else {
            raw.to_string()
        };
        Err(IdError::Agent(shown))
    }
}

/// Key prefixes that mark a string as a credential rather than a name.
const SECRET_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "aiza",
    "eyj",
    "gsk_",
    "pplx-",
    "hf_",
    "r8_",
    "xai-",
    "akia",
    "glpat-",
    "sess-",
];

/// True when `s` looks like a secret: it starts with a known key prefix (`sk-`, `ghp_`, a
/// JWT's `eyJ`, ...) or has a segment (between `- _ . @ +`) of 32+ characters, or of 20+
/// characters mixing at least 3 letters and 3 digits — the shape of a random key.
pub(crate) fn looks_like_secret(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if SECRET_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    s.split(['-', '_', '.', '@', '+']).any(|seg| {
        let n = seg.chars().count();
        let digits = seg.chars().filter(char::is_ascii_digit).count();
        let letters = seg.chars().filter(char::is_ascii_alphabetic).count();
        n >= 32 || (n >= 20 && digits >= 3 && letters >= 3)
    })
}

/// Normalises a profile id `<provider>:<name>`: the provider part as
/// [`normalize_provider`], the name checked (1–128 of letters, digits, `@ . _ + -`) and
/// refused when it looks like a secret. Returns `(id, provider)`.
pub(crate) fn normalize_profile_id(
    raw: &str,
    aliases: &Aliases,
) -> Result<(String, String), IdError> {
    let raw = raw.trim();
    let Some((p, name)) = raw.split_once(':') else {
        if looks_like_secret(raw) {
            return Err(IdError::LooksLikeSecret);
        }
        return Err(IdError::ProfileShape);
    };
    if looks_like_secret(name) || looks_like_secret(raw) {
        return Err(IdError::LooksLikeSecret);
    }
    let provider = normalize_provider(p, aliases)?;
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-'))
    {
        return Err(IdError::ProfileName);
    }
    Ok((format!("{provider}:{name}"), provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Aliases {
        Aliases::new()
    }

    #[test]
    fn provider_is_trimmed_lowercased_and_aliased() {
        assert_eq!(normalize_provider("  OpenAI ", &none()).unwrap(), "openai");
        let mut a = none();
        a.insert("claude-cli".into(), "anthropic".into());
        assert_eq!(normalize_provider("Claude-CLI", &a).unwrap(), "anthropic");
    }

    #[test]
    fn provider_refuses_bad_shapes_and_lookalikes() {
        for bad in ["", "-x", "a b", "оpenai", "open/ai", &"a".repeat(65)] {
            assert!(normalize_provider(bad, &none()).is_err(), "{bad}");
        }
        assert!(normalize_provider(&"a".repeat(64), &none()).is_ok());
    }

    #[test]
    fn agent_ids_follow_the_slug_rule() {
        assert!(validate_agent("cron-nightly").is_ok());
        assert!(validate_agent("main").is_ok());
        assert!(validate_agent("Main").is_err());
        assert!(validate_agent("").is_err());
        assert!(validate_agent("a/b").is_err());
    }

    #[test]
    fn profile_ids_normalise_the_provider_part() {
        let (id, p) = normalize_profile_id("OpenAI:work", &none()).unwrap();
        assert_eq!((id.as_str(), p.as_str()), ("openai:work", "openai"));
        let (id, _) = normalize_profile_id("anthropic:alice+1@example.com", &none()).unwrap();
        assert_eq!(id, "anthropic:alice+1@example.com");
    }

    #[test]
    fn profile_ids_refuse_bad_shapes() {
        assert_eq!(
            normalize_profile_id("openai", &none()),
            Err(IdError::ProfileShape)
        );
        assert_eq!(
            normalize_profile_id("openai:", &none()),
            Err(IdError::ProfileName)
        );
        assert_eq!(
            normalize_profile_id("openai:a b", &none()),
            Err(IdError::ProfileName)
        );
        assert_eq!(
            normalize_profile_id("openai:a:b", &none()),
            Err(IdError::ProfileName)
        );
    }

    #[test]
    fn secret_looking_ids_are_refused() {
        for s in [
            "openai:sk-proj-abc",
            "sk-abc:def",
            "openai:a8f9e2c1d4b7a8f9e2c1d4b7",
            "openai:AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
            "anthropic:eyJhbGciOi",
        ] {
            assert_eq!(
                normalize_profile_id(s, &none()),
                Err(IdError::LooksLikeSecret),
                "{s}"
            );
        }
        for ok in [
            "openai:default",
            "anthropic:alice@example.com",
            "openrouter:manual",
            "openai:prod-account-2024",
            "deepseek:work",
        ] {
            assert!(normalize_profile_id(ok, &none()).is_ok(), "{ok}");
        }
    }
}
