//! Copying one modelauth store into another (`store.import` with format `modelauth`):
//! profiles, usage state, orders and lastGood, per scope.

use std::collections::BTreeSet;

use super::apply::Applied;
use super::scope_name;
use crate::core::error::Result;
use crate::core::usage::Usage;
use crate::openclaw::import::{ImportAction, OrderAction, ProfileAction};
use crate::store::Tx;

/// Copies a modelauth store (`src`) into `dst` (providers, settings and named secrets are
/// [`super::import_extras::copy_store_extras`]'s): per scope the profiles (`created`,
/// `unchanged`, `updated` with `replace`, else `skipped: exists`), their usage state,
/// orders (same rules; a kept order gets the created profiles appended so they stay
/// routable) and lastGood. With `write` false nothing is written (a dry run).
pub(super) fn copy_store(
    src: &dyn Tx,
    dst: &dyn Tx,
    replace: bool,
    write: bool,
    now: i64,
) -> Result<Applied> {
    // Providers, settings and named secrets: `import_extras::copy_store_extras`.
    let mut run = Copier {
        src,
        dst,
        replace,
        write,
        now,
        usage_done: BTreeSet::new(),
        profiles: vec![],
        orders: vec![],
    };
    for scope in src.scopes()? {
        let a = scope.as_deref();
        let created = run.profiles(a)?;
        let providers_done = run.orders(a, &created)?;
        run.append_created(a, &created, &providers_done)?;
        run.last_good(a)?;
    }
    Ok((run.profiles, run.orders, vec![]))
}

/// The state of one [`copy_store`] run.
struct Copier<'a> {
    src: &'a dyn Tx,
    dst: &'a dyn Tx,
    replace: bool,
    write: bool,
    now: i64,
    /// Profile ids whose usage state was already considered.
    usage_done: BTreeSet<String>,
    profiles: Vec<ProfileAction>,
    orders: Vec<OrderAction>,
}

impl Copier<'_> {
    /// Copies the profiles of scope `a` (and their usage state); returns the
    /// `(provider, id)` of those created.
    fn profiles(&mut self, a: Option<&str>) -> Result<Vec<(String, String)>> {
        let (src, dst) = (self.src, self.dst);
        let mut created: Vec<(String, String)> = vec![];
        for sp in src
            .view_profiles(a, None)?
            .into_iter()
            .filter(|s| s.scope.as_deref() == a)
        {
            let p = sp.profile;
            let action = match dst.scope_profile(a, &p.id)? {
                None => ImportAction::Created,
                Some(e) if e.profile == p => ImportAction::Unchanged,
                Some(_) if self.replace => ImportAction::Updated,
                Some(_) => ImportAction::Skipped,
            };
            if self.write && action.writes() {
                dst.upsert_profile(a, &p, self.now)?;
            }
            if action == ImportAction::Created {
                created.push((p.provider.clone(), p.id.clone()));
            }
            if action != ImportAction::Skipped && self.usage_done.insert(p.id.clone()) {
                let u = src.usage(&p.id)?;
                if u != Usage::default()
                    && (self.replace || dst.usage(&p.id)? == Usage::default())
                    && self.write
                {
                    dst.put_usage(&p.id, &u)?;
                }
            }
            self.profiles.push(ProfileAction {
                profile_id: p.id,
                scope: scope_name(a),
                action,
                reason: (action == ImportAction::Skipped).then(|| "exists".into()),
            });
        }
        Ok(created)
    }

    /// Copies the orders of scope `a`; returns the providers the source has an order for.
    fn orders(
        &mut self,
        a: Option<&str>,
        created: &[(String, String)],
    ) -> Result<BTreeSet<String>> {
        let src_orders = self.src.scope_orders(a)?;
        let mut providers_done = BTreeSet::new();
        for (provider, ids) in &src_orders {
            providers_done.insert(provider.clone());
            let (order, action, reason) = match self.dst.scope_order(a, provider)? {
                None => (ids.clone(), ImportAction::Created, None),
                Some((have, _)) if have == *ids => (have, ImportAction::Unchanged, None),
                Some(_) if self.replace => (ids.clone(), ImportAction::Updated, None),
                Some((mut have, _)) => {
                    let mut appended = false;
                    for (_, id) in created.iter().filter(|(p, _)| p == provider) {
                        if !have.contains(id) {
                            have.push(id.clone());
                            appended = true;
                        }
                    }
                    if appended {
                        (have, ImportAction::Updated, Some("appended".to_string()))
                    } else {
                        (have, ImportAction::Skipped, Some("exists".to_string()))
                    }
                }
            };
            if self.write && action.writes() {
                self.dst.set_order(a, provider, &order, self.now)?;
            }
            self.orders.push(OrderAction {
                provider: provider.clone(),
                scope: scope_name(a),
                order,
                action,
                reason,
            });
        }
        Ok(providers_done)
    }

    /// Created profiles of a provider the source has no order for, under a kept order
    /// of the destination: appended so they stay routable.
    fn append_created(
        &mut self,
        a: Option<&str>,
        created: &[(String, String)],
        providers_done: &BTreeSet<String>,
    ) -> Result<()> {
        for (provider, have) in self.dst.scope_orders(a)? {
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
                if self.write {
                    self.dst.set_order(a, &provider, &order, self.now)?;
                }
                self.orders.push(OrderAction {
                    provider,
                    scope: scope_name(a),
                    order,
                    action: ImportAction::Updated,
                    reason: Some("appended".into()),
                });
            }
        }
        Ok(())
    }

    /// Copies the lastGood entries of scope `a` (a different one is kept unless `replace`).
    fn last_good(&mut self, a: Option<&str>) -> Result<()> {
        for (provider, id) in self.src.scope_last_good(a)? {
            let have = self.dst.last_good(a, &provider)?;
            if have.as_deref() == Some(id.as_str()) || (have.is_some() && !self.replace) {
                continue;
            }
            if self.write {
                self.dst.set_last_good(a, &provider, &id)?;
            }
        }
        Ok(())
    }
}
