//! *(r3)* The parts of `store.import` beyond profiles, orders, lastGood and usage:
//! secret providers and settings, brought only with `includeSettings: true` and named one
//! by one in every answer (protocol §11), and the named secrets that imported `store`
//! SecretRefs need (protocol §12). Applied inside the import's one transaction.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::core::error::Result;
use crate::core::secret_value::Secret;
use crate::handlers::providers::{body_revision, body_without_revision};
use crate::openclaw::import::{
    ImportAction, ImportPlan, ImportWarning, Loaded, OrderAction, PieceKind, ProfileAction,
};
use crate::openclaw::settings_import::{self as si, provider_summary, SecretAction, SettingAction};
use crate::store::Tx;

/// What a source brings besides profiles.
#[derive(Default)]
pub(super) struct Extras {
    /// Secret providers: name → (modelauth body, source label).
    providers: BTreeMap<String, (Value, Option<String>)>,
    /// The `store` refs of the planned profiles → (profile id, pointer) of each use.
    refs: BTreeMap<(String, String), Vec<(String, String)>>,
    /// The values of the referenced entries found in the source.
    named: BTreeMap<(String, String), Secret>,
}

/// Collects the extras of `loaded` for `plan`; conversion warnings go into the plan.
pub(super) fn plan_extras(loaded: &Loaded, plan: &mut ImportPlan) -> Extras {
    let mut x = Extras::default();
    let mut entries = Map::new();
    for piece in &loaded.pieces {
        match piece.kind {
            PieceKind::SecretProviders => {
                let src = piece.source.clone().unwrap_or_default();
                let (providers, warnings) = si::convert_openclaw_providers(&piece.doc, &src);
                plan.warnings.extend(warnings);
                for (name, body) in providers {
                    x.providers.insert(name, (body, piece.source.clone()));
                }
            }
            PieceKind::SecretStore => {
                if let Some(o) = piece.doc.as_object() {
                    entries.extend(o.clone());
                }
            }
            _ => {}
        }
    }
    x.refs = si::store_refs(plan);
    x.named = si::referenced_entries(&x.refs, &entries);
    x
}

/// The warnings of `store.validate` for the extras, judged on the source alone: every
/// `store` ref whose entry the source does not hold.
pub(super) fn validate_warnings(x: &Extras) -> Vec<ImportWarning> {
    x.refs
        .iter()
        .filter(|(k, _)| !x.named.contains_key(*k))
        .map(|((p, id), users)| si::missing_entry_warning(p, id, users))
        .collect()
}

/// The settings actions of `store.validate`: each secret provider, as `store.import`
/// without `includeSettings` would name it.
pub(super) fn validate_settings(x: &Extras) -> Vec<SettingAction> {
    x.providers
        .iter()
        .map(|(name, (body, source))| SettingAction {
            pointer: format!("/settings/secretProviders/{name}"),
            kind: "secretProvider".into(),
            name: name.clone(),
            action: ImportAction::Skipped,
            reason: Some("includeSettings".into()),
            summary: provider_summary(body),
            source: source.clone(),
        })
        .collect()
}

fn not_included_warning(a: &SettingAction) -> ImportWarning {
    ImportWarning {
        pointer: a.pointer.clone(),
        kind: "setting_not_imported".into(),
        message: format!(
            "{} `{}` ({}) was not imported: settings and providers come only with includeSettings: true, after a person has checked them",
            a.kind, a.name, a.summary
        ),
        source: a.source.clone(),
    }
}

/// Applies the extras on `c` (with `write` false: only says what would happen).
pub(super) fn apply_extras(
    c: &dyn Tx,
    x: &Extras,
    include_settings: bool,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<SettingAction>, Vec<SecretAction>, Vec<ImportWarning>)> {
    let mut warnings = vec![];
    let mut settings = vec![];
    let stored = c.setting("secretProviders")?;
    let mut merged = stored
        .clone()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    for (name, (body, source)) in &x.providers {
        let (action, reason) = if !include_settings {
            (ImportAction::Skipped, Some("includeSettings"))
        } else {
            match merged.get(name) {
                None => (ImportAction::Created, None),
                Some(have) if have == body => (ImportAction::Unchanged, None),
                Some(_) if replace => (ImportAction::Updated, None),
                Some(_) => (ImportAction::Skipped, Some("exists")),
            }
        };
        if action.writes() {
            merged.insert(name.clone(), body.clone());
        }
        let a = SettingAction {
            pointer: format!("/settings/secretProviders/{name}"),
            kind: "secretProvider".into(),
            name: name.clone(),
            action,
            reason: reason.map(str::to_string),
            summary: provider_summary(body),
            source: source.clone(),
        };
        if reason == Some("includeSettings") {
            warnings.push(not_included_warning(&a));
        }
        settings.push(a);
    }
    let merged = Value::Object(merged);
    if write && stored.as_ref() != Some(&merged) && settings.iter().any(|a| a.reason.is_none()) {
        c.put_setting("secretProviders", &merged)?;
    }
    let secrets = apply_named(c, x, replace, write, now, &mut warnings)?;
    Ok((settings, secrets, warnings))
}

fn apply_named(
    c: &dyn Tx,
    x: &Extras,
    replace: bool,
    write: bool,
    now: i64,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<SecretAction>> {
    let mut out = vec![];
    for ((provider, id), users) in &x.refs {
        let have = c.named_secret(provider, id)?;
        let (action, reason) = match (x.named.get(&(provider.clone(), id.clone())), &have) {
            (None, Some(_)) => (ImportAction::Unchanged, None),
            (None, None) => {
                warnings.push(si::missing_entry_warning(provider, id, users));
                (ImportAction::Missing, None)
            }
            (Some(v), None) => {
                if write {
                    c.put_named_secret(provider, id, v, now)?;
                }
                (ImportAction::Created, None)
            }
            (Some(v), Some(h)) if v == h => (ImportAction::Unchanged, None),
            (Some(v), Some(_)) if replace => {
                if write {
                    c.put_named_secret(provider, id, v, now)?;
                }
                (ImportAction::Updated, None)
            }
            (Some(_), Some(_)) => (ImportAction::Skipped, Some("exists".to_string())),
        };
        out.push(SecretAction {
            provider: provider.clone(),
            id: id.clone(),
            action,
            reason,
            profiles: users.iter().map(|(p, _)| p.clone()).collect(),
        });
    }
    Ok(out)
}

/// A modelauth store file's providers, settings and named secrets into `dst`: providers
/// and settings only with `include_settings` (each named either way), named secrets
/// always (the copied profiles' `store` refs need them; kept when different, unless
/// `replace`). A source store older than named secrets has none.
pub(super) fn copy_store_extras(
    src: &dyn Tx,
    dst: &dyn Tx,
    include_settings: bool,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<SettingAction>, Vec<SecretAction>, Vec<ImportWarning>)> {
    let mut warnings = vec![];
    let settings = copy_store_settings(src, dst, include_settings, replace, write, &mut warnings)?;
    let secrets = copy_named_secrets(src, dst, replace, write, now)?;
    Ok((settings, secrets, warnings))
}

/// One provider registration or setting of a source store: (kind, name, pointer, value,
/// the value `dst` holds).
type StoreItem = (String, String, String, Value, Option<Value>);

/// The providers and settings of a source store into `dst` (only with `include_settings`;
/// each one named either way, with a warning when it is not imported).
fn copy_store_settings(
    src: &dyn Tx,
    dst: &dyn Tx,
    include_settings: bool,
    replace: bool,
    write: bool,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<SettingAction>> {
    let mut settings = vec![];
    let dst_providers: BTreeMap<String, Value> = dst.providers()?.into_iter().collect();
    let mut items: Vec<StoreItem> = vec![];
    // A provider's `revision` is this store's own count: compared without it, and a
    // written registration gets this store's next one.
    for (id, body) in src.providers()? {
        let have = dst_providers.get(&id).map(body_without_revision);
        let pointer = format!("/providers/{id}");
        items.push((
            "provider".into(),
            id,
            pointer,
            body_without_revision(&body),
            have,
        ));
    }
    for (k, v) in src.settings()? {
        let have = dst.setting(&k)?;
        let pointer = format!("/settings/{k}");
        items.push(("setting".into(), k, pointer, v, have));
    }
    for (kind, name, pointer, body, have) in items {
        let shadow = (kind == "provider")
            .then(|| provider_shadow(&name, &body, &dst_providers))
            .flatten();
        let (action, reason) = if !include_settings {
            (ImportAction::Skipped, Some("includeSettings"))
        } else {
            match (&have, &shadow) {
                (Some(h), _) if *h == body => (ImportAction::Unchanged, None),
                (None, Some(_)) if replace => (ImportAction::Created, None),
                (None, Some(sh)) => (ImportAction::Skipped, Some(sh.reason)),
                (None, None) => (ImportAction::Created, None),
                (Some(_), _) if replace => (ImportAction::Updated, None),
                (Some(_), _) => (ImportAction::Skipped, Some("exists")),
            }
        };
        if let Some(sh) = &shadow {
            warnings.push(ImportWarning {
                pointer: pointer.clone(),
                kind: sh.reason.into(),
                message: if action.writes() {
                    format!("provider `{name}` {} (replace: true)", sh.what)
                } else if include_settings {
                    format!(
                        "provider `{name}` was not imported: it {}; give replace: true to take it anyway",
                        sh.what
                    )
                } else {
                    format!(
                        "provider `{name}` {}: with includeSettings it is skipped unless replace: true",
                        sh.what
                    )
                },
                source: None,
            });
        }
        if write && action.writes() {
            if kind == "provider" {
                let mut body = body.clone();
                let next = dst_providers.get(&name).map_or(1, |b| body_revision(b) + 1);
                if let Some(o) = body.as_object_mut() {
                    o.insert("revision".into(), next.into());
                }
                dst.put_provider(&name, &body)?;
            } else {
                dst.put_setting(&name, &body)?;
            }
        }
        let a = SettingAction {
            summary: setting_summary(&kind, &name, &body),
            pointer,
            kind,
            name,
            action,
            reason: reason.map(str::to_string),
            source: None,
        };
        if reason == Some("includeSettings") {
            warnings.push(not_included_warning(&a));
        }
        settings.push(a);
    }
    Ok(settings)
}

/// How a provider registration of an import source would change what an existing provider
/// id means in `dst` (PROTOCOL §11 r3: an import never shadows a built-in or an existing
/// provider without saying so).
struct Shadow {
    /// The `reason` of the action and the `kind` of the warning.
    reason: &'static str,
    /// What it would take over, for the message.
    what: String,
}

/// Whether registering `name` with `body` would replace a built-in provider that `dst` does
/// not register (its OAuth client and token endpoint), or would make one of its aliases
/// take over a provider id that already means something in `dst` (a built-in, another
/// registration, or another registration's alias). Pure.
fn provider_shadow(name: &str, body: &Value, dst: &BTreeMap<String, Value>) -> Option<Shadow> {
    let builtin = |id: &str| crate::handlers::providers::builtin_oauth(id).is_some();
    if !dst.contains_key(name) && builtin(name) {
        return Some(Shadow {
            reason: "provider_shadows_builtin",
            what: format!("would replace the built-in provider `{name}` and its token endpoint"),
        });
    }
    let taken = |alias: &str| {
        alias != name
            && (builtin(alias)
                || dst.contains_key(alias)
                || dst.iter().any(|(id, b)| {
                    id != name
                        && b.get("aliases")
                            .and_then(Value::as_array)
                            .is_some_and(|l| l.iter().any(|a| a.as_str() == Some(alias)))
                }))
    };
    let aliases = body.get("aliases").and_then(Value::as_array)?;
    let hit = aliases
        .iter()
        .filter_map(Value::as_str)
        .find(|a| taken(a))?;
    Some(Shadow {
        reason: "alias_shadows_provider",
        what: format!("has the alias `{hit}`, which would take over provider `{hit}`"),
    })
}

/// What a copied provider registration or setting is, for a person to confirm: each
/// secret provider's one line for `secretProviders`, else the JSON value cut to at most
/// 200 bytes (at a character boundary).
fn setting_summary(kind: &str, name: &str, body: &Value) -> String {
    if kind == "setting" && name == "secretProviders" {
        return body
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(n, b)| format!("{n}: {}", provider_summary(b)))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
    }
    let mut s = body.to_string();
    let mut cut = s.len().min(200);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// The named secrets of a source store into `dst`: always (the copied profiles' `store`
/// refs need them), kept when different unless `replace`.
fn copy_named_secrets(
    src: &dyn Tx,
    dst: &dyn Tx,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<Vec<SecretAction>> {
    let mut secrets = vec![];
    for (provider, id, v) in src.named_secrets().unwrap_or_default() {
        let (action, reason) = match dst.named_secret(&provider, &id)? {
            None => (ImportAction::Created, None),
            Some(h) if h == v => (ImportAction::Unchanged, None),
            Some(_) if replace => (ImportAction::Updated, None),
            Some(_) => (ImportAction::Skipped, Some("exists".to_string())),
        };
        if write && action.writes() {
            dst.put_named_secret(&provider, &id, &v, now)?;
        }
        secrets.push(SecretAction {
            provider,
            id,
            action,
            reason,
            profiles: vec![],
        });
    }
    Ok(secrets)
}

/// A warning for each imported oauth profile whose tokens are OpenClaw's failed-refresh
/// fence ([`crate::core::fence`]): modelauth reports it `expired`, as OpenClaw does, and
/// names where the real tokens are (`credentials/oauth.json.migrated-*` of the state
/// directory, when there are such files).
pub(super) fn fence_warnings(plan: &ImportPlan, source: Option<&str>) -> Vec<ImportWarning> {
    use crate::core::fence::is_refresh_fence;
    use crate::core::profile::Credential;
    let mut out = vec![];
    let migrated = source.map(migrated_files).unwrap_or_default();
    for scope in &plan.scopes {
        for (id, pp) in &scope.profiles {
            let Credential::OAuth {
                access, refresh, ..
            } = &pp.profile.credential
            else {
                continue;
            };
            if !is_refresh_fence(access.expose()) && !is_refresh_fence(refresh.expose()) {
                continue;
            }
            let where_ = if migrated.is_empty() {
                "OpenClaw keeps the real tokens only in credentials/oauth.json.migrated-* of its state directory (none was found beside this source)".to_string()
            } else {
                format!(
                    "the real tokens survive only in {} (OpenClaw's copy from before the failed refresh); log in again, or import that file",
                    migrated.join(", ")
                )
            };
            out.push(ImportWarning {
                pointer: pp.pointer.clone(),
                kind: "refresh_fence".into(),
                message: format!(
                    "`{id}` holds OpenClaw's failed-refresh fence instead of tokens: it is `expired` here as in OpenClaw; {where_}"
                ),
                source: None,
            });
        }
    }
    out
}

/// `credentials/oauth.json.migrated-*` under a state directory (or beside a file), as
/// paths relative to it, sorted.
fn migrated_files(source: &str) -> Vec<String> {
    let p = std::path::Path::new(source);
    let dir = if p.is_dir() {
        p.join("credentials")
    } else {
        p.parent().map(|d| d.to_path_buf()).unwrap_or_default()
    };
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("oauth.json.migrated"))
                .map(|n| dir.join(n).display().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Re-import of a source already imported (issue 18): reads the marks `source` left, then
/// - with `sync`: removes what this source brought before and no longer holds — profiles
///   (with their lastGood entries and their places in the scope's orders) and orders —
///   reported as `removed` (reason `removed_in_source`);
/// - without it: keeps them, and warns (`stale_kept`) for each, and for each credential or
///   order of this source kept although the source now holds a different one;
///
/// Then (when writing) it marks everything this import brought.
#[allow(clippy::too_many_arguments)]
pub(super) fn reconcile(
    c: &dyn Tx,
    plan: &ImportPlan,
    profiles: &mut Vec<ProfileAction>,
    orders: &mut Vec<OrderAction>,
    source: &str,
    sync: bool,
    write: bool,
) -> Result<Vec<ImportWarning>> {
    let marks = c.import_marks(source)?;
    let marked: BTreeSet<Mark> = marks.iter().cloned().collect();
    let mut warnings = kept_although_differs(profiles, orders, &marked, source);
    let gone = Gone {
        c,
        source,
        sync,
        write,
    };
    gone.handle(plan, &marks, profiles, orders, &mut warnings)?;
    if write {
        mark_imported(c, profiles, orders, source)?;
    }
    Ok(warnings)
}

/// An import mark: `(scope, kind, key)` — scope `None` = shared, kind `profile` (key: the
/// profile id) or `order` (key: the provider).
type Mark = (Option<String>, String, String);

/// The scope of a result's `scope` name (`shared` = `None`).
fn scope_of(s: &str) -> Option<String> {
    (s != "shared").then(|| s.to_string())
}

/// The result's name of a scope (`None` = `shared`).
fn scope_name(a: &Option<String>) -> String {
    a.clone().unwrap_or_else(|| "shared".into())
}

/// A `stale_kept` warning about `source`.
fn stale(source: &str, message: String) -> ImportWarning {
    ImportWarning {
        pointer: String::new(),
        kind: "stale_kept".into(),
        message,
        source: Some(source.to_string()),
    }
}

/// `stale_kept` warnings for each profile or order of this source (in `marked`) kept
/// (`exists`) although the source now holds a different one.
fn kept_although_differs(
    profiles: &[ProfileAction],
    orders: &[OrderAction],
    marked: &BTreeSet<Mark>,
    source: &str,
) -> Vec<ImportWarning> {
    let mut warnings = vec![];
    for a in profiles
        .iter()
        .filter(|a| a.reason.as_deref() == Some("exists"))
    {
        let key = (
            scope_of(&a.scope),
            "profile".to_string(),
            a.profile_id.clone(),
        );
        if marked.contains(&key) {
            warnings.push(stale(
                source,
                format!(
                    "`{}` ({}) differs in the source since the last import; the stored credential was kept (replace: true or sync: true takes the source's)",
                    a.profile_id, a.scope
                ),
            ));
        }
    }
    for a in orders
        .iter()
        .filter(|a| a.reason.as_deref() == Some("exists"))
    {
        let key = (scope_of(&a.scope), "order".to_string(), a.provider.clone());
        if marked.contains(&key) {
            warnings.push(stale(
                source,
                format!(
                    "the {} order ({}) differs in the source since the last import; the stored order was kept (replace: true or sync: true takes the source's)",
                    a.provider, a.scope
                ),
            ));
        }
    }
    warnings
}

/// What [`reconcile`] does with what this source brought before and no longer holds.
struct Gone<'a> {
    c: &'a dyn Tx,
    source: &'a str,
    sync: bool,
    write: bool,
}

impl Gone<'_> {
    /// Removes (with `sync`) or warns about (without) each mark whose profile or order
    /// the plan no longer holds.
    fn handle(
        &self,
        plan: &ImportPlan,
        marks: &[Mark],
        profiles: &mut Vec<ProfileAction>,
        orders: &mut Vec<OrderAction>,
        warnings: &mut Vec<ImportWarning>,
    ) -> Result<()> {
        let mut planned_profiles = BTreeSet::new();
        let mut planned_orders = BTreeSet::new();
        for s in &plan.scopes {
            for id in s.profiles.keys() {
                planned_profiles.insert((s.agent.clone(), id.clone()));
            }
            for provider in s.orders.keys() {
                planned_orders.insert((s.agent.clone(), provider.clone()));
            }
        }
        for (scope, kind, key) in marks {
            let gone = match kind.as_str() {
                "profile" => !planned_profiles.contains(&(scope.clone(), key.clone())),
                "order" => !planned_orders.contains(&(scope.clone(), key.clone())),
                _ => false,
            };
            if !gone {
                continue;
            }
            if !self.sync {
                warnings.push(stale(
                    self.source,
                    format!(
                        "{kind} `{key}` ({}) came from this source and is no longer in it; kept here (sync: true removes it)",
                        scope_name(scope)
                    ),
                ));
                continue;
            }
            if kind == "profile" {
                self.remove_profile(scope, key)?;
                profiles.push(ProfileAction {
                    profile_id: key.clone(),
                    scope: scope_name(scope),
                    action: ImportAction::Removed,
                    reason: Some("removed_in_source".into()),
                });
            } else {
                if self.write {
                    self.c.clear_order(scope.as_deref(), key)?;
                    self.c.delete_import_mark(scope.as_deref(), kind, key)?;
                }
                orders.push(OrderAction {
                    provider: key.clone(),
                    scope: scope_name(scope),
                    order: vec![],
                    action: ImportAction::Removed,
                    reason: Some("removed_in_source".into()),
                });
            }
        }
        Ok(())
    }

    /// Removes profile `key` of `scope` (when writing): the profile, its lastGood entries,
    /// its places in the scope's orders and its mark.
    fn remove_profile(&self, scope: &Option<String>, key: &str) -> Result<()> {
        if !self.write {
            return Ok(());
        }
        let (c, sa) = (self.c, scope.as_deref());
        c.delete_profile(sa, key)?;
        c.clear_last_good_for(sa, key)?;
        for (provider, ids) in c.scope_orders(sa)? {
            if ids.iter().any(|x| x == key) {
                let kept: Vec<String> = ids.into_iter().filter(|x| x != key).collect();
                c.set_order(sa, &provider, &kept, crate::handlers::now_ms())?;
            }
        }
        c.delete_import_mark(sa, "profile", key)?;
        Ok(())
    }
}

/// Marks everything this import brought (created, updated or unchanged; not orders it
/// only appended to) as coming from `source`.
fn mark_imported(
    c: &dyn Tx,
    profiles: &[ProfileAction],
    orders: &[OrderAction],
    source: &str,
) -> Result<()> {
    for a in profiles {
        if matches!(
            a.action,
            ImportAction::Created | ImportAction::Updated | ImportAction::Unchanged
        ) {
            c.set_import_mark(
                scope_of(&a.scope).as_deref(),
                "profile",
                &a.profile_id,
                source,
            )?;
        }
    }
    for a in orders {
        if matches!(
            a.action,
            ImportAction::Created | ImportAction::Updated | ImportAction::Unchanged
        ) && a.reason.as_deref() != Some("appended")
        {
            c.set_import_mark(scope_of(&a.scope).as_deref(), "order", &a.provider, source)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before: the summary of a copied setting was cut at byte 200 with `String::truncate`,
    /// which panics inside a multi-byte character (a setting value with non-ASCII text).
    #[test]
    fn a_long_setting_summary_is_cut_at_a_character_boundary() {
        let body = Value::String(format!("{}{}", "a".repeat(198), "é".repeat(10)));
        let s = setting_summary("setting", "note", &body);
        assert!(s.len() <= 200, "{}", s.len());
        assert!(s.starts_with("\"aaa"));
        let short = setting_summary("setting", "envFallback", &Value::from("never"));
        assert_eq!(short, "\"never\"");
    }
}
