//! *(r3)* The sealed store's methods (PROTOCOL §9): `store.seal`, `store.rekey`,
//! `store.unseal`, and the check every request that needs a secret makes first.

use crate::api::{SealParams, SealResult};
use crate::core::error::RpcError;
use crate::core::profile::StoredProfile;
use crate::core::sealed::credential_unopened;
use crate::store::sealed::{SealOp, SealReport};
use crate::store::Tx;

use super::{now_ms, App};

type Result<T> = std::result::Result<T, RpcError>;

/// Fails with `store_sealed` / `store_key_mismatch` when one of `profiles` holds a secret
/// that cannot be opened because the store's key is not configured. Profiles whose secret
/// lives elsewhere (a SecretRef) or opens need nothing.
pub(crate) fn require_secrets<'a>(
    c: &dyn Tx,
    profiles: impl IntoIterator<Item = &'a StoredProfile>,
) -> Result<()> {
    if profiles
        .into_iter()
        .any(|sp| credential_unopened(&sp.profile.credential))
    {
        if let Some(e) = c.seal_error()? {
            return Err(e);
        }
    }
    Ok(())
}

/// Fails with `store_sealed` / `store_key_mismatch` when one of `profiles` names a `store`
/// SecretRef whose entry is not among the named secrets that opened (`named`): a sealed
/// store's entries open only with its key, and without it the entry must not read as
/// missing (`ref_unavailable`), which would send a person to re-import it.
pub(crate) fn require_named_secrets<'a>(
    c: &dyn Tx,
    profiles: impl IntoIterator<Item = &'a StoredProfile>,
    named: &std::collections::BTreeMap<(String, String), crate::core::secret_value::Secret>,
) -> Result<()> {
    let unopened = profiles.into_iter().any(|sp| {
        sp.profile.credential.secret_ref().is_some_and(|r| {
            r.source == crate::core::profile::SecretSource::Store
                && !named.contains_key(&(r.provider.clone(), r.id.clone()))
        })
    });
    if unopened {
        if let Some(e) = c.seal_error()? {
            return Err(e);
        }
    }
    Ok(())
}

fn result(r: SealReport) -> SealResult {
    SealResult {
        sealed: r.info.sealed,
        keys: r.info.keys,
        profiles: r.profiles,
        transactions: r.transactions,
        undecryptable: r.undecryptable,
        plaintext_secrets: r.info.plaintext_secrets,
    }
}

impl App {
    fn seal_op(&self, op: SealOp) -> Result<SealResult> {
        // The read cache is keyed by the store's change marker, which every rewrite moves.
        let r = self.store().seal_op(op, now_ms())?;
        Ok(result(r))
    }

    /// *(r3)* How many secret fields a PostgreSQL store holds in plaintext (`None` for
    /// another backend, or a store that does not exist): `check`'s warning (PROTOCOL §9).
    pub(crate) fn plaintext_at_rest(&self) -> Result<Option<u64>> {
        let mut st = self.store();
        if st.describe().backend != "postgres" {
            return Ok(None);
        }
        Ok(Some(st.seal_info()?.plaintext_secrets))
    }

    /// `store.seal`: every plaintext secret sealed under the first configured key.
    /// Errors: `store_sealed` (no key), `store_key_mismatch`, store errors.
    pub(crate) fn store_seal(&self, _: SealParams) -> Result<SealResult> {
        self.seal_op(SealOp::Seal)
    }

    /// `store.rekey`: every sealed secret moved to the first configured key; the old keys
    /// must still be configured. Errors: as `store.seal`; a store that is not sealed is
    /// `invalid_params`.
    pub(crate) fn store_rekey(&self, _: SealParams) -> Result<SealResult> {
        self.seal_op(SealOp::Rekey)
    }

    /// `store.unseal`: every secret stored in plaintext again, then the sealing state
    /// removed. Errors: as `store.rekey`.
    pub(crate) fn store_unseal(&self, _: SealParams) -> Result<SealResult> {
        self.seal_op(SealOp::Unseal)
    }
}
