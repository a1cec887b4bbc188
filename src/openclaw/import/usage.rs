//! OpenClaw `usageStats` entries mapped onto modelauth's [`Usage`].

use serde_json::{Map, Value};

use crate::core::usage::{Usage, Window};

fn ms_field(o: &Map<String, Value>, f: &str) -> Result<Option<i64>, String> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| f.to_string()),
    }
}

fn str_field(o: &Map<String, Value>, f: &str) -> Result<Option<String>, String> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 128 && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(f.to_string()),
    }
}

/// Maps an OpenClaw `usageStats` entry `{lastUsed, cooldownUntil, cooldownReason,
/// cooldownModel?, disabledUntil, disabledReason, errorCount, failureCounts, lastFailureAt}`
/// (times in ms since the epoch) onto [`Usage`]. Unknown members are ignored. Errors with
/// the name of the first invalid member.
pub(crate) fn usage_from_openclaw(v: &Value) -> Result<Usage, String> {
    let Some(o) = v.as_object() else {
        return Err(String::new());
    };
    let mut u = Usage {
        last_used: ms_field(o, "lastUsed")?,
        last_failure_at: ms_field(o, "lastFailureAt")?,
        ..Default::default()
    };
    if let Some(until) = ms_field(o, "cooldownUntil")? {
        u.cooldowns.push(Window {
            until,
            reason: str_field(o, "cooldownReason")?.unwrap_or_else(|| "unknown".into()),
            model: str_field(o, "cooldownModel")?,
        });
    }
    if let Some(until) = ms_field(o, "disabledUntil")? {
        u.disabled = Some(Window {
            until,
            reason: str_field(o, "disabledReason")?.unwrap_or_else(|| "unknown".into()),
            model: None,
        });
    }
    if let Some(n) = ms_field(o, "errorCount")? {
        u.error_count = u32::try_from(n).map_err(|_| "errorCount".to_string())?;
    }
    match o.get("failureCounts") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let n = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| "failureCounts".to_string())?;
                u.failure_counts.insert(k.clone(), n);
            }
        }
        Some(_) => return Err("failureCounts".into()),
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_stats_map_onto_usage() {
        let u = usage_from_openclaw(&json!({"lastUsed": 5, "cooldownUntil": 9,
            "cooldownReason": "rate_limit", "errorCount": 2, "failureCounts": {"rate_limit": 2},
            "lastFailureAt": 7}))
        .unwrap();
        assert_eq!(u.cooldowns[0].until, 9);
        assert_eq!(u.error_count, 2);
        assert_eq!(
            usage_from_openclaw(&json!({"lastUsed": 1.5})).unwrap_err(),
            "lastUsed"
        );
    }
}
