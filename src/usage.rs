//! Usage state of a credential: last use, cooldown and disable windows, failure counts
//! (PROTOCOL §4). It belongs to the credential (keyed by profile id), not to an agent:
//! a rate limit hit by one agent is seen by all.
//!
//! Everything here is pure: times are passed in as milliseconds since the Unix epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::profile::UsageView;

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
    /// Whether this window blocks a request at `now` for `model` (PROTOCOL §3 step 3: a window
    /// scoped to one model applies to requests for that model and to requests naming no model).
    pub fn blocks(&self, now: i64, model: Option<&str>) -> bool {
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
pub struct Block {
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
    pub fn block(&self, now: i64, model: Option<&str>) -> Option<Block> {
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
    pub fn view(&self, now: i64) -> UsageView {
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
}
