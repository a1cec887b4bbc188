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

use serde::{Deserialize, Serialize};

use crate::core::profile::{Credential, CredentialType, StoredProfile};
use crate::core::usage::Usage;

/// A health word of the roll-up (OpenClaw's `models status`): each profile's contribution,
/// each provider's `status` and the `overall` of `auth.status` (protocol §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Health {
    /// No credential at all, or none whose secret can be had now.
    Missing,
    /// API keys (and tokens without `expires`) only: nothing expires.
    Static,
    /// Past `expires`, or needing re-authentication.
    Expired,
    /// Expires within the window (`expiringWithinMs`; for oauth at least 5 min).
    Expiring,
    /// Usable and not expiring soon.
    Ok,
}

impl Health {
    /// The wire string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Health::Missing => "missing",
            Health::Static => "static",
            Health::Expired => "expired",
            Health::Expiring => "expiring",
            Health::Ok => "ok",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One profile's `status` in `auth.status` and in `ProfileView` (protocol §3): OpenClaw's
/// words where it has them, refined by modelauth's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileHealth {
    /// Usable and not expiring soon.
    Ok,
    /// An api_key, or a token without `expires`.
    Static,
    /// Expires within the window.
    Expiring,
    /// Past `expires` (and not refreshable), or an unusable `expires`.
    Expired,
    /// An oauth past `expires` that can be refreshed (it has a token endpoint).
    Refreshable,
    /// In a cooldown window (`until` says when it ends).
    Cooldown,
    /// In a disable window (billing, auth_permanent).
    Disabled,
    /// The refresh token was refused for good; a person must log in again.
    NeedsReauth,
    /// Its SecretRef cannot be read now.
    RefUnavailable,
}

impl ProfileHealth {
    /// The wire string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProfileHealth::Ok => "ok",
            ProfileHealth::Static => "static",
            ProfileHealth::Expiring => "expiring",
            ProfileHealth::Expired => "expired",
            ProfileHealth::Refreshable => "refreshable",
            ProfileHealth::Cooldown => "cooldown",
            ProfileHealth::Disabled => "disabled",
            ProfileHealth::NeedsReauth => "needs_reauth",
            ProfileHealth::RefUnavailable => "ref_unavailable",
        }
    }
}

impl std::fmt::Display for ProfileHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// OpenClaw's refresh margin, the least `expiring` window of an oauth (ms).
const OAUTH_REFRESH_MARGIN_MS: i64 = 300_000;

/// Largest plausible `expires` (OpenClaw's bound, 8.64e15 ms).
const MAX_EXPIRES_MS: i64 = 8_640_000_000_000_000;

/// What the shell found out about a profile's SecretRef.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefCheck {
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
pub(crate) fn health(
    sp: &StoredProfile,
    usage: Option<&Usage>,
    refc: RefCheck,
    now: i64,
    expiring_within_ms: i64,
) -> Health {
    let cred = &sp.profile.credential;
    if usage.is_some_and(|u| u.needs_reauth) {
        return Health::Expired;
    }
    if refc == RefCheck::Unavailable {
        return Health::Missing;
    }
    let (e, window) = match cred {
        Credential::ApiKey { .. } | Credential::Token { expires: None, .. } => {
            return Health::Static
        }
        Credential::Token {
            expires: Some(e), ..
        } => (*e, expiring_within_ms),
        Credential::OAuth { expires, .. } => {
            (*expires, expiring_within_ms.max(OAUTH_REFRESH_MARGIN_MS))
        }
    };
    if e <= 0 || e > MAX_EXPIRES_MS {
        Health::Missing
    } else if now >= e {
        Health::Expired
    } else if window > 0 && e - now <= window {
        Health::Expiring
    } else {
        Health::Ok
    }
}

/// OpenClaw's eligibility for selection (`evaluateStoredCredentialEligibility`): a token past
/// or with an unusable `expires` is not eligible; every other profile is.
pub(crate) fn eligible(sp: &StoredProfile, now: i64) -> bool {
    match &sp.profile.credential {
        Credential::Token {
            expires: Some(e), ..
        } => *e > 0 && *e <= MAX_EXPIRES_MS && now < *e,
        _ => true,
    }
}

/// One profile as the roll-up sees it, in walk order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollUpEntry {
    /// Its credential type.
    pub kind: CredentialType,
    /// Its [`health`].
    pub health: Health,
    /// Its [`eligible`].
    pub eligible: bool,
    /// False when an explicit order exists and does not list it.
    pub listed: bool,
    /// Its `expires` (ms since the epoch).
    pub expires: Option<i64>,
}

/// A provider's status and earliest expiry (ms since the epoch) from its profiles in walk
/// order (see the module doc); `has_order` says whether an explicit order applies.
pub(crate) fn provider_roll_up(entries: &[RollUpEntry], has_order: bool) -> (Health, Option<i64>) {
    // (r3) Like an expired token, a profile that cannot give its secret now (`missing`:
    // an unreadable SecretRef) does not count while another one of the walk is usable: a
    // provider with a usable credential is never `missing`.
    let mut eff: Vec<&RollUpEntry> = entries
        .iter()
        .filter(|e| e.listed && e.eligible && e.health != Health::Missing)
        .collect();
    if eff.is_empty() {
        eff = entries.iter().filter(|e| e.listed && e.eligible).collect();
    }
    if eff.is_empty() {
        eff = entries.iter().filter(|e| e.listed || !has_order).collect();
    }
    if eff.is_empty() {
        return (Health::Missing, None);
    }
    let (mut api, mut expirable, mut expired, mut missing, mut expiring) =
        (false, false, false, false, false);
    let mut earliest: Option<i64> = None;
    for e in eff {
        if e.kind == CredentialType::ApiKey {
            match e.health {
                Health::Static => api = true,
                _ => missing = true,
            }
            continue;
        }
        expirable = true;
        if matches!(e.health, Health::Ok | Health::Expiring | Health::Expired) {
            if let Some(x) = e.expires {
                earliest = Some(earliest.map_or(x, |m| m.min(x)));
            }
        }
        match e.health {
            Health::Expired => expired = true,
            Health::Missing => missing = true,
            Health::Expiring => expiring = true,
            Health::Ok | Health::Static => {}
        }
    }
    let st = if !expirable {
        if missing || !api {
            Health::Missing
        } else {
            Health::Static
        }
    } else if expired {
        Health::Expired
    } else if missing {
        Health::Missing
    } else if expiring {
        Health::Expiring
    } else {
        Health::Ok
    };
    (st, if expirable { earliest } else { None })
}

/// `overall`: the worst provider status (`expired` > `missing` > `expiring` > `ok` >
/// `static`); `missing` when there is no provider at all.
pub(crate) fn overall_status(providers: impl IntoIterator<Item = Health>) -> Health {
    let ps: Vec<Health> = providers.into_iter().collect();
    for s in [
        Health::Expired,
        Health::Missing,
        Health::Expiring,
        Health::Ok,
        Health::Static,
    ] {
        if ps.contains(&s) {
            return s;
        }
    }
    Health::Missing
}

/// The exit code of `modelauth check` for an `overall` status (OpenClaw's `models status
/// --check`): 1 for `expired` or `missing` (which covers needs re-auth and
/// `ref_unavailable`), 2 for `expiring`, else 0.
pub(crate) fn check_exit_code(overall: Health) -> i32 {
    match overall {
        Health::Expired | Health::Missing => 1,
        Health::Expiring => 2,
        Health::Ok | Health::Static => 0,
    }
}

/// The `auth.status` word of one profile at `now` (protocol §3), its reason and until/expiry
/// (ms since the epoch): `needs_reauth`, `ref_unavailable` (its SecretRef cannot be read
/// now: [`RefCheck`]), `disabled` / `cooldown`, then by expiry: `static` (api_key,
/// token without `expires`), `expired` (past, or an unusable `expires`), `refreshable` (an
/// oauth past `expires` with a token endpoint), `expiring` (within `expiring_within_ms`; for
/// an oauth at least the 5 min refresh margin) or `ok` — OpenClaw's words where it has them.
pub(crate) fn profile_status(
    sp: &StoredProfile,
    u: Option<&Usage>,
    now: i64,
    expiring_within_ms: i64,
    can_refresh: bool,
    refc: RefCheck,
) -> (ProfileHealth, Option<String>, Option<i64>) {
    if let Some(u) = u {
        if u.needs_reauth {
            return (
                ProfileHealth::NeedsReauth,
                Some("needs_reauth".into()),
                None,
            );
        }
    }
    if refc == RefCheck::Unavailable {
        return (
            ProfileHealth::RefUnavailable,
            Some("ref_unavailable".into()),
            None,
        );
    }
    if let Some(u) = u {
        if let Some(b) = u.block(now, None) {
            let st = if b.reason == "disabled" {
                ProfileHealth::Disabled
            } else {
                ProfileHealth::Cooldown
            };
            return (st, Some(b.cause), Some(b.until));
        }
    }
    match health(sp, u, refc, now, expiring_within_ms) {
        Health::Static => (ProfileHealth::Static, None, None),
        Health::Missing => (ProfileHealth::Expired, Some("invalid_expires".into()), None),
        Health::Expired => {
            let e = sp.profile.credential.expires();
            let oauth = matches!(sp.profile.credential, Credential::OAuth { .. });
            if oauth && can_refresh {
                (ProfileHealth::Refreshable, None, e)
            } else {
                (ProfileHealth::Expired, Some("expired".into()), e)
            }
        }
        Health::Expiring => (
            ProfileHealth::Expiring,
            None,
            sp.profile.credential.expires(),
        ),
        Health::Ok => (ProfileHealth::Ok, None, None),
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

    fn entry(kind: CredentialType, health: Health, eligible: bool) -> RollUpEntry {
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
        assert_eq!(h(&token(None), RefCheck::Inline), Health::Static);
        assert_eq!(h(&token(Some(NOW - 1)), RefCheck::Inline), Health::Expired);
        assert_eq!(h(&token(Some(NOW)), RefCheck::Inline), Health::Expired);
        assert_eq!(
            h(&token(Some(NOW + DAY)), RefCheck::Inline),
            Health::Expiring
        );
        assert_eq!(h(&token(Some(NOW + DAY + 1)), RefCheck::Inline), Health::Ok);
        assert_eq!(h(&token(Some(0)), RefCheck::Inline), Health::Missing);
        assert_eq!(h(&token(None), RefCheck::Unavailable), Health::Missing);
        assert_eq!(h(&token(None), RefCheck::Unchecked), Health::Static);
        // An oauth past expires is expired even with a refresh token (OpenClaw).
        assert_eq!(h(&oauth(NOW - 1), RefCheck::Inline), Health::Expired);
        assert_eq!(
            health(&oauth(NOW + 60_000), None, RefCheck::Inline, NOW, 0),
            Health::Expiring
        );
        let u = Usage {
            needs_reauth: true,
            ..Default::default()
        };
        assert_eq!(
            health(&token(None), Some(&u), RefCheck::Inline, NOW, DAY),
            Health::Expired
        );
        assert!(!eligible(&token(Some(NOW - 1)), NOW));
        assert!(eligible(&token(None), NOW));
        assert!(eligible(&oauth(NOW - 1), NOW));
    }

    #[test]
    fn roll_up() {
        let r = |e: &[RollUpEntry]| provider_roll_up(e, false).0;
        assert_eq!(r(&[]), Health::Missing);
        assert_eq!(
            r(&[entry(CredentialType::ApiKey, Health::Static, true)]),
            Health::Static
        );
        // A token without expires is static itself but makes its provider ok.
        assert_eq!(
            r(&[
                entry(CredentialType::Token, Health::Static, true),
                entry(CredentialType::ApiKey, Health::Static, true)
            ]),
            Health::Ok
        );
        // An expired token does not count while another profile is eligible.
        assert_eq!(
            r(&[
                entry(CredentialType::Token, Health::Expired, false),
                entry(CredentialType::ApiKey, Health::Static, true)
            ]),
            Health::Static
        );
        assert_eq!(
            r(&[entry(CredentialType::Token, Health::Expired, false)]),
            Health::Expired
        );
        assert_eq!(
            r(&[
                entry(CredentialType::OAuth, Health::Expired, true),
                entry(CredentialType::ApiKey, Health::Static, true)
            ]),
            Health::Expired
        );
        // (r3) A broken ref beside a usable key: the provider is not missing.
        assert_eq!(
            r(&[
                entry(CredentialType::ApiKey, Health::Missing, true),
                entry(CredentialType::ApiKey, Health::Static, true)
            ]),
            Health::Static
        );
        assert_eq!(
            r(&[
                entry(CredentialType::OAuth, Health::Expiring, true),
                entry(CredentialType::Token, Health::Missing, true)
            ]),
            Health::Expiring
        );
        // Nothing usable: still missing.
        assert_eq!(
            r(&[
                entry(CredentialType::ApiKey, Health::Missing, true),
                entry(CredentialType::Token, Health::Missing, true)
            ]),
            Health::Missing
        );
        assert_eq!(
            r(&[entry(CredentialType::OAuth, Health::Expiring, true)]),
            Health::Expiring
        );
        // An explicit order that lists none of them: missing.
        let mut unlisted = entry(CredentialType::ApiKey, Health::Static, true);
        unlisted.listed = false;
        assert_eq!(provider_roll_up(&[unlisted], true).0, Health::Missing);
        assert_eq!(
            provider_roll_up(&[entry(CredentialType::OAuth, Health::Ok, true)], false).1,
            Some(NOW + 5)
        );
        assert_eq!(overall_status([]), Health::Missing);
        assert_eq!(overall_status([Health::Static, Health::Ok]), Health::Ok);
        assert_eq!(
            overall_status([Health::Ok, Health::Expiring, Health::Static]),
            Health::Expiring
        );
        assert_eq!(
            overall_status([Health::Missing, Health::Expiring]),
            Health::Missing
        );
        assert_eq!(
            overall_status([Health::Missing, Health::Expired]),
            Health::Expired
        );
        assert_eq!(check_exit_code(Health::Expired), 1);
        assert_eq!(check_exit_code(Health::Missing), 1);
        assert_eq!(check_exit_code(Health::Expiring), 2);
        assert_eq!(check_exit_code(Health::Ok), 0);
        assert_eq!(check_exit_code(Health::Static), 0);
    }

    #[test]
    fn health_words_serialise_as_their_wire_strings() {
        for h in [
            Health::Missing,
            Health::Static,
            Health::Expired,
            Health::Expiring,
            Health::Ok,
        ] {
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
            assert_eq!(
                serde_json::from_value::<Health>(h.as_str().into()).unwrap(),
                h
            );
        }
        for h in [
            ProfileHealth::Ok,
            ProfileHealth::Static,
            ProfileHealth::Expiring,
            ProfileHealth::Expired,
            ProfileHealth::Refreshable,
            ProfileHealth::Cooldown,
            ProfileHealth::Disabled,
            ProfileHealth::NeedsReauth,
            ProfileHealth::RefUnavailable,
        ] {
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
            assert_eq!(h.to_string(), h.as_str());
        }
    }
}
