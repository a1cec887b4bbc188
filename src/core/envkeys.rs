//! Environment keys (protocol §6): which API keys the environment offers for a provider.
//!
//! Pure: [`env_keys`] takes a snapshot of the environment (name → value) and the provider's
//! registered `envVars`; the shell ([`crate::handlers`]) takes the snapshot with
//! [`process_env`]. Values are [`Secret`]s: never logged, never put in an error; errors
//! list variable names only ([`env_names`]).

use std::collections::{BTreeMap, HashSet};

use crate::core::secret_value::{normalize_secret_input, Secret};

/// One key found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvKey {
    /// The variable it came from (`OPENAI_API_KEY`, or `OPENAI_API_KEYS` for each of a list).
    pub var: String,
    /// The key, normalised like any secret input (line breaks removed, trimmed).
    pub value: Secret,
}

/// `BASE` of a provider id: upper-cased, `-` and `.` → `_`; `google` → `GEMINI`.
pub(crate) fn env_base(provider: &str) -> String {
    if provider == "google" {
        return "GEMINI".to_string();
    }
    provider
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The keys the environment `env` offers for `provider`, in order and deduplicated by value
/// (the first variable holding a value names it):
///
/// 1. `MODELAUTH_LIVE_<BASE>_KEY`, else `OPENCLAW_LIVE_<BASE>_KEY`: when set, the only key;
/// 2. otherwise `<BASE>_API_KEYS` split on whitespace, `,` and `;`; `<BASE>_API_KEY`; every
///    `<BASE>_API_KEY_*` (by name); `GOOGLE_API_KEY` for `google`; then the provider's
///    registered `envVars` (`registered`).
///
/// Empty values and values with control characters are ignored.
pub(crate) fn env_keys(
    provider: &str,
    env: &BTreeMap<String, String>,
    registered: &[String],
) -> Vec<EnvKey> {
    let base = env_base(provider);
    let get = |name: &str| {
        env.get(name)
            .and_then(|v| normalize_secret_input(v).ok())
            .map(|value| EnvKey {
                var: name.to_string(),
                value,
            })
    };
    for pin in [
        format!("MODELAUTH_LIVE_{base}_KEY"),
        format!("OPENCLAW_LIVE_{base}_KEY"),
    ] {
        if let Some(k) = get(&pin) {
            return vec![k];
        }
    }
    let mut found: Vec<EnvKey> = vec![];
    let list_var = format!("{base}_API_KEYS");
    if let Some(list) = env.get(&list_var) {
        for part in list.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            if let Ok(value) = normalize_secret_input(part) {
                found.push(EnvKey {
                    var: list_var.clone(),
                    value,
                });
            }
        }
    }
    let single = format!("{base}_API_KEY");
    found.extend(get(&single));
    let prefix = format!("{base}_API_KEY_");
    for name in env.keys().filter(|n| n.starts_with(&prefix)) {
        found.extend(get(name));
    }
    if provider == "google" {
        found.extend(get("GOOGLE_API_KEY"));
    }
    for name in registered {
        found.extend(get(name));
    }
    let mut seen = HashSet::new();
    found.retain(|k| seen.insert(k.value.expose().to_string()));
    found
}

/// The distinct variable names of `keys`, in order (what `data.envAvailable` lists).
pub(crate) fn env_names(keys: &[EnvKey]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for k in keys {
        if !out.contains(&k.var) {
            out.push(k.var.clone());
        }
    }
    out
}

/// A snapshot of this process's environment (variables that are not UTF-8 are left out).
pub(crate) fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Whether `name` is an environment variable that changes how a program is loaded or
/// started (the dynamic loader's `LD_*`/`DYLD_*`, `GLIBC_TUNABLES`, interpreter start-up
/// hooks, `PATH`...). A credential is never put in one (issue 20): the loader prints a bad
/// `LD_PRELOAD` value — the key — on stderr, and a store-chosen value there would be code
/// the child loads. Case-sensitive, as the loader is. Pure.
pub(crate) fn is_reserved_env_var(name: &str) -> bool {
    const EXACT: [&str; 24] = [
        "PATH",
        "HOME",
        "SHELL",
        "IFS",
        "ENV",
        "BASH_ENV",
        "PS4",
        "PROMPT_COMMAND",
        "GLIBC_TUNABLES",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
    ];
    name.starts_with("LD_")
        || name.starts_with("DYLD_")
        || name.starts_with("MALLOC_")
        || EXACT.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn values(keys: &[EnvKey]) -> Vec<(&str, &str)> {
        keys.iter()
            .map(|k| (k.var.as_str(), k.value.expose()))
            .collect()
    }

    #[test]
    fn base_names() {
        assert_eq!(env_base("openai"), "OPENAI");
        assert_eq!(env_base("google"), "GEMINI");
        assert_eq!(env_base("z.ai-coding"), "Z_AI_CODING");
    }

    #[test]
    fn lists_single_and_numbered_keys_in_order_deduplicated() {
        let e = env(&[
            ("OPENAI_API_KEYS", "a, b;c\n e"),
            ("OPENAI_API_KEY", "b"),
            ("OPENAI_API_KEY_2", "d"),
            ("OPENAI_API_KEY_1", " e "),
            ("OPENAI_API_KEYX", "nope"),
            ("ANTHROPIC_API_KEY", "other"),
        ]);
        assert_eq!(
            values(&env_keys("openai", &e, &[])),
            vec![
                ("OPENAI_API_KEYS", "a"),
                ("OPENAI_API_KEYS", "b"),
                ("OPENAI_API_KEYS", "c"),
                ("OPENAI_API_KEYS", "e"),
                ("OPENAI_API_KEY_2", "d"),
            ]
        );
        assert_eq!(
            env_names(&env_keys("openai", &e, &[])),
            vec!["OPENAI_API_KEYS", "OPENAI_API_KEY_2"]
        );
    }

    #[test]
    fn the_live_key_is_the_only_key() {
        let e = env(&[
            ("OPENAI_API_KEY", "b"),
            ("MODELAUTH_LIVE_OPENAI_KEY", "z"),
            ("OPENCLAW_LIVE_OPENAI_KEY", "y"),
        ]);
        assert_eq!(
            values(&env_keys("openai", &e, &[])),
            vec![("MODELAUTH_LIVE_OPENAI_KEY", "z")]
        );
        let e = env(&[("OPENAI_API_KEY", "b"), ("OPENCLAW_LIVE_OPENAI_KEY", "y")]);
        assert_eq!(
            values(&env_keys("openai", &e, &[])),
            vec![("OPENCLAW_LIVE_OPENAI_KEY", "y")]
        );
        // An empty pin does not count.
        let e = env(&[("OPENAI_API_KEY", "b"), ("MODELAUTH_LIVE_OPENAI_KEY", " ")]);
        assert_eq!(
            values(&env_keys("openai", &e, &[])),
            vec![("OPENAI_API_KEY", "b")]
        );
    }

    #[test]
    fn google_reads_gemini_then_google_api_key() {
        let e = env(&[
            ("GEMINI_API_KEY", "g1"),
            ("GOOGLE_API_KEY", "g2"),
            ("GOOGLE_API_KEYS", "ignored"),
        ]);
        assert_eq!(
            values(&env_keys("google", &e, &[])),
            vec![("GEMINI_API_KEY", "g1"), ("GOOGLE_API_KEY", "g2")]
        );
        let e = env(&[("GOOGLE_API_KEY", "g2")]);
        assert_eq!(
            values(&env_keys("openai", &e, &[])),
            Vec::<(&str, &str)>::new()
        );
    }

    #[test]
    fn registered_env_vars_come_last_and_empty_values_are_ignored() {
        let e = env(&[
            ("MY_PROXY_KEY", "p"),
            ("OPENAI_API_KEY", ""),
            ("DUP", "p"),
            ("BAD", "a\tb"),
        ]);
        let reg = vec!["MY_PROXY_KEY".to_string(), "DUP".into(), "BAD".into()];
        assert_eq!(
            values(&env_keys("openai", &e, &reg)),
            vec![("MY_PROXY_KEY", "p")]
        );
    }

    #[test]
    fn loader_and_startup_variables_are_reserved() {
        for v in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "GLIBC_TUNABLES",
            "PATH",
            "NODE_OPTIONS",
            "BASH_ENV",
        ] {
            assert!(is_reserved_env_var(v), "{v}");
        }
        for v in ["OPENAI_API_KEY", "LDAP_TOKEN", "ld_preload_x", "MY_PATH"] {
            assert!(!is_reserved_env_var(v), "{v}");
        }
    }
}
