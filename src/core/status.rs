//! The roll-up of `auth.status` and the exit code of `modelauth check` (protocol §3, §8),
//! following OpenClaw 2026.9.6's `models status` (`buildAuthHealthSummary` in its
//! `src/agents/auth-health.ts`):
//! - each profile has a health word: an api_key is `static` (or `missing` when its secret
//!   cannot be had); a token or oauth is `ok`, `expiring` (within the window; for oauth at
//!   least the 5 min refresh margin), `expired` (past `expires`, even with a refresh token)
//!   or `missing` (unusable `expires`, or its SecretRef cannot be read); a token without
//!   `expires` is `static`;
//! - a provider rolls up over its *effective* profiles: those of the walk (the explicit
//!   order's, else all) that are eligible (a token past or with an invalid `expires` is
//!   not); when none is, the order's profiles, else all. No expiring kind among them →
//!   `missing` if one is missing, else `static`; otherwise `expired` > `missing` >
//!   `expiring` > `ok` (so a token without `expires` makes its provider `ok`);
//! - modelauth's refinements: a profile needing re-authentication is `expired`; one whose
//!   `env`/`file` SecretRef (or, with `probe`, `exec` ref) cannot be read is `missing`,
//!   and *(r3)* like an expired token it does not count while another profile of the
//!   walk is usable (a provider with a usable credential is never `missing`).
//!
//! Pure: times are milliseconds since the epoch, passed in; ref availability is found out by
//! the shell and passed in as [`RefCheck`].

use crate::core::profile::{Credential, StoredProfile};
use crate::core::usage::Usage;

/// OpenClaw's refresh margin, the least `expiring` window of an oauth (ms).
const OAUTH_REFRESH_MARGIN_MS: i64 = 300_000;

/// Largest plausible `expires` (OpenClaw's bound, 8.64e15 ms).
const MAX_EXPIRES_MS: i64 = 8_640_000_000_000_000;

/// What the shell found out about a profile's SecretRef.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefCheck {
    /// The profile holds its secret (no ref).
    Inline,
    /// The ref resolved now.
    Available,
    /// The ref cannot be resolved now (`ref_unavailable`).
    Unavailable,
    /// Not checked (an `exec` ref without `probe`): counted as available.
    Unchecked,
}

/// One profile's health word for the roll-up at `now` (see the module doc): `static`, `ok`,
/// `expiring` (within `expiring_within_ms`), `expired` or `missing`.
pub fn health(
    sp: &StoredProfile,
    usage: Option<&Usage>,
    refc: RefCheck,
    now: i64,
    expiring_within_ms: i64,
) -> &'static str {
    let cred = &sp.profile.credential;
    if usage.is_some_and(|u| u.needs_reauth) {
        return "expired";
    }
    if refc == RefCheck::Unavailable {
        return "missing";
    }
    let (e, window) = match cred {
        Credential::ApiKey { .. } | Credential::Token { expires: None, .. } => return "static",
        Credential::Token {
            expires: Some(e), ..
        } => (*e, expiring_within_ms),
        Credential::OAuth { expires, .. } => {
            (*expires, expiring_within_ms.max(OAUTH_REFRESH_MARGIN_MS))
        }
    };
    if e <= 0 || e > MAX_EXPIRES_MS {
        "missing"
    } else if now >= e {
        "expired"
    } else if window > 0 && e - now <= window {
        "expiring"
    } else {
        "ok"
    }
}

/// OpenClaw's eligibility for selection (`evaluateStoredCredentialEligibility`): a token past
/// or with an unusable `expires` is not eligible; every other profile is.
pub fn eligible(sp: &StoredProfile, now: i64) -> bool {
    match &sp.profile.credential {
        Credential::Token {
            expires: Some(e), ..
        } => *e > 0 && *e <= MAX_EXPIRES_MS && now < *e,
        _ => true,
    }
}

/// One profile as the roll-up sees it, in walk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollUpEntry {
    /// `api_key`, `token` or `oauth`.
    pub kind: &'static str,
    /// Its [`health`].
    pub health: &'static str,
    /// Its [`eligible`].
    pub eligible: bool,
    /// False when an explicit order exists and does not list it.
    pub listed: bool,
    /// Its `expires` (ms since the epoch).
    pub expires: Option<i64>,
}

/// A provider's status and earliest expiry (ms since the epoch) from its profiles in walk
/// order (see the module doc); `has_order` says whether an explicit order applies.
pub fn provider_roll_up(entries: &[RollUpEntry], has_order: bool) -> (&'static str, Option<i64>) {
    // (r3) Like an expired token, a profile that cannot give its secret now (`missing`:
    // an unreadable SecretRef) does not count while another one of the walk is usable: a
    // provider with a usable credential is never `missing`.
    let mut eff: Vec<&RollUpEntry> = entries
        .iter()
        .filter(|e| e.listed && e.eligible && e.health != "missing")
        .collect();
    if eff.is_empty() {
        eff = entries.iter().filter(|e| e.listed && e.eligible).collect();
    }
    if eff.is_empty() {
        eff = entries.iter().filter(|e| e.listed || !has_order).collect();
    }
    if eff.is_empty() {
        return ("missing", None);
    }
    let (mut api, mut expirable, mut expired, mut missing, mut expiring) =
        (false, false, false, false, false);
    let mut earliest: Option<i64> = None;
    for e in eff {
        if e.kind == "api_key" {
            match e.health {
                "static" => api = true,
                _ => missing = true,
            }
            continue;
        }
        expirable = true;
        if matches!(e.health, "ok" | "expiring" | "expired") {
            if let Some(x) = e.expires {
                earliest = Some(earliest.map_or(x, |m| m.min(x)));
            }
        }
        match e.health {
            "expired" => expired = true,
            "missing" => missing = true,
            "expiring" => expiring = true,
            _ => {}
        }
    }
    let st = if !expirable {
        if missing {
            "missing"
        } else if api {
            "static"
        } else {
            "missing"
        }
    } else if expired {
        "expired"
    } else if missing {
        "missing"
    } else if expiring {
        "expiring"
    } else {
        "ok"
    };
    (st, if expirable { earliest } else { None })
}

/// `overall`: the worst provider status (`expired` > `missing` > `expiring` > `ok` >
/// `static`); `missing` when there is no provider at all.
pub fn overall_status<'a>(providers: impl IntoIterator<Item = &'a str>) -> &'static str {
    let ps: Vec<&str> = providers.into_iter().collect();
    for s in ["expired", "missing", "expiring", "ok", "static"] {
        if ps.contains(&s) {
            return s;
        }
    }
    "missing"
}

/// The exit code of `modelauth check` for an `overall` status (OpenClaw's `models status
/// --check`): 1 for `expired` or `missing` (which covers needs re-auth and
/// `ref_unavailable`), 2 for `expiring`, else 0.
pub fn check_exit_code(overall: &str) -> i32 {
    match overall {
        "expired" | "missing" => 1,
        "expiring" => 2,
        _ => 0,
    }
}

/// The `auth.status` word of one profile at `now` (protocol §3), its reason and until/expiry
/// (ms since the epoch): `needs_reauth`, `ref_unavailable` (its SecretRef cannot be read
/// now: [`RefCheck`]), `disabled` / `cooldown`, then by expiry: `static` (api_key,
/// token without `expires`), `expired` (past, or an unusable `expires`), `refreshable` (an
/// oauth past `expires` with a token endpoint), `expiring` (within `expiring_within_ms`; for
/// an oauth at least the 5 min refresh margin) or `ok` — OpenClaw's words where it has them.
pub fn profile_status(
    sp: &StoredProfile,
    u: Option<&Usage>,
    now: i64,
    expiring_within_ms: i64,
    can_refresh: bool,
    refc: RefCheck,
) -> (&'static str, Option<String>, Option<i64>) {
    if let Some(u) = u {
        if u.needs_reauth {
            return ("needs_reauth", Some("needs_reauth".into()), None);
        }
    }
    if refc == RefCheck::Unavailable {
        return ("ref_unavailable", Some("ref_unavailable".into()), None);
    }
    if let Some(u) = u {
        if let Some(b) = u.block(now, None) {
            let st = if b.reason == "disabled" {
                "disabled"
            } else {
                "cooldown"
            };
            return (st, Some(b.cause), Some(b.until));
        }
    }
    match health(sp, u, refc, now, expiring_within_ms) {
        "static" => ("static", None, None),
        "missing" => ("expired", Some("invalid_expires".into()), None),
        "expired" => {
            let e = sp.profile.credential.expires();
            let oauth = matches!(sp.profile.credential, Credential::OAuth { .. });
            if oauth && can_refresh {
                ("refreshable", None, e)
            } else {
                ("expired", Some("expired".into()), e)
            }
        }
        "expiring" => ("expiring", None, sp.profile.credential.expires()),
        _ => ("ok", None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::Profile;
    use crate::core::secret_value::Secret;

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 86_400_000;

    fn token(expires: Option<i64>) -> StoredProfile {
        StoredProfile {
            profile: Profile {
                id: "a:t".into(),
                provider: "a".into(),
                email: None,
                display_name: None,
                credential: Credential::Token {
                    token: Some(Secret::new("t")),
                    token_ref: None,
                    expires,
                },
            },
            scope: None,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn oauth(expires: i64) -> StoredProfile {
        let mut p = token(None);
        p.profile.credential = Credential::OAuth {
            access: Secret::new("a"),
            refresh: Secret::new("r"),
            expires,
            token_url: None,
            client_id: None,
            account_id: None,
        };
        p
    }

    fn entry(kind: &'static str, health: &'static str, eligible: bool) -> RollUpEntry {
        RollUpEntry {
            kind,
            health,
            eligible,
            listed: true,
            expires: Some(NOW + 5),
        }
    }

    #[test]
    fn health_words() {
        let h = |p: &StoredProfile, r| health(p, None, r, NOW, DAY);
        assert_eq!(h(&token(None), RefCheck::Inline), "static");
        assert_eq!(h(&token(Some(NOW - 1)), RefCheck::Inline), "expired");
        assert_eq!(h(&token(Some(NOW)), RefCheck::Inline), "expired");
        assert_eq!(h(&token(Some(NOW + DAY)), RefCheck::Inline), "expiring");
        assert_eq!(h(&token(Some(NOW + DAY + 1)), RefCheck::Inline), "ok");
        assert_eq!(h(&token(Some(0)), RefCheck::Inline), "missing");
        assert_eq!(h(&token(None), RefCheck::Unavailable), "missing");
        assert_eq!(h(&token(None), RefCheck::Unchecked), "static");
        // An oauth past expires is expired even with a refresh token (OpenClaw).
        assert_eq!(h(&oauth(NOW - 1), RefCheck::Inline), "expired");
        assert_eq!(
            health(&oauth(NOW + 60_000), None, RefCheck::Inline, NOW, 0),
            "expiring"
        );
        let u = Usage {
            needs_reauth: true,
            ..Default::default()
        };
        assert_eq!(
            health(&token(None), Some(&u), RefCheck::Inline, NOW, DAY),
            "expired"
        );
        assert!(!eligible(&token(Some(NOW - 1)), NOW));
        assert!(eligible(&token(None), NOW));
        assert!(eligible(&oauth(NOW - 1), NOW));
    }

    #[test]
    fn roll_up() {
        let r = |e: &[RollUpEntry]| provider_roll_up(e, false).0;
        assert_eq!(r(&[]), "missing");
        assert_eq!(r(&[entry("api_key", "static", true)]), "static");
        // A token without expires is static itself but makes its provider ok.
        assert_eq!(
            r(&[
                entry("token", "static", true),
                entry("api_key", "static", true)
            ]),
            "ok"
        );
        // An expired token does not count while another profile is eligible.
        assert_eq!(
            r(&[
                entry("token", "expired", false),
                entry("api_key", "static", true)
            ]),
            "static"
        );
        assert_eq!(r(&[entry("token", "expired", false)]), "expired");
        assert_eq!(
            r(&[
                entry("oauth", "expired", true),
                entry("api_key", "static", true)
            ]),
            "expired"
        );
        // (r3) A broken ref beside a usable key: the provider is not missing.
        assert_eq!(
            r(&[
                entry("api_key", "missing", true),
                entry("api_key", "static", true)
            ]),
            "static"
        );
        assert_eq!(
            r(&[
                entry("oauth", "expiring", true),
                entry("token", "missing", true)
            ]),
            "expiring"
        );
        // Nothing usable: still missing.
        assert_eq!(
            r(&[
                entry("api_key", "missing", true),
                entry("token", "missing", true)
            ]),
            "missing"
        );
        assert_eq!(r(&[entry("oauth", "expiring", true)]), "expiring");
        // An explicit order that lists none of them: missing.
        let mut unlisted = entry("api_key", "static", true);
        unlisted.listed = false;
        assert_eq!(provider_roll_up(&[unlisted], true).0, "missing");
        assert_eq!(
            provider_roll_up(&[entry("oauth", "ok", true)], false).1,
            Some(NOW + 5)
        );
        assert_eq!(overall_status([]), "missing");
        assert_eq!(overall_status(["static", "ok"]), "ok");
        assert_eq!(overall_status(["ok", "expiring", "static"]), "expiring");
        assert_eq!(overall_status(["missing", "expiring"]), "missing");
        assert_eq!(overall_status(["missing", "expired"]), "expired");
        assert_eq!(check_exit_code("expired"), 1);
        assert_eq!(check_exit_code("missing"), 1);
        assert_eq!(check_exit_code("expiring"), 2);
        assert_eq!(check_exit_code("ok"), 0);
        assert_eq!(check_exit_code("static"), 0);
    }
}
