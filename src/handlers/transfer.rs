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
use super::sources::{
    expand_home, load_source, modelauth_store_path, open_modelauth_store, unreadable,
};
use std::collections::BTreeMap;
use std::path::Path;

use crate::core::error::{Result, RpcError};
use crate::core::ids;
use crate::handlers::{load_aliases, now_ms, App};
use crate::openclaw::export::{self, ExportParams, ExportResult};
use crate::openclaw::import::{
    self, Format, ImportParams, ImportPlan, ImportResult, Loaded, PieceKind, ValidateParams,
    ValidateResult,
};
use crate::store::Tx;

mod apply;
mod copy;

use apply::apply;
use copy::copy_store;

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

fn agent_param(a: Option<String>) -> Result<Option<String>> {
    a.map(|a| {
        ids::validate_agent(&a)
            .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", "/agent"))
    })
    .transpose()
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
    pub(crate) fn store_import(&self, p: ImportParams) -> Result<ImportResult> {
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
    pub(crate) fn store_validate(&self, p: ValidateParams) -> Result<ValidateResult> {
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
    pub(crate) fn store_export(&self, p: ExportParams) -> Result<ExportResult> {
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
