//! The import plan: per-scope profiles, orders, lastGood and usage, with the warnings and
//! errors of each entry.

use std::collections::BTreeMap;

use serde_json::Value;

use super::normalize::normalize_entry;
use super::types::{EntryError, Format, ImportWarning, Loaded, Piece, PieceKind};
use super::usage::usage_from_openclaw;
use crate::core::error::ErrorKind;
use crate::core::ids::{self, Aliases};
use crate::core::profile::{escape_pointer, validate_profile, Profile, VALID_TYPES};
use crate::core::usage::Usage;

/// A validated profile to import.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedProfile {
    /// The profile, validated as `profiles.put` would.
    pub profile: Profile,
    /// Where it was in the source.
    pub pointer: String,
}

/// An order entry to import: normalised provider and ids, not yet checked against the store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedOrder {
    /// The ids, normalised and deduplicated.
    pub ids: Vec<String>,
    /// For each id, its index in the source list (for warning pointers).
    pub indexes: Vec<usize>,
    /// Where it was in the source.
    pub pointer: String,
    /// Which document.
    pub source: Option<String>,
}

/// Everything to import into one scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ScopePlan {
    /// `None` = shared.
    pub agent: Option<String>,
    /// Valid profiles, by id (a later duplicate replaces an earlier one).
    pub profiles: BTreeMap<String, PlannedProfile>,
    /// provider → order.
    pub orders: BTreeMap<String, PlannedOrder>,
    /// provider → (profile id, pointer, source).
    pub last_good: BTreeMap<String, (String, String, Option<String>)>,
    /// profile id → usage state (usage belongs to the credential, not the scope).
    pub usage: BTreeMap<String, Usage>,
}

/// The whole import: per scope (shared first), with warnings and errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportPlan {
    /// The format read.
    pub format: Format,
    /// Shared scope first, then agents by id.
    pub scopes: Vec<ScopePlan>,
    /// Normalisations and dropped parts.
    pub warnings: Vec<ImportWarning>,
    /// Rejected entries.
    pub errors: Vec<EntryError>,
}

struct Diag<'a> {
    source: Option<String>,
    warnings: &'a mut Vec<ImportWarning>,
    errors: &'a mut Vec<EntryError>,
}

impl Diag<'_> {
    fn warn(&mut self, pointer: &str, kind: &str, message: impl Into<String>) {
        self.warnings.push(ImportWarning {
            pointer: pointer.to_string(),
            kind: kind.to_string(),
            message: message.into(),
            source: self.source.clone(),
        });
    }
    fn error(&mut self, mut e: EntryError) {
        e.source = self.source.clone();
        self.errors.push(e);
    }
}

pub(super) fn entry_error(pointer: &str, kind: &str, message: impl Into<String>) -> EntryError {
    let valid_types = matches!(kind, "invalid_type" | "invalid_profile")
        .then(|| VALID_TYPES.iter().map(|s| s.to_string()).collect());
    EntryError {
        pointer: pointer.to_string(),
        kind: kind.to_string(),
        message: message.into(),
        valid_types,
        source: None,
    }
}

/// Builds the import plan of `loaded` with the store's provider `aliases`.
pub(crate) fn plan(loaded: &Loaded, aliases: &Aliases) -> ImportPlan {
    let mut warnings = loaded.warnings.clone();
    let mut errors = loaded.errors.clone();
    let mut scopes: BTreeMap<Option<String>, ScopePlan> = BTreeMap::new();
    // Config orders fill in last, whatever the piece order.
    let mut pieces: Vec<&Piece> = loaded.pieces.iter().collect();
    pieces.sort_by_key(|p| match p.kind {
        PieceKind::ConfigOrder => 2,
        PieceKind::FlatFill => 1,
        _ => 0,
    });
    for piece in pieces {
        let scope = scopes
            .entry(piece.agent.clone())
            .or_insert_with(|| ScopePlan {
                agent: piece.agent.clone(),
                ..Default::default()
            });
        let mut d = Diag {
            source: piece.source.clone(),
            warnings: &mut warnings,
            errors: &mut errors,
        };
        match piece.kind {
            PieceKind::Store | PieceKind::State => {
                let Some(o) = piece.doc.as_object() else {
                    d.warn("", "source_skipped", "not a JSON object; skipped");
                    continue;
                };
                if piece.kind == PieceKind::Store {
                    match o.get("profiles") {
                        Some(Value::Object(profiles)) => {
                            for (key, v) in profiles {
                                let ptr = format!("/profiles/{}", escape_pointer(key));
                                entry(scope, &mut d, key, v, &ptr, None, piece.strict, aliases);
                            }
                        }
                        None | Some(Value::Null) => {}
                        Some(_) => d.error(entry_error(
                            "/profiles",
                            "non_object",
                            "`profiles` must be an object of id → profile",
                        )),
                    }
                }
                if let Some(v) = o.get("order") {
                    orders(scope, &mut d, v, "/order", false, aliases);
                }
                if let Some(v) = o.get("lastGood") {
                    last_good(scope, &mut d, v, aliases);
                }
                if let Some(v) = o.get("usageStats") {
                    usage_stats(scope, &mut d, v, aliases);
                }
            }
            PieceKind::Flat | PieceKind::FlatFill => {
                let Some(o) = piece.doc.as_object() else {
                    d.warn("", "source_skipped", "not a JSON object; skipped");
                    continue;
                };
                for (key, v) in o {
                    let ptr = format!("/{}", escape_pointer(key));
                    match ids::normalize_provider(key, aliases) {
                        Ok(p) => {
                            let id = format!("{p}:default");
                            if piece.kind == PieceKind::FlatFill && scope.profiles.contains_key(&id)
                            {
                                d.warn(
                                    &ptr,
                                    "legacy_skipped",
                                    format!("`{id}` is already in the store; the legacy entry was not imported (as OpenClaw's doctor does)"),
                                );
                                continue;
                            }
                            entry(scope, &mut d, &id, v, &ptr, Some(&p), false, aliases);
                        }
                        Err(e) => d.error(entry_error(&ptr, "invalid_profile", e.to_string())),
                    }
                }
            }
            PieceKind::ConfigOrder => orders(scope, &mut d, &piece.doc, "", true, aliases),
            PieceKind::ConfigProfiles
            | PieceKind::SecretStore
            | PieceKind::SecretProviders
            | PieceKind::ConfigModes => {}
        }
    }
    ImportPlan {
        format: loaded.format,
        scopes: scopes.into_values().collect(),
        warnings,
        errors,
    }
}

/// Normalises, checks and validates one profile entry; records it or its error.
#[allow(clippy::too_many_arguments)]
fn entry(
    scope: &mut ScopePlan,
    d: &mut Diag<'_>,
    key: &str,
    v: &Value,
    ptr: &str,
    flat_provider: Option<&str>,
    strict: bool,
    aliases: &Aliases,
) {
    match normalize_entry(key, v, ptr, flat_provider, strict) {
        Ok((obj, notes, dropped, ref_wins)) => {
            match validate_profile(&Value::Object(obj), ptr, aliases) {
                Ok(profile) => {
                    if !notes.is_empty() {
                        d.warn(ptr, "normalised", notes.join("; "));
                    }
                    for f in ref_wins {
                        d.warn(
                        &format!("{ptr}/{f}"),
                        "literal_dropped",
                        format!("both `{f}` and `{f}Ref` are set: the ref is kept and the literal `{f}` was not imported (as OpenClaw does)"),
                    );
                    }
                    for f in dropped {
                        d.warn(
                            &format!("{ptr}/{}", escape_pointer(&f)),
                            "field_dropped",
                            format!("field `{f}` is not part of a modelauth profile of this type; it was not imported"),
                        );
                    }
                    scope.profiles.insert(
                        profile.id.clone(),
                        PlannedProfile {
                            profile,
                            pointer: ptr.to_string(),
                        },
                    );
                }
                Err(e) => {
                    let data = e.data();
                    let pointer = data["pointer"].as_str().unwrap_or(ptr).to_string();
                    let mut ee = entry_error(&pointer, e.kind.as_str(), e.message.clone());
                    if e.kind != ErrorKind::InvalidProfile {
                        ee.valid_types = None;
                    }
                    if let Some(h) = e.hint {
                        ee.message = format!("{} ({h})", ee.message);
                    }
                    d.error(ee);
                }
            }
        }
        Err(e) => d.error(e),
    }
}

fn normalize_ids(
    d: &mut Diag<'_>,
    v: &Value,
    ptr: &str,
    aliases: &Aliases,
) -> Option<(Vec<String>, Vec<usize>)> {
    let Value::Array(list) = v else {
        d.warn(
            ptr,
            "order_entry_dropped",
            "an order is a list of profile ids; dropped",
        );
        return None;
    };
    let mut out: Vec<String> = vec![];
    let mut idx = vec![];
    for (i, x) in list.iter().enumerate() {
        let p = format!("{ptr}/{i}");
        match x.as_str().map(|s| ids::normalize_profile_id(s, aliases)) {
            Some(Ok((id, _))) => {
                if !out.contains(&id) {
                    out.push(id);
                    idx.push(i);
                }
            }
            Some(Err(e)) => d.warn(&p, "order_entry_dropped", e.to_string()),
            None => d.warn(&p, "order_entry_dropped", "not a profile id string"),
        }
    }
    Some((out, idx))
}

fn orders(
    scope: &mut ScopePlan,
    d: &mut Diag<'_>,
    v: &Value,
    base: &str,
    fill_only: bool,
    aliases: &Aliases,
) {
    let Value::Object(o) = v else {
        if !v.is_null() {
            d.warn(
                base,
                "order_entry_dropped",
                "`order` must be an object of provider → ids",
            );
        }
        return;
    };
    for (prov, list) in o {
        let ptr = format!("{base}/{}", escape_pointer(prov));
        let provider = match ids::normalize_provider(prov, aliases) {
            Ok(p) => p,
            Err(e) => {
                d.warn(&ptr, "order_entry_dropped", e.to_string());
                continue;
            }
        };
        let Some((ids, indexes)) = normalize_ids(d, list, &ptr, aliases) else {
            continue;
        };
        if fill_only {
            if let Some(existing) = scope.orders.get(&provider) {
                if existing.ids != ids {
                    d.warn(
                        &ptr,
                        "order_entry_dropped",
                        format!("the config order for {provider} differs from the stored order, which wins"),
                    );
                }
                continue;
            }
        }
        scope.orders.insert(
            provider,
            PlannedOrder {
                ids,
                indexes,
                pointer: ptr,
                source: d.source.clone(),
            },
        );
    }
}

fn last_good(scope: &mut ScopePlan, d: &mut Diag<'_>, v: &Value, aliases: &Aliases) {
    let Some(o) = v.as_object() else {
        return;
    };
    for (prov, id) in o {
        let ptr = format!("/lastGood/{}", escape_pointer(prov));
        let provider = ids::normalize_provider(prov, aliases);
        let id = id.as_str().map(|s| ids::normalize_profile_id(s, aliases));
        match (provider, id) {
            (Ok(p), Some(Ok((id, _)))) => {
                scope.last_good.insert(p, (id, ptr, d.source.clone()));
            }
            _ => d.warn(
                &ptr,
                "last_good_dropped",
                "not a provider → profile id entry; dropped",
            ),
        }
    }
}

fn usage_stats(scope: &mut ScopePlan, d: &mut Diag<'_>, v: &Value, aliases: &Aliases) {
    let Some(o) = v.as_object() else {
        return;
    };
    for (id, u) in o {
        let ptr = format!("/usageStats/{}", escape_pointer(id));
        let Ok((id, _)) = ids::normalize_profile_id(id, aliases) else {
            d.warn(&ptr, "usage_dropped", "not a valid profile id; dropped");
            continue;
        };
        match usage_from_openclaw(u) {
            Ok(u) => {
                scope.usage.insert(id, u);
            }
            Err(field) => d.warn(
                &format!("{ptr}/{field}"),
                "usage_dropped",
                format!("`{field}` is not valid (times are integer ms since the epoch); the usage entry was not imported"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openclaw::import::load_json;
    use serde_json::json;

    fn plan_of(doc: Value) -> ImportPlan {
        let l = load_json(doc, Format::Auto, None).unwrap();
        plan(&l, &Aliases::new())
    }

    #[test]
    fn invalid_entries_carry_openclaws_codes_and_pointers() {
        let p = plan_of(json!({"version": 1, "profiles": {
            "a:no-type": {"provider": "a"},
            "a:bearer": {"provider": "a", "type": "bearer", "token": "t-secret"},
            "a:str": "broken",
            "a:arr": ["x"],
            "a:no-provider": {"type": "api_key", "key": "k"},
            "sk-abcdef:x": {"provider": "sk-abcdef", "type": "api_key", "key": "k"},
            "a:good": {"provider": "a", "type": "api_key", "key": "k"}
        }}));
        let kinds: BTreeMap<String, String> = p
            .errors
            .iter()
            .map(|e| (e.pointer.clone(), e.kind.clone()))
            .collect();
        assert_eq!(kinds["/profiles/a:no-type"], "invalid_type");
        assert_eq!(kinds["/profiles/a:bearer"], "invalid_type");
        assert_eq!(kinds["/profiles/a:str"], "non_object");
        assert_eq!(kinds["/profiles/a:arr"], "non_object");
        assert_eq!(kinds["/profiles/a:no-provider"], "missing_provider");
        assert_eq!(kinds["/profiles/sk-abcdef:x"], "invalid_profile");
        assert_eq!(p.scopes[0].profiles.len(), 1);
        assert!(!serde_json::to_string(&p.errors)
            .unwrap()
            .contains("t-secret"));
    }

    #[test]
    fn flat_maps_become_provider_default() {
        let p = plan_of(json!({"openrouter": {"apiKey": "k"},
            "anthropic": {"type": "oauth", "access": "a", "refresh": "r", "expires": 5}}));
        assert_eq!(p.format, Format::OpenclawFlat);
        let ids: Vec<_> = p.scopes[0].profiles.keys().cloned().collect();
        assert_eq!(ids, ["anthropic:default", "openrouter:default"]);
    }

    #[test]
    fn config_order_only_fills_in() {
        let l = Loaded {
            format: Format::OpenclawState,
            pieces: vec![
                Piece {
                    agent: None,
                    kind: PieceKind::ConfigOrder,
                    doc: json!({"x": ["x:b"], "y": ["y:a"]}),
                    source: None,
                    strict: false,
                },
                Piece {
                    agent: None,
                    kind: PieceKind::State,
                    doc: json!({"version": 1, "order": {"x": ["x:a"]}}),
                    source: None,
                    strict: false,
                },
            ],
            warnings: vec![],
            errors: vec![],
        };
        let p = plan(&l, &Aliases::new());
        assert_eq!(p.scopes[0].orders["x"].ids, ["x:a"]);
        assert_eq!(p.scopes[0].orders["y"].ids, ["y:a"]);
    }
}
