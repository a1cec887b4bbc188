//! The wire and source types of import: the `format` param, `store.import` /
//! `store.validate` params and results, and the loaded pieces of a source.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An import source format (`format` param); `auto` detects it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Format {
    /// Detect: a directory is `openclaw-state`, a SQLite file `openclaw-sqlite`, JSON by shape.
    #[default]
    Auto,
    /// modelauth's own export: the `{agent, document}` result of `store.export` (its `agent`
    /// is the scope unless the `agent` param is given) or its bare document; canonical
    /// fields only (no legacy aliases).
    Modelauth,
    /// OpenClaw's `auth-profiles.json` v1: `{version, profiles, order, lastGood, usageStats}`,
    /// legacy aliases accepted.
    Openclaw,
    /// OpenClaw's legacy flat `auth.json`: `{provider: {...}}` → `<provider>:default`.
    OpenclawFlat,
    /// One `openclaw-agent.sqlite` (tables `auth_profile_store` / `auth_profile_state`, row
    /// `primary`) or a global `state/openclaw.sqlite` (`config_machine_state`).
    OpenclawSqlite,
    /// A whole OpenClaw state directory such as `~/.openclaw`.
    OpenclawState,
    /// A modelauth SQLite store file (another machine's `store.db`): every scope's
    /// profiles, orders, lastGood, usage state, providers and settings (PROTOCOL §2.3 r2).
    ModelauthStore,
}

impl Format {
    /// The `format` string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Modelauth => "modelauth",
            Format::Openclaw => "openclaw",
            Format::OpenclawFlat => "openclaw-flat",
            Format::OpenclawSqlite => "openclaw-sqlite",
            Format::OpenclawState => "openclaw-state",
            Format::ModelauthStore => "modelauth-store",
        }
    }
}

/// `store.import` params.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ImportParams {
    /// A file or directory to read (only read: never changed, locked or renamed). A leading
    /// `~/` is the home directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Or the JSON document itself.
    #[serde(default)]
    pub document: Option<Value>,
    /// The source format; `auto` (default) detects it.
    #[serde(default)]
    pub format: Format,
    /// The scope to import into (omitted = shared). Not allowed with `openclaw-state`,
    /// whose directory names the scopes.
    #[serde(default)]
    pub agent: Option<String>,
    /// Report what would happen; write nothing (the store is not even created).
    #[serde(default)]
    pub dry_run: bool,
    /// Replace an existing different credential instead of keeping it (`skipped: exists`).
    #[serde(default)]
    pub replace: bool,
    /// *(r3, §11)* Also bring the source's secret providers and settings (openclaw.json
    /// `secrets.providers`; a modelauth store's `providers` and `settings`). Without it
    /// they are only named in `settings` (action `skipped`, reason `includeSettings`).
    #[serde(default)]
    pub include_settings: bool,
    /// Make this store's view of the source equal to the source as it is now (a re-import
    /// after changes in OpenClaw): implies `replace` for what the source holds, and removes
    /// the profiles and orders that an earlier import of the same `path` brought and the
    /// source no longer holds (reported `removed`, reason `removed_in_source`). Needs `path`.
    #[serde(default)]
    pub sync: bool,
}

/// `store.validate` params.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ValidateParams {
    /// A file or directory to read.
    #[serde(default)]
    pub path: Option<String>,
    /// Or the JSON document itself.
    #[serde(default)]
    pub document: Option<Value>,
    /// The source format; `auto` (default) detects it.
    #[serde(default)]
    pub format: Format,
}

/// Hand-written so that a Debug print never shows a secret: `document` may hold secrets.
impl std::fmt::Debug for ImportParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportParams").finish_non_exhaustive()
    }
}

/// Hand-written so that a Debug print never shows a secret: `document` may hold secrets.
impl std::fmt::Debug for ValidateParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateParams").finish_non_exhaustive()
    }
}

/// A rejected entry of an import source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntryError {
    /// RFC 6901 pointer into the source document (`/profiles/<id>`, or `/<provider>` in a flat map).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub pointer: String,
    /// OpenClaw's code (`invalid_type`, `non_object`, `missing_provider`) or modelauth's
    /// (`invalid_profile`, `provider_mismatch`, `redacted_secret`).
    pub kind: String,
    /// What is wrong; never contains a secret.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub message: String,
    /// The valid profile types, for `invalid_type` and `invalid_profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_types: Option<Vec<String>>,
    /// Which document of a multi-file source (`state/openclaw.sqlite config_machine_state[authProfiles.store]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::core::error::serialize_redacted_opt")]
    pub source: Option<String>,
}

/// Something an import changed or dropped on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportWarning {
    /// RFC 6901 pointer into the source document ("" = the whole source).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub pointer: String,
    /// `normalised` (legacy aliases rewritten), `field_dropped`, `order_entry_dropped`,
    /// `last_good_dropped`, `usage_dropped`, `source_skipped`, `ref_wins`.
    pub kind: String,
    /// What happened; never contains a secret.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub message: String,
    /// Which document of a multi-file source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::core::error::serialize_redacted_opt")]
    pub source: Option<String>,
}

/// What an import did (or, dry, would do) with one profile, order, setting or named
/// secret (protocol §3 `store.import`): the `action` of [`ProfileAction`],
/// [`OrderAction`], [`crate::openclaw::settings_import::SettingAction`] and
/// [`crate::openclaw::settings_import::SecretAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ImportAction {
    /// It was not in this store; now it is.
    Created,
    /// A different one was stored; it was replaced (`replace`, `sync`), or an order kept
    /// and appended to.
    Updated,
    /// The same one was already stored.
    Unchanged,
    /// Not imported; `reason` says why (`exists`, `includeSettings`, `invalid`).
    Skipped,
    /// (`sync`, profiles only) gone from the source since an earlier import of it: removed.
    Removed,
    /// (named secrets only) neither the source's secret store nor this store has it.
    Missing,
}

impl ImportAction {
    /// Whether the action writes to the store (`created` or `updated`).
    pub(crate) fn writes(self) -> bool {
        matches!(self, ImportAction::Created | ImportAction::Updated)
    }
}

/// What an import did (or, dry, would do) with one profile.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileAction {
    /// The normalised id.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub profile_id: String,
    /// `shared` or the agent id.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub scope: String,
    /// `created`, `updated`, `unchanged`, `skipped`, or `removed` (`sync`: gone from the
    /// source since an earlier import of it).
    pub action: ImportAction,
    /// For `skipped`: `exists` (a different credential is stored; see `replace`); for
    /// `removed`: `removed_in_source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an import did (or, dry, would do) with one explicit order.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderAction {
    /// Provider id.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// `shared` or the agent id.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub scope: String,
    /// The order stored in the scope after the import.
    pub order: Vec<String>,
    /// `created`, `updated`, `unchanged` or `skipped`.
    pub action: ImportAction,
    /// For `skipped`: `exists` (a different order is kept; see `replace`); for `updated` of a
    /// kept order: `appended` (imported profiles added to keep them routable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `store.import` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportResult {
    /// The format read (detected when `auto`).
    pub format: Format,
    /// The `agent` param.
    pub agent: Option<String>,
    /// Echo of `dryRun`.
    pub dry_run: bool,
    /// One entry per valid profile, sorted by scope and id.
    pub profiles: Vec<ProfileAction>,
    /// One entry per imported order.
    pub orders: Vec<OrderAction>,
    /// Normalisations and dropped parts.
    pub warnings: Vec<ImportWarning>,
    /// Rejected entries (the valid ones are imported).
    pub errors: Vec<EntryError>,
    /// *(r3, §11)* Each secret provider, provider registration and setting of the source:
    /// what the import did (or, dry, would do) with it; `skipped` with reason
    /// `includeSettings` when the param is not set.
    pub settings: Vec<crate::openclaw::settings_import::SettingAction>,
    /// *(r3, §12)* Each named secret (an entry of OpenClaw's shared secret store that an
    /// imported `store` SecretRef names): what the import did with it. Never the value.
    pub secrets: Vec<crate::openclaw::settings_import::SecretAction>,
}

/// `store.validate` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ValidateResult {
    /// True when no entry was rejected.
    pub valid: bool,
    /// The format read (detected when `auto`).
    pub format: Format,
    /// The same errors `store.import` would report.
    pub errors: Vec<EntryError>,
    /// The same normalisation warnings `store.import` would report.
    pub warnings: Vec<ImportWarning>,
    /// *(r3, §11)* The secret providers, provider registrations and settings of the source,
    /// which `store.import` brings only with `includeSettings: true`.
    pub settings: Vec<crate::openclaw::settings_import::SettingAction>,
}

// ---------------------------------------------------------------- loaded sources

/// What a piece of a source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceKind {
    /// An auth-profiles store document `{version, profiles, order?, lastGood?, usageStats?}`.
    Store,
    /// A state document `{version, order?, lastGood?, usageStats?}` (its `profiles`, if any, ignored).
    State,
    /// A flat `{provider: {...}}` map.
    Flat,
    /// A legacy flat map inside a state directory (Era A `credentials/oauth.json`, an
    /// agent's `auth.json`): fills only ids the scope's other pieces do not hold, as
    /// OpenClaw's doctor does.
    FlatFill,
    /// The ids of openclaw.json `auth.profiles` in file order (a JSON array): see
    /// [`super::config_profile_orders`].
    ConfigProfiles,
    /// A config order `{provider: [ids]}` (openclaw.json `auth.order`): it fills in the
    /// providers the state documents of the scope do not order.
    ConfigOrder,
    /// The live entries of OpenClaw's shared secret store (`state/openclaw.sqlite` table
    /// `secret_store_entries`, team scope): `{name: value}` (protocol §12 r3).
    SecretStore,
    /// openclaw.json `secrets.providers` (`{alias: {source, ...}}`), imported as settings
    /// only with `includeSettings` (protocol §11 r3).
    SecretProviders,
    /// The `mode` of each openclaw.json `auth.profiles` entry: `{id: mode}`. OpenClaw skips
    /// a profile whose stored credential is of another type ([`super::mode_mismatches`]).
    ConfigModes,
}

/// One JSON document of a source and the scope it goes to.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    /// `None` = the shared scope.
    pub agent: Option<String>,
    /// What it holds.
    pub kind: PieceKind,
    /// The document.
    pub doc: Value,
    /// Where it came from, for multi-document sources.
    pub source: Option<String>,
    /// Canonical fields only (format `modelauth`): no alias normalisation.
    pub strict: bool,
}

/// A source read into JSON pieces.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The format (never `auto`).
    pub format: Format,
    /// The documents, shared ones first.
    pub pieces: Vec<Piece>,
    /// Warnings from reading (a skipped file, an unread WAL).
    pub warnings: Vec<ImportWarning>,
    /// Errors from reading (an agent directory with an invalid id).
    pub errors: Vec<EntryError>,
}
