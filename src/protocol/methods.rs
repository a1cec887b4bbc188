//! The table of every method (protocol §3): one line each with its name, whether it reads
//! or writes the store, its own error kinds, its summary, and its handler (whose typed
//! params and result give the schemas). The store's error kinds, the OpenRPC catalogue
//! (`rpc.discover`, `modelauth schema`, `protocol/openrpc.json`), `helper.info` `methods`
//! and `modelauth call --help` are all derived from this table; none of them opens a store.
//!
//! A new method is one line here, its params and result in [`crate::api`] and its handler
//! in the domain's file of [`crate::handlers`].

use crate::api::{
    CandidatesParams, ClearCooldownParams, DiscoverParams, GetParams, InfoParams, ListParams,
    OpenRpcDocument, OrderClearParams, OrderGetParams, OrderSetParams, ProviderIdParams,
    ProviderPutParams, ProvidersListParams, PutParams, RefreshParams, RemoveParams, ReportParams,
    ResolveParams, SealParams, SettingsGetParams, SettingsSetParams, StatusParams,
};
use crate::core::error::ErrorKind as K;
use crate::openclaw::export::ExportParams;
use crate::openclaw::import::{ImportParams, ValidateParams};
use crate::protocol::dispatch::{register, Access, Dispatcher, MethodSpec};

use Access::{None as Pure, Read, Write};

/// Registers every method, in the order `helper.info` lists them. One line per method:
/// (name, store access, own error kinds, summary), handler.
#[rustfmt::skip]
pub(crate) fn register_all(s: &mut Vec<MethodSpec>) {
    register(s, ("helper.info", Read, &[],
        "Name, version, protocol version, store location and the method list."),
        |c, p: InfoParams| c.app.info(p, Dispatcher::method_names(c)));
    register(s, ("rpc.discover", Pure, &[],
        "The OpenRPC 1.x document of every method."),
        |c, _: DiscoverParams| Ok(OpenRpcDocument(c.openrpc().clone())));
    register(s, ("profiles.put", Write, &[K::InvalidProfile, K::ProviderMismatch, K::RevisionConflict],
        "Create or replace a profile; keeps it routable (appended to an explicit order, or first with primary)."),
        |c, p: PutParams| c.app.profiles_put(p));
    register(s, ("profiles.get", Read, &[K::UnknownProfile],
        "One profile of the scope's view; secrets fingerprinted unless reveal."),
        |c, p: GetParams| c.app.profiles_get(p));
    register(s, ("profiles.list", Read, &[],
        "Every profile of the scope's view, sorted by provider and id."),
        |c, p: ListParams| c.app.profiles_list(p));
    register(s, ("profiles.remove", Write, &[K::UnknownProfile, K::RevisionConflict],
        "Remove a profile from a scope, its orders and lastGood."),
        |c, p: RemoveParams| c.app.profiles_remove(p));
    register(s, ("order.get", Read, &[],
        "The explicit order in effect and the exact walk auth.resolve would do now."),
        |c, p: OrderGetParams| c.app.order_get(p));
    register(s, ("order.set", Write, &[K::UnknownProfile, K::ProviderMismatch, K::RevisionConflict],
        "Set the scope's explicit order for a provider."),
        |c, p: OrderSetParams| c.app.order_set(p));
    register(s, ("order.clear", Write, &[],
        "Remove the scope's explicit order for a provider."),
        |c, p: OrderClearParams| c.app.order_clear(p));
    register(s, ("auth.resolve", Write,
        &[K::ProviderMismatch, K::UnknownProfile, K::MissingCredential, K::ExcludedByAuthOrder,
          K::Unavailable, K::SecretUnavailable, K::RefreshFailed],
        "The credential to use now for a provider, and why."),
        |c, p: ResolveParams| c.app.auth_resolve(p));
    register(s, ("auth.candidates", Write, &[],
        "Every usable credential in resolution order, deduplicated, then environment keys."),
        |c, p: CandidatesParams| c.app.auth_candidates(p));
    register(s, ("auth.report", Write, &[K::UnknownProfile],
        "Record how a call with a profile went: success, rate_limit, billing, ... (cooldowns)."),
        |c, p: ReportParams| c.app.auth_report(p));
    register(s, ("auth.clearCooldown", Write, &[K::UnknownProfile],
        "Clear a profile's cooldown and disable windows (or one model's) and its failure counts."),
        |c, p: ClearCooldownParams| c.app.auth_clear_cooldown(p));
    register(s, ("auth.status", Read, &[],
        "Health of every provider and profile in the view, rolled up like `openclaw models status`."),
        |c, p: StatusParams| c.app.auth_status(p));
    register(s, ("settings.get", Read, &[],
        "The effective settings (cooldowns, envFallback, refresh margin, ...)."),
        |c, p: SettingsGetParams| c.app.settings_get(p));
    register(s, ("settings.set", Write, &[K::InvalidSettings, K::RevisionConflict],
        "Merge the given keys into the stored settings; returns the effective settings."),
        |c, p: SettingsSetParams| c.app.settings_set(p));
    register(s, ("store.import", Write, &[K::ShapeUnrecognized, K::ImportInvalid],
        "Import credentials (modelauth, OpenClaw auth-profiles.json, auth.json, SQLite, state directory) in one transaction."),
        |c, p: ImportParams| c.app.store_import(p));
    register(s, ("store.export", Read, &[],
        "One scope as OpenClaw's auth-profiles.json v1 document; secrets fingerprinted unless reveal."),
        |c, p: ExportParams| c.app.store_export(p));
    register(s, ("store.validate", Read, &[K::ShapeUnrecognized, K::ImportInvalid],
        "The errors and warnings store.import would report for a source; writes nothing."),
        |c, p: ValidateParams| c.app.store_validate(p));
    register(s, ("auth.refresh", Write, &[K::UnknownProfile, K::RefreshFailed, K::SecretUnavailable],
        "Refresh an OAuth profile now if it is inside the refresh margin (or always with force); one token call per rotation across processes."),
        |c, p: RefreshParams| c.app.auth_refresh(p));
    register(s, ("providers.put", Write, &[K::RevisionConflict],
        "Register or replace a provider: aliases, extra env key names, OAuth client (tokenUrl, clientId, clientSecretRef, scope)."),
        |c, p: ProviderPutParams| c.app.providers_put(p));
    register(s, ("providers.get", Read, &[K::UnknownProvider],
        "One registered provider, by id or alias."),
        |c, p: ProviderIdParams| c.app.providers_get(p));
    register(s, ("providers.list", Read, &[],
        "Every registered provider, sorted by id."),
        |c, p: ProvidersListParams| c.app.providers_list(p));
    register(s, ("providers.remove", Write, &[K::UnknownProvider],
        "Unregister a provider (its profiles are kept)."),
        |c, p: ProviderIdParams| c.app.providers_remove(p));
    // (r3) The sealed store (PROTOCOL §9).
    register(s, ("store.seal", Write, &[K::StoreSealed, K::StoreKeyMismatch],
        "Seal every plaintext secret under the first configured store key, in bounded transactions beside other helpers (r3)."),
        |c, p: SealParams| c.app.store_seal(p));
    register(s, ("store.rekey", Write, &[K::StoreSealed, K::StoreKeyMismatch],
        "Move every sealed secret to the first configured store key; the old key must still be configured (r3)."),
        |c, p: SealParams| c.app.store_rekey(p));
    register(s, ("store.unseal", Write, &[K::StoreSealed, K::StoreKeyMismatch],
        "Store every secret in plaintext again and drop the store's sealing state (r3)."),
        |c, p: SealParams| c.app.store_unseal(p));
}
