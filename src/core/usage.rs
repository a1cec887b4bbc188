//! Usage state of a credential: last use, cooldown and disable windows, failure counts
//! (protocol §4). It belongs to the credential (keyed by profile id), not to an agent:
//! a rate limit hit by one agent is seen by all.
//!
//! Everything here is pure: times are passed in as milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::profile::UsageView;
use crate::core::settings::CooldownSettings;

/// One cooldown or disable window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// End of the window, ms since the epoch (exclusive: usable again at `until`).
    pub until: i64,
    /// The outcome that opened it (`rate_limit`, `billing`, ...).
    pub reason: String,
    /// The model it is scoped to; `None` = every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Window {
    /// Whether this window blocks a request at `now` for `model` (protocol §3 step 3: a window
    /// scoped to one model applies to requests for that model and to requests naming no model).
    pub(crate) fn blocks(&self, now: i64, model: Option<&str>) -> bool {
        now < self.until
            && match (&self.model, model) {
                (None, _) | (_, None) => true,
                (Some(w), Some(m)) => w == m,
            }
    }
}

/// The usage state stored per profile id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    /// Last `success`, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<i64>,
    /// Cooldown windows (profile-wide or per model).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cooldowns: Vec<Window>,
    /// The disable window (billing, auth_permanent), profile-wide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Window>,
    /// Consecutive failures counted for the backoff steps.
    pub error_count: u32,
    /// Failures per outcome in the current failure window.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_counts: BTreeMap<String, u32>,
    /// Last failure report, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<i64>,
    /// Set when a refresh was refused for good (`invalid_grant`): a person must log in again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_reauth: bool,
}

/// Why a credential cannot be used right now, with when that ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// `cooldown` or `disabled`.
    pub reason: &'static str,
    /// ms since the epoch.
    pub until: i64,
    /// The outcome behind it.
    pub cause: String,
}

impl Usage {
    /// The window blocking a request at `now` for `model`, if any: a disable window first,
    /// else the cooldown that ends last.
    pub(crate) fn block(&self, now: i64, model: Option<&str>) -> Option<Block> {
        if let Some(d) = &self.disabled {
            if d.blocks(now, model) {
                return Some(Block {
                    reason: "disabled",
                    until: d.until,
                    cause: d.reason.clone(),
                });
            }
        }
        self.cooldowns
            .iter()
            .filter(|w| w.blocks(now, model))
            .max_by_key(|w| w.until)
            .map(|w| Block {
                reason: "cooldown",
                until: w.until,
                cause: w.reason.clone(),
            })
    }

    /// The `usage` member of a `ProfileView` at `now`: active windows only.
    pub(crate) fn view(&self, now: i64) -> UsageView {
        let cd = self
            .cooldowns
            .iter()
            .filter(|w| now < w.until)
            .max_by_key(|w| w.until);
        let dis = self.disabled.as_ref().filter(|w| now < w.until);
        UsageView {
            last_used: self.last_used,
            cooldown_until: cd.map(|w| w.until),
            cooldown_reason: cd.map(|w| w.reason.clone()),
            cooldown_model: cd.and_then(|w| w.model.clone()),
            disabled_until: dis.map(|w| w.until),
            disabled_reason: dis.map(|w| w.reason.clone()),
            error_count: self.error_count,
        }
    }
}

/// The outcome of a call, as reported with `auth.report` (protocol §3 "Usage state").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// The call worked: lastUsed = now, every failure state cleared.
    Success,
    /// HTTP 429 or the like: cooldown doubling from `rateLimitBaseMs`, model-scoped when a
    /// model is given.
    RateLimit,
    /// The provider is overloaded: profile-wide transient cooldown.
    Overloaded,
    /// The call timed out: transient cooldown, model-scoped when a model is given.
    Timeout,
    /// The model does not exist for this credential: transient, model-scoped when given.
    ModelNotFound,
    /// An authentication error that may pass: profile-wide transient cooldown.
    Auth,
    /// The credential was refused for good: disabled, doubling up to `authPermanentMaxMs`.
    AuthPermanent,
    /// Out of credit: disabled, doubling up to `billingMaxMs`.
    Billing,
    /// The request or response format was refused: profile-wide transient cooldown.
    Format,
    /// Anything else: profile-wide transient cooldown.
    Unknown,
}

impl Outcome {
    /// Every outcome, in the order of protocol §3.
    #[cfg(test)]
    pub(crate) const ALL: [Outcome; 10] = [
        Outcome::Success,
        Outcome::RateLimit,
        Outcome::Overloaded,
        Outcome::Timeout,
        Outcome::ModelNotFound,
        Outcome::Auth,
        Outcome::AuthPermanent,
        Outcome::Billing,
        Outcome::Format,
        Outcome::Unknown,
    ];

    /// The protocol string (`rate_limit`, ...), also used as a window's `reason`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RateLimit => "rate_limit",
            Outcome::Overloaded => "overloaded",
            Outcome::Timeout => "timeout",
            Outcome::ModelNotFound => "model_not_found",
            Outcome::Auth => "auth",
            Outcome::AuthPermanent => "auth_permanent",
            Outcome::Billing => "billing",
            Outcome::Format => "format",
            Outcome::Unknown => "unknown",
        }
    }

    /// Whether a window opened by this outcome is scoped to the reported model.
    pub(crate) fn is_model_scoped(self) -> bool {
        matches!(
            self,
            Outcome::RateLimit | Outcome::Timeout | Outcome::ModelNotFound
        )
    }

    /// Whether this outcome disables the profile (rather than cooling it down).
    pub(crate) fn disables(self) -> bool {
        matches!(self, Outcome::Billing | Outcome::AuthPermanent)
    }
}

/// The outcome of an HTTP status of the provider (protocol §3 `auth.report` r2, the mapping
/// LiteLLM's router also uses): 2xx → success, 429 → rate_limit, 402 → billing, 401 and
/// 403 → auth, 404 → model_not_found, 408 and 504 → timeout, 500/502/503/529 →
/// overloaded, any other 4xx → format, anything else → unknown. Pure.
pub(crate) fn outcome_for_http_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        429 => Outcome::RateLimit,
        402 => Outcome::Billing,
        401 | 403 => Outcome::Auth,
        404 => Outcome::ModelNotFound,
        408 | 504 => Outcome::Timeout,
        500 | 502 | 503 | 529 => Outcome::Overloaded,
        400..=499 => Outcome::Format,
        _ => Outcome::Unknown,
    }
}

/// Whether a `retryAfterMs` lengthens a new window of this outcome (protocol §3:
/// `rate_limit`, `overloaded`, `timeout`).
pub(crate) fn honours_retry_after(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::RateLimit | Outcome::Overloaded | Outcome::Timeout
    )
}

/// `base * 2^(count-1)` capped at `max` (count starts at 1), in milliseconds.
pub(crate) fn doubling_ms(base: i64, max: i64, count: u32) -> i64 {
    let shift = count.saturating_sub(1).min(62);
    base.max(0)
        .checked_mul(1i64 << shift)
        .unwrap_or(i64::MAX)
        .min(max.max(0))
}

/// The transient step for error count `count` (1 = first step; past the end stays on the
/// last step), in milliseconds.
pub(crate) fn transient_ms(steps: &[i64], count: u32) -> i64 {
    if steps.is_empty() {
        return 0;
    }
    let i = (count.max(1) as usize - 1).min(steps.len() - 1);
    steps[i]
}

/// The end of the latest window ever recorded, else the last failure (ms since the epoch).
fn previous_window_end(u: &Usage) -> Option<i64> {
    u.cooldowns
        .iter()
        .map(|w| w.until)
        .chain(u.disabled.as_ref().map(|w| w.until))
        .chain(u.last_failure_at)
        .max()
}

#[cfg(test)]
/// Applies one `auth.report` to `usage` at `now` (ms since the epoch) and returns the new
/// state (protocol §4). Pure: no clock, no I/O.
///
/// - `success`: `lastUsed = now`, every window, count and failure time cleared
///   (`needsReauth` stays: only a new credential or a refresh clears it).
/// - `rate_limit`: cooldown `rateLimitBaseMs · 2^(n-1)` capped at `rateLimitMaxMs`, where
///   `n` is the rate-limit count, which restarts only on success or `auth.clearCooldown`;
///   scoped to `model` when given.
/// - `timeout`, `model_not_found` (scoped to `model` when given), `overloaded`, `format`,
///   `auth`, `unknown` (profile-wide): cooldown `transientStepsMs[errorCount-1]`, staying on
///   the last step.
/// - `billing`, `auth_permanent`: disabled `base · 2^(n-1)` capped at the max, `n` counting
///   that outcome.
/// - A window of the same kind and scope that is still active is never extended (the counts
///   still rise). A failure more than `failureWindowMs` after the previous window ended
///   restarts `errorCount` and every per-outcome count except the rate-limit one at 1.
pub(crate) fn apply_report(
    usage: &Usage,
    outcome: Outcome,
    model: Option<&str>,
    now: i64,
    cfg: &CooldownSettings,
) -> Usage {
    apply_report_retry_after(usage, outcome, model, now, cfg, None)
}

/// [`apply_report`] with the provider's `Retry-After` in milliseconds (protocol §3 r2):
/// a **new** `rate_limit`, `overloaded` or `timeout` window lasts at least
/// `min(retry_after_ms, rateLimitMaxMs)`. An active window that already covers the scope
/// is neither shortened nor extended, and other outcomes ignore it. Pure.
pub(crate) fn apply_report_retry_after(
    usage: &Usage,
    outcome: Outcome,
    model: Option<&str>,
    now: i64,
    cfg: &CooldownSettings,
    retry_after_ms: Option<i64>,
) -> Usage {
    let mut u = usage.clone();
    if outcome == Outcome::Success {
        return Usage {
            last_used: Some(now),
            needs_reauth: usage.needs_reauth,
            ..Default::default()
        };
    }
    // Restart the counts after a quiet failure window.
    if let Some(end) = previous_window_end(&u) {
        if now.saturating_sub(end) > cfg.failure_window_ms {
            u.error_count = 0;
            u.failure_counts
                .retain(|k, _| k == Outcome::RateLimit.as_str());
        }
    }
    // Forget windows that ended long ago (they no longer matter for anything).
    let horizon = now.saturating_sub(cfg.failure_window_ms);
    u.cooldowns.retain(|w| w.until >= horizon);
    u.error_count = u.error_count.saturating_add(1);
    let count = {
        let c = u
            .failure_counts
            .entry(outcome.as_str().to_string())
            .or_insert(0);
        *c = c.saturating_add(1);
        *c
    };
    u.last_failure_at = Some(now);
    let reason = outcome.as_str().to_string();
    if outcome.disables() {
        let len = match outcome {
            Outcome::Billing => doubling_ms(cfg.billing_base_ms, cfg.billing_max_ms, count),
            _ => doubling_ms(cfg.auth_permanent_base_ms, cfg.auth_permanent_max_ms, count),
        };
        let active = u.disabled.as_ref().is_some_and(|w| now < w.until);
        if !active {
            u.disabled = Some(Window {
                until: now.saturating_add(len),
                reason,
                model: None,
            });
        }
        return u;
    }
    let mut len = match outcome {
        Outcome::RateLimit => doubling_ms(cfg.rate_limit_base_ms, cfg.rate_limit_max_ms, count),
        _ => transient_ms(&cfg.transient_steps_ms, u.error_count),
    };
    if let Some(ra) = retry_after_ms.filter(|_| honours_retry_after(outcome)) {
        len = len.max(ra.clamp(0, cfg.rate_limit_max_ms.max(0)));
    }
    let scope = if outcome.is_model_scoped() {
        model.map(str::to_string)
    } else {
        None
    };
    // An active window already covering this scope (the same model, or profile-wide) is
    // never extended.
    let covered = u
        .cooldowns
        .iter()
        .any(|w| now < w.until && (w.model.is_none() || w.model == scope));
    if !covered {
        u.cooldowns.retain(|w| w.model != scope);
        u.cooldowns.push(Window {
            until: now.saturating_add(len),
            reason,
            model: scope,
        });
    }
    u
}

/// `auth.clearCooldown`: with `model`, removes only the windows scoped to that model;
/// without, every cooldown and the disable window. Either way the failure counts
/// (including the rate-limit count) restart. Pure.
pub(crate) fn clear_cooldown(usage: &Usage, model: Option<&str>) -> Usage {
    let mut u = usage.clone();
    match model {
        Some(m) => u.cooldowns.retain(|w| w.model.as_deref() != Some(m)),
        None => {
            u.cooldowns.clear();
            u.disabled = None;
        }
    }
    u.error_count = 0;
    u.failure_counts.clear();
    u.last_failure_at = None;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(until: i64, model: Option<&str>) -> Window {
        Window {
            until,
            reason: "rate_limit".into(),
            model: model.map(str::to_string),
        }
    }

    #[test]
    fn a_model_window_blocks_that_model_and_unnamed_requests_only() {
        let win = w(100, Some("m1"));
        assert!(win.blocks(50, Some("m1")));
        assert!(win.blocks(50, None));
        assert!(!win.blocks(50, Some("m2")));
        assert!(!win.blocks(100, Some("m1")), "the window ends at until");
    }

    #[test]
    fn a_profile_window_blocks_every_model() {
        assert!(w(100, None).blocks(99, Some("anything")));
    }

    #[test]
    fn disabled_wins_over_cooldown_and_latest_cooldown_is_reported() {
        let u = Usage {
            cooldowns: vec![w(100, None), w(200, Some("m"))],
            disabled: Some(Window {
                until: 150,
                reason: "billing".into(),
                model: None,
            }),
            ..Default::default()
        };
        assert_eq!(u.block(10, None).unwrap().reason, "disabled");
        let b = u.block(160, Some("m")).unwrap();
        assert_eq!((b.reason, b.until), ("cooldown", 200));
        assert_eq!(u.block(160, Some("x")), None);
        let v = u.view(10);
        assert_eq!(v.cooldown_until, Some(200));
        assert_eq!(v.disabled_until, Some(150));
        assert_eq!(u.view(300).cooldown_until, None);
    }

    const T0: i64 = 1_800_000_000_000;
    const S: i64 = 1000;
    const MIN: i64 = 60 * S;
    const H: i64 = 60 * MIN;

    fn cfg() -> CooldownSettings {
        CooldownSettings::default()
    }

    /// Reports `outcome` `n` times, each just after the previous window ended; returns the
    /// window lengths seen.
    fn lengths(outcome: Outcome, model: Option<&str>, n: usize) -> Vec<i64> {
        let mut u = Usage::default();
        let mut now = T0;
        let mut out = vec![];
        for _ in 0..n {
            u = apply_report(&u, outcome, model, now, &cfg());
            let until = if outcome.disables() {
                u.disabled.as_ref().unwrap().until
            } else {
                u.cooldowns
                    .iter()
                    .filter(|w| w.model.as_deref() == model)
                    .map(|w| w.until)
                    .max()
                    .unwrap()
            };
            out.push(until - now);
            now = until + 1;
        }
        out
    }

    #[test]
    fn rate_limit_doubles_from_30s_to_24h() {
        let l = lengths(Outcome::RateLimit, None, 14);
        let want: Vec<i64> = (0..14)
            .map(|i| (30 * S * (1i64 << i)).min(24 * H))
            .collect();
        assert_eq!(l, want);
        assert_eq!(l[0], 30 * S);
        assert_eq!(l[1], 60 * S);
        assert_eq!(l[12], 24 * H);
        assert_eq!(l[13], 24 * H);
    }

    #[test]
    fn transient_outcomes_step_30s_60s_5min() {
        for o in [
            Outcome::Overloaded,
            Outcome::Timeout,
            Outcome::ModelNotFound,
            Outcome::Auth,
            Outcome::Format,
            Outcome::Unknown,
        ] {
            assert_eq!(
                lengths(o, None, 5),
                vec![30 * S, 60 * S, 5 * MIN, 5 * MIN, 5 * MIN],
                "{o:?}"
            );
        }
    }

    #[test]
    fn billing_disables_10min_doubling_to_24h() {
        let l = lengths(Outcome::Billing, None, 10);
        assert_eq!(
            l,
            vec![
                10 * MIN,
                20 * MIN,
                40 * MIN,
                80 * MIN,
                160 * MIN,
                320 * MIN,
                640 * MIN,
                1280 * MIN,
                24 * H,
                24 * H
            ]
        );
    }

    #[test]
    fn auth_permanent_disables_10min_doubling_to_60min() {
        assert_eq!(
            lengths(Outcome::AuthPermanent, None, 5),
            vec![10 * MIN, 20 * MIN, 40 * MIN, 60 * MIN, 60 * MIN]
        );
    }

    #[test]
    fn disable_windows_are_profile_wide_even_with_a_model() {
        let u = apply_report(&Usage::default(), Outcome::Billing, Some("m1"), T0, &cfg());
        let d = u.disabled.clone().unwrap();
        assert_eq!(d.model, None);
        assert_eq!(d.reason, "billing");
        assert_eq!(u.block(T0, Some("m2")).unwrap().reason, "disabled");
        assert!(u.cooldowns.is_empty());
    }

    #[test]
    fn model_scoping_per_outcome() {
        for o in Outcome::ALL {
            if o == Outcome::Success || o.disables() {
                continue;
            }
            let u = apply_report(&Usage::default(), o, Some("m1"), T0, &cfg());
            assert_eq!(u.cooldowns.len(), 1, "{o:?}");
            let w = &u.cooldowns[0];
            assert_eq!(w.reason, o.as_str());
            let scoped = matches!(
                o,
                Outcome::RateLimit | Outcome::Timeout | Outcome::ModelNotFound
            );
            assert_eq!(w.model.as_deref(), scoped.then_some("m1"), "{o:?}");
            assert!(u.block(T0, Some("m1")).is_some());
            assert!(
                u.block(T0, None).is_some(),
                "unnamed requests are blocked too"
            );
            assert_eq!(u.block(T0, Some("m2")).is_none(), scoped, "{o:?}");
            // Without a model the window is profile-wide.
            let u = apply_report(&Usage::default(), o, None, T0, &cfg());
            assert_eq!(u.cooldowns[0].model, None);
        }
    }

    #[test]
    fn an_active_window_is_not_extended_but_its_count_rises() {
        let c = cfg();
        let u1 = apply_report(&Usage::default(), Outcome::RateLimit, Some("m1"), T0, &c);
        let until = u1.cooldowns[0].until;
        assert_eq!(until, T0 + 30 * S);
        let u2 = apply_report(&u1, Outcome::RateLimit, Some("m1"), T0 + 10 * S, &c);
        assert_eq!(u2.cooldowns, u1.cooldowns);
        assert_eq!(u2.failure_counts["rate_limit"], 2);
        assert_eq!(u2.error_count, 2);
        // After the window the raised count gives the third step.
        let u3 = apply_report(&u2, Outcome::RateLimit, Some("m1"), until, &c);
        assert_eq!(u3.cooldowns.len(), 1);
        assert_eq!(u3.cooldowns[0].until, until + 120 * S);
        // Another model gets its own window.
        let u4 = apply_report(&u3, Outcome::RateLimit, Some("m2"), until, &c);
        assert_eq!(u4.cooldowns.len(), 2);
        // A profile-wide window covers every model: a model report does not add one.
        let p = apply_report(&Usage::default(), Outcome::Overloaded, None, T0, &c);
        let p2 = apply_report(&p, Outcome::Timeout, Some("m1"), T0 + S, &c);
        assert_eq!(p2.cooldowns, p.cooldowns);
        assert_eq!(p2.error_count, 2);
        // Disabled: not extended either.
        let b1 = apply_report(&Usage::default(), Outcome::Billing, None, T0, &c);
        let b2 = apply_report(&b1, Outcome::Billing, None, T0 + MIN, &c);
        assert_eq!(b2.disabled, b1.disabled);
        assert_eq!(b2.failure_counts["billing"], 2);
    }

    #[test]
    fn a_failure_after_the_failure_window_restarts_the_count() {
        let mut c = cfg();
        c.failure_window_ms = H;
        let mut u = Usage::default();
        u = apply_report(&u, Outcome::Timeout, None, T0, &c);
        u = apply_report(&u, Outcome::Timeout, None, T0 + 31 * S, &c);
        assert_eq!(u.error_count, 2);
        let end = u.cooldowns[0].until;
        assert_eq!(end, T0 + 31 * S + 60 * S);
        // Exactly failureWindowMs after the end: still escalates.
        let esc = apply_report(&u, Outcome::Timeout, None, end + H, &c);
        assert_eq!(esc.error_count, 3);
        assert_eq!(esc.cooldowns[0].until - (end + H), 5 * MIN);
        // Later: restarts at 1 with the first step.
        let fresh = apply_report(&u, Outcome::Timeout, None, end + H + 1, &c);
        assert_eq!(fresh.error_count, 1);
        assert_eq!(fresh.failure_counts["timeout"], 1);
        assert_eq!(fresh.cooldowns.len(), 1);
        assert_eq!(fresh.cooldowns[0].until - (end + H + 1), 30 * S);
        // Billing restarts too.
        let b = apply_report(&Usage::default(), Outcome::Billing, None, T0, &c);
        let b_end = b.disabled.as_ref().unwrap().until;
        let b2 = apply_report(&b, Outcome::Billing, None, b_end + H + 1, &c);
        assert_eq!(b2.failure_counts["billing"], 1);
        assert_eq!(b2.disabled.unwrap().until - (b_end + H + 1), 10 * MIN);
    }

    #[test]
    fn the_rate_limit_count_restarts_only_on_success_or_clear() {
        let mut c = cfg();
        c.failure_window_ms = H;
        let u = apply_report(&Usage::default(), Outcome::RateLimit, None, T0, &c);
        let end = u.cooldowns[0].until;
        let later = end + 10 * H;
        let u2 = apply_report(&u, Outcome::RateLimit, None, later, &c);
        assert_eq!(u2.failure_counts["rate_limit"], 2);
        assert_eq!(u2.cooldowns[0].until - later, 60 * S);
        assert_eq!(u2.error_count, 1, "the general error count did restart");
        let ok = apply_report(&u2, Outcome::Success, None, later + H, &c);
        let u3 = apply_report(&ok, Outcome::RateLimit, None, later + H, &c);
        assert_eq!(u3.cooldowns[0].until - (later + H), 30 * S);
        let cl = clear_cooldown(&u2, None);
        let u4 = apply_report(&cl, Outcome::RateLimit, None, later, &c);
        assert_eq!(u4.cooldowns[0].until - later, 30 * S);
    }

    #[test]
    fn success_clears_every_failure_and_records_last_used() {
        let c = cfg();
        let mut u = Usage {
            needs_reauth: true,
            ..Default::default()
        };
        for o in Outcome::ALL.into_iter().filter(|o| *o != Outcome::Success) {
            u = apply_report(&u, o, Some("m"), T0, &c);
        }
        assert!(u.disabled.is_some() && !u.cooldowns.is_empty());
        let s = apply_report(&u, Outcome::Success, Some("m"), T0 + 5, &c);
        assert_eq!(
            s,
            Usage {
                last_used: Some(T0 + 5),
                needs_reauth: true,
                ..Default::default()
            }
        );
        assert_eq!(s.block(T0 + 5, None), None);
    }

    #[test]
    fn clear_cooldown_with_a_model_clears_only_that_model() {
        let c = cfg();
        let mut u = apply_report(&Usage::default(), Outcome::RateLimit, Some("m1"), T0, &c);
        u = apply_report(&u, Outcome::RateLimit, Some("m2"), T0, &c);
        u = apply_report(&u, Outcome::Billing, None, T0, &c);
        let m1 = clear_cooldown(&u, Some("m1"));
        assert_eq!(m1.cooldowns.len(), 1);
        assert_eq!(m1.cooldowns[0].model.as_deref(), Some("m2"));
        assert!(m1.disabled.is_some());
        assert_eq!(m1.error_count, 0);
        assert!(m1.failure_counts.is_empty());
        let all = clear_cooldown(&u, None);
        assert!(all.cooldowns.is_empty() && all.disabled.is_none());
        assert_eq!(all.block(T0, None), None);
    }

    #[test]
    fn doubling_and_steps_saturate() {
        assert_eq!(doubling_ms(30_000, 86_400_000, 0), 30_000);
        assert_eq!(doubling_ms(30_000, 86_400_000, 1000), 86_400_000);
        assert_eq!(doubling_ms(i64::MAX / 2, i64::MAX, 5), i64::MAX);
        assert_eq!(transient_ms(&[1, 2], 0), 1);
        assert_eq!(transient_ms(&[1, 2], 9), 2);
        assert_eq!(transient_ms(&[], 3), 0);
    }

    #[test]
    fn outcomes_serialise_as_protocol_strings() {
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }

    #[test]
    fn http_statuses_map_to_outcomes() {
        use Outcome::*;
        for (st, o) in [
            (200, Success),
            (201, Success),
            (299, Success),
            (429, RateLimit),
            (402, Billing),
            (401, Auth),
            (403, Auth),
            (404, ModelNotFound),
            (408, Timeout),
            (504, Timeout),
            (500, Overloaded),
            (502, Overloaded),
            (503, Overloaded),
            (529, Overloaded),
            (400, Format),
            (422, Format),
            (499, Format),
            (501, Unknown),
            (599, Unknown),
            (301, Unknown),
            (100, Unknown),
            (0, Unknown),
        ] {
            assert_eq!(outcome_for_http_status(st), o, "{st}");
        }
    }

    #[test]
    fn retry_after_lengthens_only_new_windows_of_three_outcomes_capped() {
        let c = cfg();
        let ra = Some(120 * S);
        // A new rate_limit window lasts at least Retry-After (base is 30 s).
        let u =
            apply_report_retry_after(&Usage::default(), Outcome::RateLimit, Some("m"), T0, &c, ra);
        assert_eq!(u.cooldowns[0].until, T0 + 120 * S);
        // Shorter than the computed window: no shortening.
        let u =
            apply_report_retry_after(&Usage::default(), Outcome::RateLimit, None, T0, &c, Some(S));
        assert_eq!(u.cooldowns[0].until, T0 + 30 * S);
        for o in [Outcome::Overloaded, Outcome::Timeout] {
            let u = apply_report_retry_after(&Usage::default(), o, None, T0, &c, ra);
            assert_eq!(u.cooldowns[0].until, T0 + 120 * S, "{o:?}");
        }
        // Other outcomes ignore it.
        let u = apply_report_retry_after(&Usage::default(), Outcome::Format, None, T0, &c, ra);
        assert_eq!(u.cooldowns[0].until, T0 + 30 * S);
        let u = apply_report_retry_after(&Usage::default(), Outcome::Billing, None, T0, &c, ra);
        assert_eq!(u.disabled.as_ref().unwrap().until, T0 + 10 * MIN);
        // Capped at rateLimitMaxMs.
        let u = apply_report_retry_after(
            &Usage::default(),
            Outcome::RateLimit,
            None,
            T0,
            &c,
            Some(i64::MAX),
        );
        assert_eq!(u.cooldowns[0].until, T0 + c.rate_limit_max_ms);
        // An active window is neither extended nor shortened.
        let first = apply_report(&Usage::default(), Outcome::RateLimit, None, T0, &c);
        let again = apply_report_retry_after(&first, Outcome::RateLimit, None, T0 + S, &c, Some(H));
        assert_eq!(again.cooldowns, first.cooldowns);
        let long =
            apply_report_retry_after(&Usage::default(), Outcome::RateLimit, None, T0, &c, Some(H));
        let short = apply_report_retry_after(&long, Outcome::RateLimit, None, T0 + S, &c, Some(S));
        assert_eq!(short.cooldowns, long.cooldowns);
        // None behaves as apply_report.
        assert_eq!(
            apply_report_retry_after(&Usage::default(), Outcome::Timeout, None, T0, &c, None),
            apply_report(&Usage::default(), Outcome::Timeout, None, T0, &c)
        );
    }
}
