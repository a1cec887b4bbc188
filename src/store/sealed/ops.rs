//! The seal, rekey and unseal operations of the sealed store, run in batched steps.

use std::collections::BTreeSet;

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::secret_value::Secret;
use crate::seal::envelope::{self, StoreKey};
use crate::seal::keys::KeyRing;
use crate::store::{Store, Tx};

use super::tx::{named_aad, SealedTx};
use super::{
    mismatch_error, profile_aad, sealed_error, secret_fields, Ctx, Meta, SealOp, SealReport,
    SealedStore, BATCH,
};

/// Rewrites every named secret for `op`: sealed under `target`, or plaintext for unseal.
/// Entries that do not open are left as they are. Runs inside one write transaction
/// (named secrets are few: what an import referenced).
fn step_named_secrets(
    tx: &dyn Tx,
    meta: &Meta,
    ring: &KeyRing,
    target: Option<&StoreKey>,
    now: i64,
) -> Result<u64, RpcError> {
    let mut n = 0;
    for (provider, id, v) in tx.named_secrets()? {
        let aad = named_aad(meta, &provider, &id);
        let plain = if envelope::is_envelope(v.expose()) {
            let opened = envelope::parse(v.expose()).ok().and_then(|env| {
                let key = ring.by_short_id(env.key_id)?;
                if target.is_some_and(|t| t.fingerprint() == key.fingerprint()) {
                    return None; // already under the target key
                }
                key.open(&aad, &env)
            });
            match opened {
                Some(pt) => Secret::new(String::from_utf8_lossy(&pt).into_owned()),
                None => continue,
            }
        } else if target.is_none() {
            continue; // unseal: already plaintext
        } else {
            v
        };
        let out = match target {
            Some(k) => Secret::new(k.seal(&aad, plain.expose().as_bytes())),
            None => plain,
        };
        tx.put_named_secret(&provider, &id, &out, now)?;
        n += 1;
    }
    Ok(n)
}

/// The profiles stored in exactly one scope, as stored (sealed fields unopened).
pub(super) fn raw_scope_profiles(
    tx: &dyn Tx,
    scope: Option<&str>,
) -> Result<Vec<StoredProfile>, RpcError> {
    Ok(tx
        .view_profiles(scope, None)?
        .into_iter()
        .filter(|sp| sp.scope.as_deref() == scope)
        .collect())
}

/// What one batch step does to a stored profile: `Some(new profile)` to rewrite it.
fn step_profile(
    op: SealOp,
    meta: &Meta,
    ring: &KeyRing,
    target: Option<&StoreKey>,
    sp: &StoredProfile,
) -> Result<Option<Profile>, ()> {
    let mut p = sp.profile.clone();
    let mut changed = false;
    for (field, s) in secret_fields(&mut p.credential) {
        let aad = profile_aad(meta, sp.scope.as_deref(), &p.id, field);
        let sealed = envelope::is_envelope(s.expose());
        let needs = match op {
            SealOp::Seal => !sealed,
            SealOp::Unseal => sealed,
            SealOp::Rekey => {
                !sealed
                    || envelope::parse(s.expose())
                        .map(|e| Some(e.key_id) != target.map(|t| t.short_id()))
                        .unwrap_or(true)
            }
        };
        if !needs {
            continue;
        }
        let plain = if sealed {
            let env = envelope::parse(s.expose()).map_err(|_| ())?;
            let key = ring.by_short_id(env.key_id).ok_or(())?;
            let pt = key.open(&aad, &env).ok_or(())?;
            String::from_utf8(pt.to_vec()).map_err(|_| ())?
        } else {
            s.expose().to_string()
        };
        *s = match target {
            Some(k) => Secret::new(k.seal(&aad, plain.as_bytes())),
            None => Secret::new(plain),
        };
        changed = true;
    }
    Ok(changed.then_some(p))
}

/// Runs `op` (`store.seal`, `store.rekey`, `store.unseal`) in steps, each its own write
/// transaction: the state row, the named secrets, profiles in batches of [`BATCH`], then
/// settling the state row once nothing is left to change.
pub(super) fn run_op(st: &mut SealedStore, op: SealOp, now: i64) -> Result<SealReport, RpcError> {
    let ctx = st.ctx();
    let ring = ctx.ring()?.clone();
    if ring.keys.is_empty() {
        return Err(sealed_error());
    }
    let first = ring.keys[0].clone();
    let mut report = SealReport::default();
    // Step 1: the state row (and settings/provider rows) for the operation.
    let meta = step_state(st, &ctx, op, &first)?;
    report.transactions += 1;
    let target = target_key(op, &meta, &ring, &first)?;
    // Step 1b: the named secrets (the `store` SecretRef source), in one transaction.
    st.inner.write_tx(&mut |tx| {
        step_named_secrets(tx, &meta, &ring, target.as_ref(), now).map(|_| ())
    })?;
    report.transactions += 1;
    // Step 2: profiles, BATCH per transaction, until none is left to change.
    let mut skipped: BTreeSet<String> = Default::default();
    let plan = Plan {
        op,
        meta: &meta,
        ring: &ring,
        target: target.as_ref(),
        now,
    };
    step_profile_batches(st, &plan, &mut skipped, &mut report)?;
    // Step 3: settle the state row, checking in the same transaction that nothing is left.
    loop {
        let left = settle_state(st, &ctx, &plan, &first, &skipped)?;
        report.transactions += 1;
        if left == 0 {
            break;
        }
        // Writers added more meanwhile: another round of batches.
        let done = catch_up_batch(st, &plan)?;
        report.transactions += 1;
        report.profiles += done as u64;
    }
    *st.meta_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    report.undecryptable = skipped.into_iter().collect();
    report.info = st.seal_info()?;
    Ok(report)
}

/// What every batch step of one operation needs.
struct Plan<'a> {
    op: SealOp,
    meta: &'a Meta,
    ring: &'a KeyRing,
    /// The key rows are sealed under; `None` for unseal.
    target: Option<&'a StoreKey>,
    /// ms since the epoch.
    now: i64,
}

/// Step 1: writes the state row for `op` (and rewraps settings/provider rows on rekey) in
/// one write transaction; returns the store's seal state.
///
/// Errors: `invalid_params` when rekeying or unsealing a store that is not sealed; store
/// and key errors.
fn step_state(
    st: &mut SealedStore,
    ctx: &Ctx,
    op: SealOp,
    first: &StoreKey,
) -> Result<Meta, RpcError> {
    let mut meta_out: Option<Meta> = None;
    st.inner.write_tx(&mut |tx| {
        let t = SealedTx::new(tx, ctx);
        let meta = match (op, t.meta()?) {
            (SealOp::Seal, None) => t.init_meta()?,
            (SealOp::Seal, Some(m)) => {
                t.write_key(&m)?;
                m
            }
            (SealOp::Rekey | SealOp::Unseal, None) => {
                return Err(
                    RpcError::new(ErrorKind::InvalidParams, "the store is not sealed").with_hint(
                        "`modelauth store seal` seals it under the first configured key",
                    ),
                );
            }
            (SealOp::Rekey, Some(mut m)) => {
                if !m.keys.iter().any(|k| k == first.fingerprint()) {
                    t.write_key(&m)?; // some configured key must be the store's
                    m.keys.insert(0, first.fingerprint().to_string());
                    t.set_meta(Some(m.clone()))?;
                }
                t.rewrap_rows(Some(&m), &m, Some(first))?;
                m
            }
            (SealOp::Unseal, Some(m)) => {
                t.write_key(&m)?;
                m
            }
        };
        meta_out = Some(meta);
        Ok(())
    })?;
    Ok(meta_out.expect("set by step 1"))
}

/// The key `op` seals under: the store's first key for seal, the first configured key for
/// rekey, none for unseal. Errors: a key mismatch when no configured key is the store's.
fn target_key(
    op: SealOp,
    meta: &Meta,
    ring: &KeyRing,
    first: &StoreKey,
) -> Result<Option<StoreKey>, RpcError> {
    Ok(match op {
        SealOp::Seal => {
            let fp = meta.keys.first().cloned().unwrap_or_default();
            Some(
                ring.keys
                    .iter()
                    .find(|k| k.fingerprint() == fp)
                    .cloned()
                    .ok_or_else(|| mismatch_error(&meta.keys, &ring.fingerprints()))?,
            )
        }
        SealOp::Rekey => Some(first.clone()),
        SealOp::Unseal => None,
    })
}

/// Step 2: rewrites profiles, [`BATCH`] per write transaction, until a batch comes back
/// short. Profiles that do not open are added to `skipped` (`scope/id`) and left as they are.
fn step_profile_batches(
    st: &mut SealedStore,
    plan: &Plan<'_>,
    skipped: &mut BTreeSet<String>,
    report: &mut SealReport,
) -> Result<(), RpcError> {
    loop {
        let mut done = 0usize;
        st.inner.write_tx(&mut |tx| {
            done = 0;
            'scopes: for scope in tx.scopes()? {
                for sp in raw_scope_profiles(tx, scope.as_deref())? {
                    let label = format!("{}/{}", scope.as_deref().unwrap_or(""), sp.profile.id);
                    if skipped.contains(&label) {
                        continue;
                    }
                    match step_profile(plan.op, plan.meta, plan.ring, plan.target, &sp) {
                        Ok(Some(p)) => {
                            tx.upsert_profile(scope.as_deref(), &p, plan.now)?;
                            done += 1;
                            if done >= BATCH {
                                break 'scopes;
                            }
                        }
                        Ok(None) => {}
                        Err(()) => {
                            skipped.insert(label);
                        }
                    }
                }
            }
            Ok(())
        })?;
        report.transactions += 1;
        report.profiles += done as u64;
        if done < BATCH {
            return Ok(());
        }
    }
}

/// Step 3, one write transaction: counts the profiles still left to change (not skipped);
/// when none is left, settles the state row (rekey: keep only the new key; unseal: drop
/// it, unless some profile was skipped). Returns how many were left.
fn settle_state(
    st: &mut SealedStore,
    ctx: &Ctx,
    plan: &Plan<'_>,
    first: &StoreKey,
    skipped: &BTreeSet<String>,
) -> Result<usize, RpcError> {
    let mut left = 0usize;
    st.inner.write_tx(&mut |tx| {
        let t = SealedTx::new(tx, ctx);
        left = 0;
        for scope in tx.scopes()? {
            for sp in raw_scope_profiles(tx, scope.as_deref())? {
                let label = format!("{}/{}", scope.as_deref().unwrap_or(""), sp.profile.id);
                if !skipped.contains(&label)
                    && step_profile(plan.op, plan.meta, plan.ring, plan.target, &sp)
                        .map(|c| c.is_some())
                        .unwrap_or(false)
                {
                    left += 1;
                }
            }
        }
        if left > 0 {
            return Ok(());
        }
        let current = t.meta()?;
        match plan.op {
            SealOp::Seal => {}
            SealOp::Rekey => {
                if let Some(mut m) = current {
                    m.keys.retain(|k| k == first.fingerprint());
                    if m.keys.is_empty() {
                        m.keys.push(first.fingerprint().to_string());
                    }
                    t.set_meta(Some(m))?;
                }
            }
            SealOp::Unseal => {
                if skipped.is_empty() {
                    let m = current.unwrap_or_else(|| plan.meta.clone());
                    t.rewrap_rows(Some(&m), &m, None)?;
                    t.set_meta(None)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(left)
}

/// One more batch of at most [`BATCH`] profiles written meanwhile, in one write
/// transaction; returns how many were rewritten.
fn catch_up_batch(st: &mut SealedStore, plan: &Plan<'_>) -> Result<usize, RpcError> {
    let mut done = 0usize;
    st.inner.write_tx(&mut |tx| {
        done = 0;
        for scope in tx.scopes()? {
            for sp in raw_scope_profiles(tx, scope.as_deref())? {
                if done >= BATCH {
                    return Ok(());
                }
                if let Ok(Some(p)) = step_profile(plan.op, plan.meta, plan.ring, plan.target, &sp) {
                    tx.upsert_profile(scope.as_deref(), &p, plan.now)?;
                    done += 1;
                }
            }
        }
        Ok(())
    })?;
    Ok(done)
}
