//! The resolution walk (protocol §3 "Resolution walk"): which credential to use now, and why.
//!
//! Pure: [`walk`] takes the scope view's profiles, the explicit order, usage state and the
//! clock and returns the candidates in walk order, each usable or skipped with its reason.
//! The shell ([`crate::handlers`]) then materialises the first usable one (resolving a
//! SecretRef or refreshing an OAuth token) and, if that fails, moves on.
//!
//! Rules (from protocol §3, following OpenClaw's `resolveAuthProfileOrder`):
//! 1. candidates are the view's profiles of the provider; `profileId` pins one;
//! 2. an explicit order is walked exactly; profiles it does not list are skipped with
//!    `excluded_by_auth_order`; without one: oauth < token < api_key, non-expired before
//!    expired, least recently used first, then id; `lastGood` never reorders;
//! 3. a profile in cooldown, disabled, expired, with an invalid expiry or needing re-auth is
//!    skipped with that reason.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Credential, StoredProfile};
use crate::core::usage::Usage;

mod horizon;
pub use horizon::walk_horizon;

/// Why a candidate was skipped (the stable strings of protocol §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Stored, but the explicit order does not list it.
    ExcludedByAuthOrder,
    /// In a cooldown window.
    Cooldown,
    /// In a disable window (billing, auth_permanent).
    Disabled,
    /// A token past `expires`, or an oauth past `expires` that cannot be refreshed.
    Expired,
    /// `expires` is not a usable time (zero, negative, or in seconds rather than ms).
    InvalidExpires,
    /// The refresh token was refused for good; a person must log in again.
    NeedsReauth,
    /// Its SecretRef could not be resolved.
    RefUnavailable,
    /// Its sealed secret failed to open (damaged, moved, or under a key not configured;
    /// PROTOCOL §9 r3).
    Undecryptable,
}

impl SkipReason {
    /// The string used in `trace`, `effective` and `data.candidates`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SkipReason::ExcludedByAuthOrder => "excluded_by_auth_order",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Disabled => "disabled",
            SkipReason::Expired => "expired",
            SkipReason::InvalidExpires => "invalid_expires",
            SkipReason::NeedsReauth => "needs_reauth",
            SkipReason::RefUnavailable => "ref_unavailable",
            SkipReason::Undecryptable => "undecryptable",
        }
    }
}

/// Where the explicit order in effect comes from (protocol §2.1; `order.get` `source`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// The agent's own order for the provider.
    Agent,
    /// The shared scope's order (no agent order exists, or no agent was given).
    Shared,
}

impl OrderSource {}

/// The explicit order a walk follows: the profile ids, first tried first, and whose
/// order it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitOrder {
    /// Profile ids in walk order (ids the view does not hold are kept; the walk skips them).
    pub ids: Vec<String>,
    /// The scope the order belongs to.
    pub source: OrderSource,
}

/// What the walk decided for one candidate (`trace[].decision`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decision {
    /// The credential handed out.
    Chosen,
    /// Not usable now; `reason` says why.
    Skipped,
}

/// Where a resolved credential came from (`auth.resolve` / `auth.candidates` `source`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CredentialSource {
    /// A stored auth profile.
    Profile,
    /// An environment key (protocol §6).
    Env,
}

/// A skipped candidate: the reason and, for a window, when it ends (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The reason.
    pub reason: SkipReason,
    /// End of the cooldown/disable window, or the expiry that passed.
    pub until: Option<i64>,
}

/// One candidate of the walk, in walk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The profile id.
    pub profile_id: String,
    /// `None` when usable as far as the store knows.
    pub skip: Option<Skip>,
    /// An oauth whose access token is past `expires` or within the refresh margin: refresh
    /// before use.
    pub needs_refresh: bool,
}

/// Everything the walk looks at. Times are milliseconds since the Unix epoch.
pub struct WalkInput<'a> {
    /// The scope view's profiles of the provider (an agent's own already win over shared ones).
    pub profiles: &'a [StoredProfile],
    /// The explicit order (agent's, else shared), if one exists.
    pub order: Option<&'a [String]>,
    /// Usage by profile id; a missing entry is fresh.
    pub usage: &'a HashMap<String, Usage>,
    /// The clock.
    pub now: i64,
    /// The model of the request, for model-scoped windows.
    pub model: Option<&'a str>,
    /// `profileId` of the request: only that profile is considered, order ignored.
    pub pinned: Option<&'a str>,
    /// How long before `expires` an oauth access token is refreshed (ms).
    pub refresh_margin_ms: i64,
    /// Whether an oauth profile can be refreshed (has a token endpoint).
    pub can_refresh: &'a dyn Fn(&StoredProfile) -> bool,
}

/// Expiry values below this are taken to be seconds or garbage, not milliseconds
/// (1e11 ms is March 1973).
const MIN_PLAUSIBLE_MS: i64 = 100_000_000_000;

/// The health of one profile at `now` for `model`: `None` if usable. Also says whether an
/// oauth token must be refreshed first.
pub(crate) fn assess(
    sp: &StoredProfile,
    usage: Option<&Usage>,
    input: &WalkInput<'_>,
) -> (Option<Skip>, bool) {
    let now = input.now;
    if crate::core::sealed::credential_undecryptable(&sp.profile.credential) {
        return (
            Some(Skip {
                reason: SkipReason::Undecryptable,
                until: None,
            }),
            false,
        );
    }
    if let Some(u) = usage {
        if u.needs_reauth {
            return (
                Some(Skip {
                    reason: SkipReason::NeedsReauth,
                    until: None,
                }),
                false,
            );
        }
        if let Some(b) = u.block(now, input.model) {
            let reason = if b.reason == "disabled" {
                SkipReason::Disabled
            } else {
                SkipReason::Cooldown
            };
            return (
                Some(Skip {
                    reason,
                    until: Some(b.until),
                }),
                false,
            );
        }
    }
    match &sp.profile.credential {
        Credential::ApiKey { .. } => (None, false),
        Credential::Token { expires, .. } => match expires {
            None => (None, false),
            Some(e) if *e < MIN_PLAUSIBLE_MS => (
                Some(Skip {
                    reason: SkipReason::InvalidExpires,
                    until: None,
                }),
                false,
            ),
            Some(e) if now >= *e => (
                Some(Skip {
                    reason: SkipReason::Expired,
                    until: Some(*e),
                }),
                false,
            ),
            Some(_) => (None, false),
        },
        Credential::OAuth { expires, .. } => {
            let e = *expires;
            if e < MIN_PLAUSIBLE_MS {
                return (
                    Some(Skip {
                        reason: SkipReason::InvalidExpires,
                        until: None,
                    }),
                    false,
                );
            }
            let refreshable = (input.can_refresh)(sp);
            if now >= e && !refreshable {
                return (
                    Some(Skip {
                        reason: SkipReason::Expired,
                        until: Some(e),
                    }),
                    false,
                );
            }
            (
                None,
                refreshable && now >= e.saturating_sub(input.refresh_margin_ms),
            )
        }
    }
}

fn is_expired_for_sort(sp: &StoredProfile, now: i64) -> bool {
    sp.profile.credential.expires().is_some_and(|e| now >= e)
}

/// Sorts profiles in the default order (no explicit order): oauth before token before
/// api_key; within a type non-expired before expired; then least recently used first
/// (never used counts as 0); then id.
pub(crate) fn default_order<'a>(
    profiles: &'a [StoredProfile],
    usage: &HashMap<String, Usage>,
    now: i64,
) -> Vec<&'a StoredProfile> {
    // Keys are computed once per profile (one usage lookup each), then sorted.
    let mut keyed: Vec<((u8, bool, i64), &StoredProfile)> = profiles
        .iter()
        .map(|p| {
            let last_used = if usage.is_empty() {
                0
            } else {
                usage
                    .get(&p.profile.id)
                    .and_then(|u| u.last_used)
                    .unwrap_or(0)
            };
            (
                (
                    p.profile.credential.type_rank(),
                    is_expired_for_sort(p, now),
                    last_used,
                ),
                p,
            )
        })
        .collect();
    keyed.sort_unstable_by(|(ka, a), (kb, b)| {
        ka.cmp(kb).then_with(|| a.profile.id.cmp(&b.profile.id))
    });
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// The walk: every candidate in the order `auth.resolve` considers it, with its decision.
/// With a pinned id that is not among the profiles the result is empty (the caller reports
/// `unknown_profile`).
pub fn walk(input: &WalkInput<'_>) -> Vec<Step> {
    let step = |sp: &StoredProfile| {
        let (skip, needs_refresh) = assess(sp, input.usage.get(&sp.profile.id), input);
        Step {
            profile_id: sp.profile.id.clone(),
            skip,
            needs_refresh,
        }
    };
    if let Some(pin) = input.pinned {
        return input
            .profiles
            .iter()
            .filter(|p| p.profile.id == pin)
            .map(step)
            .collect();
    }
    match input.order {
        Some(order) => {
            let by_id: HashMap<&str, &StoredProfile> = input
                .profiles
                .iter()
                .map(|p| (p.profile.id.as_str(), p))
                .collect();
            let mut steps: Vec<Step> = Vec::with_capacity(input.profiles.len());
            let mut listed = std::collections::HashSet::new();
            for id in order {
                if let Some(sp) = by_id.get(id.as_str()) {
                    if listed.insert(id.as_str()) {
                        steps.push(step(sp));
                    }
                }
            }
            for sp in default_order(input.profiles, input.usage, input.now) {
                if !listed.contains(sp.profile.id.as_str()) {
                    steps.push(Step {
                        profile_id: sp.profile.id.clone(),
                        skip: Some(Skip {
                            reason: SkipReason::ExcludedByAuthOrder,
                            until: None,
                        }),
                        needs_refresh: false,
                    });
                }
            }
            steps
        }
        None => default_order(input.profiles, input.usage, input.now)
            .into_iter()
            .map(step)
            .collect(),
    }
}

/// A candidate as listed in `trace`, `effective` and `data.candidates`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateReport {
    /// The profile id.
    pub profile_id: String,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// When the window ends (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `{"profile": {"id": "<provider>:default", "type": "api_key", "key": "<your key>"}}`.
fn put_example(provider: &str) -> String {
    format!("{{\"profile\": {{\"id\": \"{provider}:default\", \"type\": \"api_key\", \"key\": \"<your key>\"}}}}")
}

/// The error when no candidate is usable (protocol §3 step 5): `missing_credential` when
/// the provider has no profile in the view, `excluded_by_auth_order` when the order lists
/// none of them, else `unavailable` with `earliestUntil`. `data.candidates` lists each
/// candidate and its reason; `data.hint` names the call that fixes it.
pub(crate) fn no_credential_error(provider: &str, agent: Option<&str>, steps: &[Step]) -> RpcError {
    let agent_part = agent
        .map(|a| format!(", \"agent\": \"{a}\""))
        .unwrap_or_default();
    if steps.is_empty() {
        let scope = match agent {
            Some(a) => format!("agent `{a}` or the shared scope"),
            None => "the shared scope".to_string(),
        };
        return RpcError::new(
            ErrorKind::MissingCredential,
            format!("no auth profile for provider `{provider}` in {scope}"),
        )
        .with("provider", provider)
        .with("candidates", Vec::<CandidateReport>::new())
        .with_hint(format!(
            "store one with profiles.put {} (shared profiles are seen by every agent; from a shell pipe the params into `modelauth call profiles.put -`)",
            put_example(provider)
        ));
    }
    let candidates: Vec<CandidateReport> = steps
        .iter()
        .map(|s| CandidateReport {
            profile_id: s.profile_id.clone(),
            reason: s.skip.as_ref().map(|k| k.reason),
            until: s.skip.as_ref().and_then(|k| k.until),
        })
        .collect();
    let all_excluded = steps.iter().all(|s| {
        s.skip
            .as_ref()
            .is_some_and(|k| k.reason == SkipReason::ExcludedByAuthOrder)
    });
    if all_excluded {
        let ids: Vec<&str> = steps.iter().map(|s| s.profile_id.as_str()).collect();
        return RpcError::new(
            ErrorKind::ExcludedByAuthOrder,
            format!(
                "provider `{provider}` has {} profile(s), but its explicit order lists none of them",
                ids.len()
            ),
        )
        .with("provider", provider)
        .with("candidates", candidates)
        .with_hint(format!(
            "add them to the order with order.set {{\"provider\": \"{provider}\"{agent_part}, \"order\": {}}}, or remove the order with order.clear {{\"provider\": \"{provider}\"{agent_part}}}",
            json!(ids)
        ));
    }
    let earliest = steps
        .iter()
        .filter_map(|s| s.skip.as_ref())
        .filter(|k| matches!(k.reason, SkipReason::Cooldown | SkipReason::Disabled))
        .filter_map(|k| k.until)
        .min();
    let mut e = RpcError::new(
        ErrorKind::Unavailable,
        format!("every auth profile of provider `{provider}` is unusable right now"),
    )
    .with("provider", provider)
    .with("candidates", candidates);
    if let Some(t) = earliest {
        e = e.with("earliestUntil", t).with_hint(format!(
            "wait until earliestUntil, clear a window with auth.clearCooldown {{\"profileId\": \"...\"}}, or add another credential with profiles.put {}",
            put_example(provider)
        ));
    } else {
        e = e.retryable(false).with_hint(format!(
            "replace the expired or unreachable credential with profiles.put (the same id keeps its place in the order), e.g. {}",
            put_example(provider)
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::Profile;
    use crate::core::secret_value::Secret;
    use crate::core::usage::Window;

    pub(super) const NOW: i64 = 1_800_000_000_000;

    fn sp(id: &str, credential: Credential) -> StoredProfile {
        StoredProfile {
            profile: Profile {
                id: id.into(),
                provider: id.split(':').next().unwrap().into(),
                email: None,
                display_name: None,
                credential,
            },
            scope: None,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }
    }
    pub(super) fn key(id: &str) -> StoredProfile {
        sp(
            id,
            Credential::ApiKey {
                key: Some(Secret::new("k")),
                key_ref: None,
                metadata: None,
            },
        )
    }
    pub(super) fn token(id: &str, expires: Option<i64>) -> StoredProfile {
        sp(
            id,
            Credential::Token {
                token: Some(Secret::new("t")),
                token_ref: None,
                expires,
            },
        )
    }
    pub(super) fn oauth(id: &str, expires: i64, token_url: Option<&str>) -> StoredProfile {
        sp(
            id,
            Credential::OAuth {
                access: Secret::new("a"),
                refresh: Secret::new("r"),
                expires,
                token_url: token_url.map(str::to_string),
                client_id: None,
                account_id: None,
            },
        )
    }
    fn no_refresh(_: &StoredProfile) -> bool {
        false
    }
    pub(super) fn has_url(p: &StoredProfile) -> bool {
        matches!(
            &p.profile.credential,
            Credential::OAuth {
                token_url: Some(_),
                ..
            }
        )
    }
    fn run(
        profiles: &[StoredProfile],
        order: Option<&[String]>,
        usage: &HashMap<String, Usage>,
        model: Option<&str>,
    ) -> Vec<Step> {
        walk(&WalkInput {
            profiles,
            order,
            usage,
            now: NOW,
            model,
            pinned: None,
            refresh_margin_ms: 300_000,
            can_refresh: &no_refresh,
        })
    }
    fn ids(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.profile_id.as_str()).collect()
    }

    #[test]
    fn default_order_is_oauth_then_token_then_api_key() {
        let ps = [
            key("p:a"),
            token("p:b", None),
            oauth("p:c", NOW + 3_600_000, None),
        ];
        let steps = run(&ps, None, &HashMap::new(), None);
        assert_eq!(ids(&steps), ["p:c", "p:b", "p:a"]);
        assert!(steps.iter().all(|s| s.skip.is_none()));
    }

    #[test]
    fn within_a_type_expired_go_last_then_least_recently_used_then_id() {
        let ps = [
            token("p:old", Some(NOW - 1)),
            token("p:b", None),
            token("p:a", None),
            token("p:c", None),
        ];
        let mut usage = HashMap::new();
        usage.insert(
            "p:a".to_string(),
            Usage {
                last_used: Some(NOW - 10),
                ..Default::default()
            },
        );
        usage.insert(
            "p:b".to_string(),
            Usage {
                last_used: Some(NOW - 20),
                ..Default::default()
            },
        );
        let steps = run(&ps, None, &usage, None);
        assert_eq!(ids(&steps), ["p:c", "p:b", "p:a", "p:old"]);
        assert_eq!(steps[3].skip.as_ref().unwrap().reason, SkipReason::Expired);
    }

    #[test]
    fn an_explicit_order_is_walked_exactly_and_excludes_the_rest() {
        let ps = [key("p:a"), key("p:b"), oauth("p:c", NOW + 3_600_000, None)];
        let order = vec!["p:b".to_string(), "p:gone".to_string(), "p:a".to_string()];
        let steps = run(&ps, Some(&order), &HashMap::new(), None);
        assert_eq!(ids(&steps), ["p:b", "p:a", "p:c"]);
        assert_eq!(
            steps[2].skip.as_ref().unwrap().reason,
            SkipReason::ExcludedByAuthOrder
        );
    }

    #[test]
    fn model_scoped_cooldown_skips_only_that_model_and_unnamed_requests() {
        let ps = [key("p:a"), key("p:b")];
        let mut usage = HashMap::new();
        usage.insert(
            "p:a".to_string(),
            Usage {
                cooldowns: vec![Window {
                    until: NOW + 30_000,
                    reason: "rate_limit".into(),
                    model: Some("m1".into()),
                }],
                ..Default::default()
            },
        );
        let m1 = run(&ps, None, &usage, Some("m1"));
        assert_eq!(
            m1[0].skip,
            Some(Skip {
                reason: SkipReason::Cooldown,
                until: Some(NOW + 30_000)
            })
        );
        let m2 = run(&ps, None, &usage, Some("m2"));
        assert_eq!(m2[0].skip, None);
        let none = run(&ps, None, &usage, None);
        assert!(none[0].skip.is_some());
    }

    #[test]
    fn disabled_and_needs_reauth_are_skipped() {
        let ps = [key("p:a"), key("p:b")];
        let mut usage = HashMap::new();
        usage.insert(
            "p:a".to_string(),
            Usage {
                disabled: Some(Window {
                    until: NOW + 1,
                    reason: "billing".into(),
                    model: None,
                }),
                ..Default::default()
            },
        );
        usage.insert(
            "p:b".to_string(),
            Usage {
                needs_reauth: true,
                ..Default::default()
            },
        );
        let s = run(&ps, None, &usage, Some("m"));
        assert_eq!(s[0].skip.as_ref().unwrap().reason, SkipReason::Disabled);
        assert_eq!(s[1].skip.as_ref().unwrap().reason, SkipReason::NeedsReauth);
    }

    #[test]
    fn expired_oauth_is_usable_only_when_refreshable() {
        let ps = [
            oauth("p:a", NOW - 1, Some("http://x")),
            oauth("p:b", NOW - 1, None),
            oauth("p:c", NOW + 60_000, Some("http://x")),
            oauth("p:d", 5, None),
        ];
        let steps = walk(&WalkInput {
            profiles: &ps,
            order: None,
            usage: &HashMap::new(),
            now: NOW,
            model: None,
            pinned: None,
            refresh_margin_ms: 300_000,
            can_refresh: &has_url,
        });
        let get = |id: &str| steps.iter().find(|s| s.profile_id == id).unwrap().clone();
        assert_eq!(get("p:a").skip, None);
        assert!(get("p:a").needs_refresh);
        assert_eq!(get("p:b").skip.unwrap().reason, SkipReason::Expired);
        assert!(get("p:c").needs_refresh, "inside the refresh margin");
        assert_eq!(get("p:d").skip.unwrap().reason, SkipReason::InvalidExpires);
    }

    #[test]
    fn a_pinned_profile_ignores_the_order() {
        let ps = [key("p:a"), key("p:b")];
        let order = vec!["p:a".to_string()];
        let steps = walk(&WalkInput {
            profiles: &ps,
            order: Some(&order),
            usage: &HashMap::new(),
            now: NOW,
            model: None,
            pinned: Some("p:b"),
            refresh_margin_ms: 0,
            can_refresh: &no_refresh,
        });
        assert_eq!(ids(&steps), ["p:b"]);
        assert!(steps[0].skip.is_none());
    }

    #[test]
    fn errors_say_why_nothing_is_usable() {
        let e = no_credential_error("openai", Some("cron"), &[]);
        assert_eq!(e.kind, ErrorKind::MissingCredential);
        assert!(e.hint.as_ref().unwrap().contains("profiles.put"));
        assert!(!e.hint.unwrap().contains("copy"));

        let ps = [key("p:a")];
        let order = vec!["p:zzz".to_string()];
        let s = run(&ps, Some(&order), &HashMap::new(), None);
        let e = no_credential_error("p", None, &s);
        assert_eq!(e.kind, ErrorKind::ExcludedByAuthOrder);
        assert!(e.hint.unwrap().contains("order.set"));

        let mut usage = HashMap::new();
        usage.insert(
            "p:a".to_string(),
            Usage {
                cooldowns: vec![Window {
                    until: NOW + 5,
                    reason: "x".into(),
                    model: None,
                }],
                ..Default::default()
            },
        );
        let s = run(&ps, None, &usage, None);
        let e = no_credential_error("p", None, &s);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.data()["earliestUntil"], NOW + 5);
        assert_eq!(e.data()["candidates"][0]["reason"], "cooldown");
    }
}
