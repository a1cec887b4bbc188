//! The roll-up of `auth.status` and the exit code of `modelauth check` (protocol §3, §8),
//! following OpenClaw's `models status`: a provider is `missing` (no profiles), `static`
//! (api keys and tokens without expiry only), `expired`, `expiring` or `ok`, judged on its
//! expiring credentials; `overall` is the worst provider.
//!
//! Pure: times are milliseconds since the epoch, passed in.

use crate::profile::{Credential, StoredProfile};
use crate::usage::Usage;

/// Expiry values below this are seconds or garbage, not milliseconds (March 1973).
const MIN_PLAUSIBLE_MS: i64 = 100_000_000_000;

/// How one profile counts in the roll-up at `now`: `static` (nothing expires), `ok`,
/// `expiring` (within `expiring_within_ms`), or `expired` (past `expires`, an implausible
/// `expires`, or needing re-authentication). Cooldowns do not count: they always end.
pub fn expiry_class(
    sp: &StoredProfile,
    usage: Option<&Usage>,
    now: i64,
    expiring_within_ms: i64,
    can_refresh: bool,
) -> &'static str {
    if usage.is_some_and(|u| u.needs_reauth) {
        return "expired";
    }
    let e = match &sp.profile.credential {
        Credential::ApiKey { .. } | Credential::Token { expires: None, .. } => return "static",
        Credential::Token {
            expires: Some(e), ..
        }
        | Credential::OAuth { expires: e, .. } => *e,
    };
    if e < MIN_PLAUSIBLE_MS {
        "expired"
    } else if can_refresh {
        "ok"
    } else if now >= e {
        "expired"
    } else if e - now <= expiring_within_ms {
        "expiring"
    } else {
        "ok"
    }
}

/// A provider's status from the classes of its profiles (see [`expiry_class`]).
pub fn provider_status<'a>(classes: impl IntoIterator<Item = &'a str>) -> &'static str {
    let classes: Vec<&str> = classes.into_iter().collect();
    if classes.is_empty() {
        "missing"
    } else if classes.contains(&"expired") {
        "expired"
    } else if classes.contains(&"expiring") {
        "expiring"
    } else if classes.contains(&"ok") {
        "ok"
    } else {
        "static"
    }
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

/// The exit code of `modelauth check` for an `overall` status: 1 for `expired` or
/// `missing`, 2 for `expiring`, else 0.
pub fn check_exit_code(overall: &str) -> i32 {
    match overall {
        "expired" | "missing" => 1,
        "expiring" => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::secret::Secret;

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

    #[test]
    fn classes() {
        let c = |e, u: Option<&Usage>| expiry_class(&token(e), u, NOW, DAY, false);
        assert_eq!(c(None, None), "static");
        assert_eq!(c(Some(NOW - 1), None), "expired");
        assert_eq!(c(Some(NOW), None), "expired");
        assert_eq!(c(Some(NOW + DAY), None), "expiring");
        assert_eq!(c(Some(NOW + DAY + 1), None), "ok");
        assert_eq!(c(Some(1_700_000_000), None), "expired", "seconds, not ms");
        let u = Usage {
            needs_reauth: true,
            ..Default::default()
        };
        assert_eq!(c(None, Some(&u)), "expired");
    }

    #[test]
    fn roll_up() {
        assert_eq!(provider_status([]), "missing");
        assert_eq!(provider_status(["static", "static"]), "static");
        assert_eq!(provider_status(["static", "ok"]), "ok");
        assert_eq!(provider_status(["ok", "expiring"]), "expiring");
        assert_eq!(provider_status(["expiring", "expired", "ok"]), "expired");
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
