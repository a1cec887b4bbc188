//! Applying an OpenClaw import plan ([`ImportPlan`]) on a store transaction: profiles,
//! orders (with routability) and lastGood, per scope.

use std::collections::{BTreeMap, BTreeSet};

use super::{provider_of, scope_name};
use crate::core::error::Result;
use crate::core::usage::Usage;
use crate::openclaw::import::{
    Format, ImportAction, ImportPlan, ImportWarning, OrderAction, PlannedOrder, ProfileAction,
    ScopePlan,
};
use crate::store::Tx;

/// What [`apply`] returns: `(profiles, orders, warnings)`.
pub(super) type Applied = (Vec<ProfileAction>, Vec<OrderAction>, Vec<ImportWarning>);

/// Applies `plan` on `c` (inside the caller's transaction). With `write` false nothing is
/// written and the result says what would happen. Returns `(profiles, orders, warnings)`.
pub(super) fn apply(
    c: &dyn Tx,
    plan: &ImportPlan,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<Applied> {
    let mut run = Applier {
        c,
        plan,
        replace,
        write,
        now,
        shared_planned: plan
            .scopes
            .iter()
            .filter(|s| s.agent.is_none())
            .flat_map(|s| s.profiles.keys().map(String::as_str))
            .collect(),
        all_planned: plan
            .scopes
            .iter()
            .flat_map(|s| s.profiles.keys().map(String::as_str))
            .collect(),
        shared_final: BTreeMap::new(),
        actions: vec![],
        order_actions: vec![],
        warnings: vec![],
    };
    for scope in &plan.scopes {
        run.scope(scope)?;
    }
    Ok((run.actions, run.order_actions, run.warnings))
}

/// The state of one [`apply`] run: its inputs and what it has done so far.
struct Applier<'a> {
    c: &'a dyn Tx,
    plan: &'a ImportPlan,
    replace: bool,
    write: bool,
    now: i64,
    /// Ids the plan puts in the shared scope.
    shared_planned: BTreeSet<&'a str>,
    /// Ids the plan puts in any scope.
    all_planned: BTreeSet<&'a str>,
    /// The shared orders as this import leaves them (also in a dry run).
    shared_final: BTreeMap<String, Vec<String>>,
    actions: Vec<ProfileAction>,
    order_actions: Vec<OrderAction>,
    warnings: Vec<ImportWarning>,
}

impl<'a> Applier<'a> {
    /// Applies one scope of the plan: profiles, orders, routability, lastGood.
    fn scope(&mut self, scope: &'a ScopePlan) -> Result<()> {
        let a = scope.agent.as_deref();
        // 1. Profiles.
        let imported = self.profiles(scope)?;
        // Ids the scope's view holds after the import.
        let mut visible: BTreeSet<String> = self
            .c
            .view_profiles(a, None)?
            .into_iter()
            .map(|s| s.profile.id)
            .collect();
        visible.extend(scope.profiles.keys().cloned());
        if a.is_some() {
            visible.extend(self.shared_planned.iter().map(|s| s.to_string()));
        }
        // 2. Orders.
        let mut ordered: BTreeSet<&str> = BTreeSet::new();
        for (provider, po) in &scope.orders {
            ordered.insert(provider);
            self.order(a, provider, po, &visible, &imported)?;
        }
        self.append_unordered(a, &imported, &ordered)?;
        // 3. lastGood.
        self.last_good(scope, &visible)
    }

    /// Imports the scope's profiles (and their usage state); returns the ids created or
    /// updated.
    fn profiles(&mut self, scope: &'a ScopePlan) -> Result<Vec<&'a str>> {
        let (c, a) = (self.c, scope.agent.as_deref());
        let mut imported: Vec<&str> = vec![];
        for (id, pp) in &scope.profiles {
            let existing = c.scope_profile(a, id)?;
            let (action, reason) = match &existing {
                None => (ImportAction::Created, None),
                Some(e) if e.profile == pp.profile => (ImportAction::Unchanged, None),
                Some(_) if self.replace => (ImportAction::Updated, None),
                Some(_) => (ImportAction::Skipped, Some("exists".to_string())),
            };
            if action.writes() {
                imported.push(id);
                if self.write {
                    c.upsert_profile(a, &pp.profile, self.now)?;
                    match scope.usage.get(id) {
                        Some(u) => c.put_usage(id, u)?,
                        None if action == ImportAction::Updated => {
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
            self.actions.push(ProfileAction {
                profile_id: id.clone(),
                scope: scope_name(a),
                action,
                reason,
            });
        }
        Ok(imported)
    }

    /// Records an `order_entry_dropped` warning.
    fn dropped(&mut self, ptr: &str, src: &Option<String>, msg: String) {
        self.warnings.push(ImportWarning {
            pointer: ptr.to_string(),
            kind: "order_entry_dropped".into(),
            message: msg,
            source: src.clone(),
        })
    }

    /// The ids of the planned order `po` that are kept; `None` when none is (the order is
    /// then not imported).
    fn order_ids(
        &mut self,
        a: Option<&str>,
        provider: &str,
        po: &PlannedOrder,
        visible: &BTreeSet<String>,
    ) -> Result<Option<Vec<String>>> {
        let mut ids = vec![];
        let mut named = false;
        for (k, id) in po.ids.iter().enumerate() {
            let ptr = match po.indexes.get(k) {
                Some(i) => format!("{}/{i}", po.pointer),
                None => po.pointer.clone(),
            };
            if provider_of(id) != provider {
                self.dropped(
                    &ptr,
                    &po.source,
                    format!("`{id}` is not a {provider} profile; left out of the order"),
                );
            } else if visible.contains(id) {
                named = true;
                ids.push(id.clone());
            } else if a.is_none()
                && (self.all_planned.contains(id.as_str())
                    || self.c.profile_id_exists_anywhere(id)?)
            {
                // An agent's own profile in the shared (config) order, as OpenClaw writes
                // it for `paste-api-key --agent`: that agent's walk uses it from here.
                named = true;
                ids.push(id.clone());
            } else {
                // OpenClaw keeps such an entry and skips it when walking; so does modelauth.
                self.warnings.push(ImportWarning {
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
            self.warnings.push(ImportWarning {
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
            self.dropped(
                &po.pointer,
                &po.source,
                format!("no id of the {provider} order is stored; the order was not imported"),
            );
            return Ok(None);
        }
        Ok(Some(ids))
    }

    /// Imports one planned order of a scope.
    fn order(
        &mut self,
        a: Option<&str>,
        provider: &String,
        po: &PlannedOrder,
        visible: &BTreeSet<String>,
        imported: &[&str],
    ) -> Result<()> {
        let Some(ids) = self.order_ids(a, provider, po, visible)? else {
            return Ok(());
        };
        let existing = self.c.scope_order(a, provider)?.map(|(ids, _)| ids);
        let (final_ids, action, reason) = match existing {
            None => (ids, ImportAction::Created, None),
            Some(e) if e == ids => (ids, ImportAction::Unchanged, None),
            Some(_) if self.replace => (ids, ImportAction::Updated, None),
            Some(mut e) => {
                let before = e.len();
                for id in imported {
                    if provider_of(id) == provider && !e.iter().any(|x| x == id) {
                        e.push(id.to_string());
                    }
                }
                if e.len() > before {
                    (e, ImportAction::Updated, Some("appended".to_string()))
                } else {
                    (e, ImportAction::Skipped, Some("exists".to_string()))
                }
            }
        };
        if self.write && action != ImportAction::Unchanged && action != ImportAction::Skipped {
            self.c.set_order(a, provider, &final_ids, self.now)?;
        }
        if a.is_none() {
            self.shared_final
                .insert(provider.clone(), final_ids.clone());
        }
        self.order_actions.push(OrderAction {
            provider: provider.clone(),
            scope: scope_name(a),
            order: final_ids,
            action,
            reason,
        });
        Ok(())
    }

    /// Routability (as profiles.put): an imported profile missing from the scope's own
    /// explicit order of its provider is appended to it.
    fn append_unordered(
        &mut self,
        a: Option<&str>,
        imported: &[&str],
        ordered: &BTreeSet<&str>,
    ) -> Result<()> {
        let mut by_provider: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in imported {
            by_provider.entry(provider_of(id)).or_default().push(id);
        }
        for (provider, new_ids) in by_provider {
            if ordered.contains(provider) {
                continue;
            }
            let own = self.c.scope_order(a, provider)?.map(|(ids, _)| ids);
            let base = match (&own, a) {
                (Some(ids), _) => Some(ids.clone()),
                // OpenClaw walks the shared (config) order for an agent without its own: a
                // profile the agent's store holds but that order does not name is never
                // tried there, so no agent order is made up to append it to.
                (None, Some(agent)) if self.plan.format == Format::OpenclawState => {
                    self.warn_not_in_shared_order(agent, provider, &new_ids)?;
                    None
                }
                (None, Some(_)) => match self.shared_final.get(provider) {
                    Some(ids) => Some(ids.clone()),
                    None => self.c.scope_order(None, provider)?.map(|(ids, _)| ids),
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
                    if self.write {
                        self.c.set_order(a, provider, &ids, self.now)?;
                    }
                    self.order_actions.push(OrderAction {
                        provider: provider.to_string(),
                        scope: scope_name(a),
                        order: ids,
                        action: if own.is_some() {
                            ImportAction::Updated
                        } else {
                            ImportAction::Created
                        },
                        reason: Some("appended".into()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Warns (`not_in_order`) for each of an agent's imported `new_ids` that the shared
    /// `provider` order, which that agent walks, does not name.
    fn warn_not_in_shared_order(
        &mut self,
        agent: &str,
        provider: &str,
        new_ids: &[&str],
    ) -> Result<()> {
        let shared = self
            .shared_final
            .get(provider)
            .cloned()
            .or(self.c.scope_order(None, provider)?.map(|(ids, _)| ids));
        if let Some(shared) = shared {
            for id in new_ids.iter().filter(|id| !shared.iter().any(|x| x == *id)) {
                self.warnings.push(ImportWarning {
                    pointer: String::new(),
                    kind: "not_in_order".into(),
                    message: format!(
                        "`{id}` of agent {agent} is not in the {provider} order that agent walks (openclaw.json auth.order); OpenClaw never tries it, and neither does modelauth (add it with order.set)"
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// Imports the scope's lastGood entries that name a stored profile of their provider.
    fn last_good(&mut self, scope: &ScopePlan, visible: &BTreeSet<String>) -> Result<()> {
        let (c, a) = (self.c, scope.agent.as_deref());
        for (provider, (id, ptr, src)) in &scope.last_good {
            if provider_of(id) != provider || !visible.contains(id) {
                self.warnings.push(ImportWarning {
                    pointer: ptr.clone(),
                    kind: "last_good_dropped".into(),
                    message: format!(
                        "`{id}` is not a stored {provider} profile; lastGood not imported"
                    ),
                    source: src.clone(),
                });
                continue;
            }
            if self.write && c.last_good(a, provider)?.as_deref() != Some(id) {
                c.set_last_good(a, provider, id)?;
            }
        }
        Ok(())
    }
}
