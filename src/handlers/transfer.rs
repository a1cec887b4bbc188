//! The shell of `store.import`, `store.export` and `store.validate` (protocol §3): reads
//! sources, then applies the pure [`crate::openclaw::import`] plan in one store transaction.
//!
//! Sources are only read: JSON files with a plain read, SQLite files opened with
//! `file:PATH?mode=ro&immutable=1` (`SQLITE_OPEN_READ_ONLY | SQLITE_OPEN_URI`), so no lock is
//! taken and no `-wal` / `-shm` file is created next to them, even in a read-only directory.
//! When a source has a non-empty `-wal` (OpenClaw's gateway is running), the database and
//! its `-wal` are copied with plain reads into a private temporary directory and the copy
//! is opened, so committed writes still in the WAL are imported while the source files stay
//! byte-identical and no checkpoint runs on them.
//! A dry run or a validation runs in a read transaction: the store is not even created.

pub use super::sources::fuzz_import_source;
use super::sources::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::core::error::{Result, RpcError};
use crate::core::ids;
use crate::core::usage::Usage;
use crate::handlers::{load_aliases, now_ms, App};
use crate::openclaw::export::{self, ExportParams, ExportResult};
use crate::openclaw::import::{
    self, Format, ImportParams, ImportPlan, ImportResult, ImportWarning, Loaded, OrderAction,
    PieceKind, ProfileAction, ValidateParams, ValidateResult,
};
use crate::store::Tx;

/// Adds the orders OpenClaw's walk takes from openclaw.json `auth.profiles`
/// ([`import::config_profile_orders`]).
fn with_config_orders(plan: &mut ImportPlan, loaded: &Loaded, aliases: &crate::core::ids::Aliases) {
    let mut skipped: Vec<String> = vec![];
    for piece in loaded
        .pieces
        .iter()
        .filter(|p| p.kind == PieceKind::ConfigModes)
    {
        if let Some(modes) = piece.doc.as_object() {
            skipped.extend(import::mode_mismatches(plan, modes, aliases));
        }
    }
    for piece in loaded
        .pieces
        .iter()
        .filter(|p| p.kind == PieceKind::ConfigProfiles)
    {
        let ids: Vec<String> = piece
            .doc
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|raw| {
                ids::normalize_profile_id(raw, aliases)
                    .map(|(id, _)| !skipped.contains(&id))
                    .unwrap_or(true)
            })
            .collect();
        import::config_profile_orders(plan, &ids, now_ms(), aliases);
    }
}

fn scope_name(agent: Option<&str>) -> String {
    agent.unwrap_or("shared").to_string()
}

fn provider_of(id: &str) -> &str {
    id.split_once(':').map(|(p, _)| p).unwrap_or("")
}

/// Applies `plan` on `c` (inside the caller's transaction). With `write` false nothing is
/// written and the result says what would happen. Returns `(profiles, orders, warnings)`.
fn apply(
    c: &dyn Tx,
    plan: &ImportPlan,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<ProfileAction>, Vec<OrderAction>, Vec<ImportWarning>)> {
    let mut actions = vec![];
    let mut order_actions = vec![];
    let mut warnings = vec![];
    let shared_planned: BTreeSet<&str> = plan
        .scopes
        .iter()
        .filter(|s| s.agent.is_none())
        .flat_map(|s| s.profiles.keys().map(String::as_str))
        .collect();
    let all_planned: BTreeSet<&str> = plan
        .scopes
        .iter()
        .flat_map(|s| s.profiles.keys().map(String::as_str))
        .collect();
    // The shared orders as this import leaves them (also in a dry run).
    let mut shared_final: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for scope in &plan.scopes {
        let a = scope.agent.as_deref();
        // 1. Profiles.
        let mut imported: Vec<&str> = vec![];
        for (id, pp) in &scope.profiles {
            let existing = c.scope_profile(a, id)?;
            let (action, reason) = match &existing {
                None => ("created", None),
                Some(e) if e.profile == pp.profile => ("unchanged", None),
                Some(_) if replace => ("updated", None),
                Some(_) => ("skipped", Some("exists".to_string())),
            };
            if matches!(action, "created" | "updated") {
                imported.push(id);
                if write {
                    c.upsert_profile(a, &pp.profile, now)?;
                    match scope.usage.get(id) {
                        Some(u) => c.put_usage(id, u)?,
                        None if action == "updated" => {
                            // Replacing a credential clears its cooldowns and failure counts.
                            let u = Usage {
                                last_used: c.usage(id)?.last_used,
                                ..Default::default()
                            };
                            c.put_usage(id, &u)?;
                        }
                        None => {}
                    }
                }
            }
            actions.push(ProfileAction {
                profile_id: id.clone(),
                scope: scope_name(a),
                action: action.into(),
                reason,
            });
        }
        // Ids the scope's view holds after the import.
        let mut visible: BTreeSet<String> = c
            .view_profiles(a, None)?
            .into_iter()
            .map(|s| s.profile.id)
            .collect();
        visible.extend(scope.profiles.keys().cloned());
        if a.is_some() {
            visible.extend(shared_planned.iter().map(|s| s.to_string()));
        }
        let warn = |w: &mut Vec<ImportWarning>, ptr: &str, src: &Option<String>, msg: String| {
            w.push(ImportWarning {
                pointer: ptr.to_string(),
                kind: "order_entry_dropped".into(),
                message: msg,
                source: src.clone(),
            })
        };
        // 2. Orders.
        let mut ordered: BTreeSet<&str> = BTreeSet::new();
        for (provider, po) in &scope.orders {
            ordered.insert(provider);
            let mut ids = vec![];
            let mut named = false;
            for (k, id) in po.ids.iter().enumerate() {
                let ptr = match po.indexes.get(k) {
                    Some(i) => format!("{}/{i}", po.pointer),
                    None => po.pointer.clone(),
                };
                if provider_of(id) != provider {
                    warn(
                        &mut warnings,
                        &ptr,
                        &po.source,
                        format!("`{id}` is not a {provider} profile; left out of the order"),
                    );
                } else if visible.contains(id) {
                    named = true;
                    ids.push(id.clone());
                } else if a.is_none()
                    && (all_planned.contains(id.as_str()) || c.profile_id_exists_anywhere(id)?)
                {
                    // An agent's own profile in the shared (config) order, as OpenClaw writes
                    // it for `paste-api-key --agent`: that agent's walk uses it from here.
                    named = true;
                    ids.push(id.clone());
                } else {
                    // OpenClaw keeps such an entry and skips it when walking; so does modelauth.
                    warnings.push(ImportWarning {
                        pointer: ptr,
                        kind: "order_entry_unknown".into(),
                        message: format!(
                            "`{id}` names no profile; kept in the {provider} order, where the walk skips it until such a profile exists"
                        ),
                        source: po.source.clone(),
                    });
                    ids.push(id.clone());
                }
            }
            if po.ids.is_empty() {
                // OpenClaw: an explicit empty order (`auth.order.<provider> = []`) disables the
                // provider; so does an empty explicit order here (the walk excludes every
                // profile).
                warnings.push(ImportWarning {
                    pointer: po.pointer.clone(),
                    kind: "order_empty".into(),
                    message: format!(
                        "the {provider} order is explicitly empty: the provider is disabled, as in OpenClaw (order.clear enables it again)"
                    ),
                    source: po.source.clone(),
                });
                named = true;
            }
            if !named {
                warn(
                    &mut warnings,
                    &po.pointer,
                    &po.source,
                    format!("no id of the {provider} order is stored; the order was not imported"),
                );
                continue;
            }
            let existing = c.scope_order(a, provider)?.map(|(ids, _)| ids);
            let (final_ids, action, reason) = match existing {
                None => (ids, "created", None),
                Some(e) if e == ids => (ids, "unchanged", None),
                Some(_) if replace => (ids, "updated", None),
                Some(mut e) => {
                    let before = e.len();
                    for id in &imported {
                        if provider_of(id) == provider && !e.iter().any(|x| x == id) {
                            e.push(id.to_string());
                        }
                    }
                    if e.len() > before {
                        (e, "updated", Some("appended".to_string()))
                    } else {
                        (e, "skipped", Some("exists".to_string()))
                    }
                }
            };
            if write && action != "unchanged" && action != "skipped" {
                c.set_order(a, provider, &final_ids, now)?;
            }
            if a.is_none() {
                shared_final.insert(provider.clone(), final_ids.clone());
            }
            order_actions.push(OrderAction {
                provider: provider.clone(),
                scope: scope_name(a),
                order: final_ids,
                action: action.into(),
                reason,
            });
        }
        // Routability (as profiles.put): an imported profile missing from the scope's own
        // explicit order of its provider is appended to it.
        let mut by_provider: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in &imported {
            by_provider.entry(provider_of(id)).or_default().push(id);
        }
        for (provider, new_ids) in by_provider {
            if ordered.contains(provider) {
                continue;
            }
            let own = c.scope_order(a, provider)?.map(|(ids, _)| ids);
            let base = match (&own, a) {
                (Some(ids), _) => Some(ids.clone()),
                // OpenClaw walks the shared (config) order for an agent without its own: a
                // profile the agent's store holds but that order does not name is never
                // tried there, so no agent order is made up to append it to.
                (None, Some(agent)) if plan.format == Format::OpenclawState => {
                    let shared = shared_final
                        .get(provider)
                        .cloned()
                        .or(c.scope_order(None, provider)?.map(|(ids, _)| ids));
                    if let Some(shared) = shared {
                        for id in new_ids.iter().filter(|id| !shared.iter().any(|x| x == *id)) {
                            warnings.push(ImportWarning {
                                pointer: String::new(),
                                kind: "not_in_order".into(),
                                message: format!(
                                    "`{id}` of agent {agent} is not in the {provider} order that agent walks (openclaw.json auth.order); OpenClaw never tries it, and neither does modelauth (add it with order.set)"
                                ),
                                source: None,
                            });
                        }
                    }
                    None
                }
                (None, Some(_)) => match shared_final.get(provider) {
                    Some(ids) => Some(ids.clone()),
                    None => c.scope_order(None, provider)?.map(|(ids, _)| ids),
                },
                (None, None) => None,
            };
            if let Some(mut ids) = base {
                let before = ids.clone();
                for id in new_ids {
                    if !ids.iter().any(|x| x == id) {
                        ids.push(id.to_string());
                    }
                }
                if ids != before {
                    if write {
                        c.set_order(a, provider, &ids, now)?;
                    }
                    order_actions.push(OrderAction {
                        provider: provider.to_string(),
                        scope: scope_name(a),
                        order: ids,
                        action: if own.is_some() { "updated" } else { "created" }.into(),
                        reason: Some("appended".into()),
                    });
                }
            }
        }
        // 3. lastGood.
        for (provider, (id, ptr, src)) in &scope.last_good {
            if provider_of(id) != provider || !visible.contains(id) {
                warnings.push(ImportWarning {
                    pointer: ptr.clone(),
                    kind: "last_good_dropped".into(),
                    message: format!(
                        "`{id}` is not a stored {provider} profile; lastGood not imported"
                    ),
                    source: src.clone(),
                });
                continue;
            }
            if write && c.last_good(a, provider)?.as_deref() != Some(id) {
                c.set_last_good(a, provider, id)?;
            }
        }
    }
    Ok((actions, order_actions, warnings))
}

fn agent_param(a: Option<String>) -> Result<Option<String>> {
    a.map(|a| {
        ids::validate_agent(&a)
            .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", "/agent"))
    })
    .transpose()
}

/// Copies a modelauth store (`src`) into `dst` (providers, settings and named secrets are
/// [`super::import_extras::copy_store_extras`]'s): per scope the profiles (`created`,
/// `unchanged`, `updated` with `replace`, else `skipped: exists`), their usage state,
/// orders (same rules; a kept order gets the created profiles appended so they stay
/// routable) and lastGood. With `write` false nothing is written (a dry run).
fn copy_store(
    src: &dyn Tx,
    dst: &dyn Tx,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<(Vec<ProfileAction>, Vec<OrderAction>, Vec<ImportWarning>)> {
    // Providers, settings and named secrets: `import_extras::copy_store_extras`.
    let warnings = vec![];
    let mut profiles = vec![];
    let mut orders = vec![];
    let mut usage_done = BTreeSet::new();
    for scope in src.scopes()? {
        let a = scope.as_deref();
        let mut created: Vec<(String, String)> = vec![];
        for sp in src
            .view_profiles(a, None)?
            .into_iter()
            .filter(|s| s.scope.as_deref() == a)
        {
            let p = sp.profile;
            let action = match dst.scope_profile(a, &p.id)? {
                None => "created",
                Some(e) if e.profile == p => "unchanged",
                Some(_) if replace => "updated",
                Some(_) => "skipped",
            };
            if write && matches!(action, "created" | "updated") {
                dst.upsert_profile(a, &p, now)?;
            }
            if action == "created" {
                created.push((p.provider.clone(), p.id.clone()));
            }
            if action != "skipped" && usage_done.insert(p.id.clone()) {
                let u = src.usage(&p.id)?;
                if u != Usage::default()
                    && (replace || dst.usage(&p.id)? == Usage::default())
                    && write
                {
                    dst.put_usage(&p.id, &u)?;
                }
            }
            profiles.push(ProfileAction {
                profile_id: p.id,
                scope: scope_name(a),
                action: action.into(),
                reason: (action == "skipped").then(|| "exists".into()),
            });
        }
        let src_orders = src.scope_orders(a)?;
        let mut providers_done = BTreeSet::new();
        for (provider, ids) in &src_orders {
            providers_done.insert(provider.clone());
            let (order, action, reason) = match dst.scope_order(a, provider)? {
                None => (ids.clone(), "created", None),
                Some((have, _)) if have == *ids => (have, "unchanged", None),
                Some(_) if replace => (ids.clone(), "updated", None),
                Some((mut have, _)) => {
                    let mut appended = false;
                    for (_, id) in created.iter().filter(|(p, _)| p == provider) {
                        if !have.contains(id) {
                            have.push(id.clone());
                            appended = true;
                        }
                    }
                    if appended {
                        (have, "updated", Some("appended".to_string()))
                    } else {
                        (have, "skipped", Some("exists".to_string()))
                    }
                }
            };
            if write && matches!(action, "created" | "updated") {
                dst.set_order(a, provider, &order, now)?;
            }
            orders.push(OrderAction {
                provider: provider.clone(),
                scope: scope_name(a),
                order,
                action: action.into(),
                reason,
            });
        }
        // Created profiles of a provider the source has no order for, under a kept order
        // of the destination: appended so they stay routable.
        for (provider, have) in dst.scope_orders(a)? {
            if providers_done.contains(&provider) {
                continue;
            }
            let mut order = have.clone();
            for (_, id) in created.iter().filter(|(p, _)| *p == provider) {
                if !order.contains(id) {
                    order.push(id.clone());
                }
            }
            if order != have {
                if write {
                    dst.set_order(a, &provider, &order, now)?;
                }
                orders.push(OrderAction {
                    provider,
                    scope: scope_name(a),
                    order,
                    action: "updated".into(),
                    reason: Some("appended".into()),
                });
            }
        }
        for (provider, id) in src.scope_last_good(a)? {
            let have = dst.last_good(a, &provider)?;
            if have.as_deref() == Some(id.as_str()) || (have.is_some() && !replace) {
                continue;
            }
            if write {
                dst.set_last_good(a, &provider, &id)?;
            }
        }
    }
    Ok((profiles, orders, warnings))
}

impl App {
    /// `store.import` of a modelauth SQLite store file: everything it holds, in one write
    /// transaction on this store (a dry run reads only).
    fn import_modelauth_store(&self, path: &Path, p: &ImportParams) -> Result<ImportResult> {
        let src = open_modelauth_store(path)?;
        let rtx = src
            .unchecked_transaction()
            .map_err(|e| unreadable(path, e))?;
        let now = now_ms();
        let run = |c: &dyn Tx, write: bool| -> Result<ImportResult> {
            // *(r3)* The source seen through the sealing layer: a sealed source needs its key.
            let (settings, secrets, profiles, orders, warnings) =
                crate::store::sealed::with_source_tx(&*rtx, |src| {
                    let (settings, secrets, mut warnings) =
                        super::import_extras::copy_store_extras(
                            src,
                            c,
                            p.include_settings,
                            p.replace,
                            write,
                            now,
                        )?;
                    let (profiles, orders, more) = copy_store(src, c, p.replace, write, now)?;
                    warnings.extend(more);
                    Ok((settings, secrets, profiles, orders, warnings))
                })?;
            if write {
                tracing::info!(
                    format = "modelauth-store",
                    profiles = profiles.len(),
                    "import applied"
                );
            }
            Ok(ImportResult {
                format: Format::ModelauthStore,
                agent: None,
                dry_run: !write,
                profiles,
                orders,
                warnings,
                errors: vec![],
                settings,
                secrets,
            })
        };
        let mut st = self.store();
        if p.dry_run {
            st.read(|c| run(c, false))
        } else {
            st.write(|c| run(c, true))
        }
    }

    /// `store.import`: reads the source, then applies every valid entry in one transaction
    /// (or, with `dryRun`, in a read transaction that creates nothing). Errors:
    /// `invalid_params`, `import_invalid`, `shape_unrecognized`, store errors; on any error
    /// nothing is changed.
    pub fn store_import(&self, p: ImportParams) -> Result<ImportResult> {
        if let Some(path) = modelauth_store_path(&p)? {
            return self.import_modelauth_store(&path, &p);
        }
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        // Where earlier imports of this source are recorded (its canonical path).
        let source_key = p.path.as_deref().map(|raw| {
            let path = expand_home(raw);
            std::fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string()
        });
        if p.sync && source_key.is_none() {
            return Err(RpcError::invalid_params(
                "`sync` needs a `path`: it makes this store equal to what an earlier import of the same source brought",
            )
            .with("pointer", "/sync"));
        }
        let replace = p.replace || p.sync;
        let loaded = load_source(p.path.as_deref(), p.document, p.format, a)?;
        let now = now_ms();
        let run = |c: &dyn Tx, write: bool| -> Result<ImportResult> {
            let aliases = load_aliases(c)?;
            let mut plan = import::plan(&loaded, &aliases);
            with_config_orders(&mut plan, &loaded, &aliases);
            let extras = super::import_extras::plan_extras(&loaded, &mut plan);
            let fences = super::import_extras::fence_warnings(&plan, p.path.as_deref());
            plan.warnings.extend(fences);
            let (mut profiles, mut orders, extra) = apply(c, &plan, replace, write, now)?;
            let (settings, secrets, mut more) = super::import_extras::apply_extras(
                c,
                &extras,
                p.include_settings,
                replace,
                write,
                now,
            )?;
            if let Some(source) = &source_key {
                more.extend(super::import_extras::reconcile(
                    c,
                    &plan,
                    &mut profiles,
                    &mut orders,
                    source,
                    p.sync,
                    write,
                )?);
            }
            let mut warnings = plan.warnings;
            warnings.extend(extra);
            warnings.extend(more);
            if write {
                tracing::info!(
                    format = plan.format.as_str(),
                    profiles = profiles.len(),
                    errors = plan.errors.len(),
                    "import applied"
                );
            }
            Ok(ImportResult {
                format: plan.format,
                agent: agent.clone(),
                dry_run: !write,
                profiles,
                orders,
                warnings,
                errors: plan.errors,
                settings,
                secrets,
            })
        };
        let mut st = self.store();
        if p.dry_run {
            st.read(|c| run(c, false))
        } else {
            st.write(|c| run(c, true))
        }
    }

    /// `store.validate`: the errors and warnings `store.import` would report for the
    /// source, judged on its own (not against the store). Writes nothing.
    pub fn store_validate(&self, p: ValidateParams) -> Result<ValidateResult> {
        if p.format == Format::ModelauthStore {
            let path = p.path.as_deref().ok_or_else(|| {
                RpcError::invalid_params("format modelauth-store needs a `path`")
                    .with("pointer", "/path")
            })?;
            let src = open_modelauth_store(&expand_home(path))?;
            let rtx = src
                .unchecked_transaction()
                .map_err(|e| unreadable(Path::new(path), e))?;
            let (settings, _, warnings) = self.store().read(|dst| {
                super::import_extras::copy_store_extras(&*rtx, dst, false, false, false, 0)
            })?;
            return Ok(ValidateResult {
                valid: true,
                format: Format::ModelauthStore,
                errors: vec![],
                warnings,
                settings,
            });
        }
        let loaded = load_source(p.path.as_deref(), p.document, p.format, None)?;
        let aliases = self.store().read(load_aliases)?;
        let mut plan = import::plan(&loaded, &aliases);
        with_config_orders(&mut plan, &loaded, &aliases);
        let extras = super::import_extras::plan_extras(&loaded, &mut plan);
        let fences = super::import_extras::fence_warnings(&plan, p.path.as_deref());
        let mut warnings = plan.warnings;
        warnings.extend(fences);
        warnings.extend(super::import_extras::validate_warnings(&extras));
        Ok(ValidateResult {
            valid: plan.errors.is_empty(),
            format: plan.format,
            errors: plan.errors,
            warnings,
            settings: super::import_extras::validate_settings(&extras),
        })
    }

    /// `store.export`: one scope as OpenClaw's auth-profiles.json v1 document.
    pub fn store_export(&self, p: ExportParams) -> Result<ExportResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        self.store().read(|c| {
            let profiles: Vec<_> = c
                .view_profiles(a, None)?
                .into_iter()
                .filter(|s| s.scope.as_deref() == a)
                .collect::<Vec<_>>()
                .into_iter()
                .map(|s| {
                    if p.reveal {
                        crate::handlers::seal::require_secrets(c, [&s])?;
                    }
                    Ok(s.profile)
                })
                .collect::<Result<_>>()?;
            let orders = c.scope_orders(a)?;
            let last_good = c.scope_last_good(a)?;
            let mut usage = BTreeMap::new();
            for p in &profiles {
                usage.insert(p.id.clone(), c.usage(&p.id)?);
            }
            Ok(ExportResult {
                agent: agent.clone(),
                document: export::document(&profiles, &orders, &last_good, &usage, p.reveal),
            })
        })
    }
}
