//! `settings.get` and `settings.set`: bounded, validated, applied before committed, with a
//! revision for conditional writes.

use super::{load_settings, revision_conflict, App};
use crate::api::{SettingsGetParams, SettingsResult, SettingsSetParams};
use crate::core::error::Result;
use crate::core::settings::{self, Settings};
use crate::store::Tx;

/// The settings-table key holding the settings revision (not a setting: never merged).
const SETTINGS_REVISION_KEY: &str = "_revision";

/// The settings revision: 0 before the first `settings.set`, +1 per successful one.
fn settings_revision(c: &dyn Tx) -> Result<i64> {
    Ok(c.setting(SETTINGS_REVISION_KEY)?
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

/// The current settings revision, or `revision_conflict` when `expected` differs.
fn check_settings_revision(c: &dyn Tx, expected: Option<i64>) -> Result<i64> {
    let current = settings_revision(c)?;
    match expected {
        Some(e) if e != current => Err(revision_conflict(e, current)),
        _ => Ok(current),
    }
}

impl App {
    /// `settings.get`: the effective settings (defaults merged with the stored keys).
    ///
    /// Errors: store errors.
    pub(crate) fn settings_get(&self, _: SettingsGetParams) -> Result<SettingsResult> {
        let (settings, revision) = self.store().read(|c| {
            // From the read cache while the store is unchanged (issue 19: the trivial method
            // a warm `serve` is measured against).
            let mut cache = self.cache_at(c)?;
            if let Some((s, r)) = &cache.settings {
                return Ok((Settings::clone(s), *r));
            }
            let (s, r) = (load_settings(c)?, settings_revision(c)?);
            cache.settings = Some((std::sync::Arc::new(s.clone()), r));
            Ok((s, r))
        })?;
        Ok(SettingsResult { settings, revision })
    }

    /// `settings.set`: merges the given keys into the stored ones (`cooldowns` key by key)
    /// and returns the effective settings. `busyTimeoutMs` applies to this process at once
    /// and to others when they next open the store.
    ///
    /// Errors: `invalid_settings` (unknown key, wrong type or value), store errors.
    pub(crate) fn settings_set(&self, p: SettingsSetParams) -> Result<SettingsResult> {
        let mut st = self.store();
        // Validate first so that refused settings do not create the store.
        st.read(|c| {
            check_settings_revision(c, p.expected_revision)?;
            settings::merge_settings(&c.settings()?, &p.settings).map(|_| ())
        })?;
        let (settings, revision) = st.write(|c| {
            let current = check_settings_revision(c, p.expected_revision)?;
            let (to_store, settings) = settings::merge_settings(&c.settings()?, &p.settings)?;
            // Applied before committed: a value this connection cannot use is refused
            // here, inside the transaction, and nothing is stored.
            c.apply_busy_timeout(settings.busy_timeout_ms)?;
            for (k, v) in &to_store {
                c.put_setting(k, v)?;
            }
            c.put_setting(SETTINGS_REVISION_KEY, &serde_json::Value::from(current + 1))?;
            Ok((settings, current + 1))
        })?;
        st.set_busy_timeout(settings.busy_timeout_ms);
        tracing::info!(keys = ?p.settings.keys().collect::<Vec<_>>(), "settings stored");
        Ok(SettingsResult { settings, revision })
    }
}
