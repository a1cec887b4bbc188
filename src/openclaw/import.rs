//! Import of existing credentials (protocol §3 "Import, export, validation"): the pure part.
//!
//! Sources are read by the shell ([`crate::handlers::transfer`]) into [`Loaded`] pieces (JSON values
//! with the scope they go to); [`plan`] turns them into an [`ImportPlan`] of validated
//! profiles, orders, lastGood and usage per scope, with a warning per normalised entry and
//! an error per rejected one. Nothing here does I/O.
//!
//! Rules, from protocol §3 and OpenClaw's auth-profile store (its research spec §2.1–2.3, §6.1,
//! §8.3, as summarised in `tests/fixtures/openclaw/legacy-json/README.md`):
//! - legacy aliases are normalised with one warning per entry: `mode` → `type` (a canonical
//!   `type` wins), `apiKey` / `api_key` → `key` (a canonical `key` wins; the discarded value is
//!   never stored), `type: "apiKey"` → `api_key`, a SecretRef object in `key` / `token` →
//!   `keyRef` / `tokenRef`, a legacy ref `{source, id}` gets provider `default`;
//! - rejected entries carry OpenClaw's code as `kind`: `non_object`, `invalid_type` (with
//!   `validTypes`), `missing_provider`; entries that break modelauth's own rules (protocol
//!   §2.2, [`validate_profile`]) carry `invalid_profile` or `provider_mismatch`;
//! - a flat `auth.json` map `{provider: {...}}` gives `<provider>:default`, its type inferred
//!   as api_key from `key` / `apiKey` / `keyRef` (the spec, not the 2026.9.6 doctor, which
//!   drops such entries);
//! - a JSON document of no known shape is `shape_unrecognized` (-32070), never an empty import.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::ids::{self, Aliases};
use crate::core::profile::{
    allowed_fields, escape_pointer, validate_profile, Profile, VALID_TYPES,
};
use crate::core::usage::{Usage, Window};

// ---------------------------------------------------------------- API types

/// An import source format (`format` param); `auto` detects it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
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
    pub fn as_str(self) -> &'static str {
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
pub struct ImportParams {
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
pub struct ValidateParams {
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
pub struct EntryError {
    /// RFC 6901 pointer into the source document (`/profiles/<id>`, or `/<provider>` in a flat map).
    pub pointer: String,
    /// OpenClaw's code (`invalid_type`, `non_object`, `missing_provider`) or modelauth's
    /// (`invalid_profile`, `provider_mismatch`, `redacted_secret`).
    pub kind: String,
    /// What is wrong; never contains a secret.
    pub message: String,
    /// The valid profile types, for `invalid_type` and `invalid_profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_types: Option<Vec<String>>,
    /// Which document of a multi-file source (`state/openclaw.sqlite config_machine_state[authProfiles.store]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Something an import changed or dropped on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportWarning {
    /// RFC 6901 pointer into the source document ("" = the whole source).
    pub pointer: String,
    /// `normalised` (legacy aliases rewritten), `field_dropped`, `order_entry_dropped`,
    /// `last_good_dropped`, `usage_dropped`, `source_skipped`, `ref_wins`.
    pub kind: String,
    /// What happened; never contains a secret.
    pub message: String,
    /// Which document of a multi-file source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What an import did (or, dry, would do) with one profile.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileAction {
    /// The normalised id.
    pub profile_id: String,
    /// `shared` or the agent id.
    pub scope: String,
    /// `created`, `updated`, `unchanged`, `skipped`, or `removed` (`sync`: gone from the
    /// source since an earlier import of it).
    pub action: String,
    /// For `skipped`: `exists` (a different credential is stored; see `replace`); for
    /// `removed`: `removed_in_source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an import did (or, dry, would do) with one explicit order.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAction {
    /// Provider id.
    pub provider: String,
    /// `shared` or the agent id.
    pub scope: String,
    /// The order stored in the scope after the import.
    pub order: Vec<String>,
    /// `created`, `updated`, `unchanged` or `skipped`.
    pub action: String,
    /// For `skipped`: `exists` (a different order is kept; see `replace`); for `updated` of a
    /// kept order: `appended` (imported profiles added to keep them routable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `store.import` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportResult {
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
pub struct ValidateResult {
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
pub enum PieceKind {
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
    /// [`config_profile_orders`].
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
    /// a profile whose stored credential is of another type ([`mode_mismatches`]).
    ConfigModes,
}

/// One JSON document of a source and the scope it goes to.
#[derive(Debug, Clone)]
pub struct Piece {
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
pub struct Loaded {
    /// The format (never `auto`).
    pub format: Format,
    /// The documents, shared ones first.
    pub pieces: Vec<Piece>,
    /// Warnings from reading (a skipped file, an unread WAL).
    pub warnings: Vec<ImportWarning>,
    /// Errors from reading (an agent directory with an invalid id).
    pub errors: Vec<EntryError>,
}

fn shape_unrecognized(what: &str) -> RpcError {
    RpcError::new(
        ErrorKind::ShapeUnrecognized,
        format!("{what} is not a credential store of a known shape; nothing was imported"),
    )
    .with_hint("formats: modelauth, openclaw (auth-profiles.json), openclaw-flat (auth.json), openclaw-sqlite, openclaw-state (a directory such as ~/.openclaw)")
}

const CREDENTIAL_FIELDS: &[&str] = &[
    "type", "mode", "key", "apiKey", "api_key", "keyRef", "token", "tokenRef", "access", "refresh",
];

fn looks_like_credential(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| CREDENTIAL_FIELDS.iter().any(|f| o.contains_key(*f)))
}

/// Detects the format of a JSON document: `{document: {profiles}}` → modelauth,
/// `{profiles: {...}}` → openclaw, a map most of whose values are credential-like objects →
/// openclaw-flat; else `None`.
pub fn detect_json(doc: &Value) -> Option<Format> {
    let o = doc.as_object()?;
    if let Some(Value::Object(d)) = o.get("document") {
        if d.get("profiles").is_some_and(Value::is_object) {
            return Some(Format::Modelauth);
        }
    }
    if o.get("profiles").is_some_and(Value::is_object) {
        return Some(Format::Openclaw);
    }
    let cred = o.values().filter(|v| looks_like_credential(v)).count();
    if cred > 0 && cred * 2 >= o.len() {
        return Some(Format::OpenclawFlat);
    }
    None
}

/// Turns one JSON document into a [`Loaded`] of `format` (`auto` detects it) for the scope
/// `agent`. Errors: `shape_unrecognized` when the shape fits no format (or not the one
/// given); `import_invalid` for a store version other than 1.
pub fn load_json(doc: Value, format: Format, agent: Option<&str>) -> Result<Loaded, RpcError> {
    let format = match format {
        Format::Auto => detect_json(&doc).ok_or_else(|| shape_unrecognized("the document"))?,
        Format::OpenclawSqlite | Format::OpenclawState | Format::ModelauthStore => {
            return Err(RpcError::invalid_params(format!(
                "format {} needs a `path`, not a `document`",
                format.as_str()
            ))
            .with("pointer", "/format"))
        }
        f => f,
    };
    let mut agent = agent.map(str::to_string);
    let (kind, doc, strict) = match format {
        Format::Modelauth => {
            let inner = match doc {
                Value::Object(mut o) if o.contains_key("document") => {
                    // A saved `store.export` result names its scope; the `agent` param wins.
                    if agent.is_none() {
                        agent = o
                            .get("agent")
                            .and_then(Value::as_str)
                            .map(|a| {
                                ids::validate_agent(a).map_err(|e| {
                                    RpcError::new(ErrorKind::ImportInvalid, e.to_string())
                                        .with("pointer", "/agent")
                                })
                            })
                            .transpose()?;
                    }
                    o.remove("document").unwrap_or(Value::Null)
                }
                other => other,
            };
            if !inner.get("profiles").is_some_and(Value::is_object) {
                return Err(shape_unrecognized("the document (format modelauth)"));
            }
            (PieceKind::Store, inner, true)
        }
        Format::Openclaw => {
            if !doc.get("profiles").is_some_and(Value::is_object) {
                return Err(shape_unrecognized("the document (format openclaw)"));
            }
            (PieceKind::Store, doc, false)
        }
        _ => {
            if !doc.is_object() || doc.as_object().is_some_and(Map::is_empty) {
                return Err(shape_unrecognized("the document (format openclaw-flat)"));
            }
            (PieceKind::Flat, doc, false)
        }
    };
    if kind == PieceKind::Store {
        check_version(&doc, "")?;
    }
    Ok(Loaded {
        format,
        pieces: vec![Piece {
            agent,
            kind,
            doc,
            source: None,
            strict,
        }],
        warnings: vec![],
        errors: vec![],
    })
}

/// Refuses a store document whose `version` is present and not 1 (`import_invalid`).
pub fn check_version(doc: &Value, source: &str) -> Result<(), RpcError> {
    match doc.get("version") {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_i64() == Some(1) => Ok(()),
        Some(_) => Err(RpcError::new(
            ErrorKind::ImportInvalid,
            format!(
                "{source}the auth-profile store has a `version` other than 1; nothing was imported"
            ),
        )
        .with("pointer", "/version")),
    }
}

// ---------------------------------------------------------------- the plan

/// A validated profile to import.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedProfile {
    /// The profile, validated as `profiles.put` would.
    pub profile: Profile,
    /// Where it was in the source.
    pub pointer: String,
}

/// An order entry to import: normalised provider and ids, not yet checked against the store.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOrder {
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
pub struct ScopePlan {
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
pub struct ImportPlan {
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

fn entry_error(pointer: &str, kind: &str, message: impl Into<String>) -> EntryError {
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
pub fn plan(loaded: &Loaded, aliases: &Aliases) -> ImportPlan {
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

fn is_secret_view(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 2 && o.contains_key("fingerprint") && o.contains_key("length"))
}

/// A canonical profile object, its normalisation notes, the dropped field names and the
/// literal fields dropped because a ref was given too.
type Normalised = (Map<String, Value>, Vec<String>, Vec<String>, Vec<String>);

/// Rewrites one OpenClaw entry into the canonical profile object `validate_profile` takes.
/// Returns the object, the normalisation notes and the names of dropped unknown fields.
fn normalize_entry(
    key: &str,
    v: &Value,
    ptr: &str,
    flat_provider: Option<&str>,
    strict: bool,
) -> Result<Normalised, EntryError> {
    let Value::Object(src) = v else {
        return Err(entry_error(
            ptr,
            "non_object",
            "a profile entry must be a JSON object",
        ));
    };
    let mut o = src.clone();
    let mut notes = vec![];
    let mut ref_wins = vec![];
    for f in ["key", "token", "access", "refresh"] {
        if o.get(f).is_some_and(is_secret_view) {
            return Err(entry_error(
                ptr,
                "redacted_secret",
                format!(
                    "`{f}` holds a fingerprint, not the secret: export with reveal: true to import"
                ),
            ));
        }
    }
    if !strict {
        let mode = o.remove("mode");
        match (o.get("type").cloned(), mode) {
            (Some(t), Some(m)) if t != m => notes.push("type wins over conflicting mode".into()),
            (Some(_), Some(_)) => notes.push("mode dropped (same as type)".into()),
            (None, Some(m)) => {
                o.insert("type".into(), m);
                notes.push("mode -> type".into());
            }
            _ => {}
        }
        if o.get("type").and_then(Value::as_str) == Some("apiKey") {
            o.insert("type".into(), Value::from("api_key"));
            notes.push("type apiKey -> api_key".into());
        }
        for alias in ["apiKey", "api_key"] {
            if let Some(val) = o.remove(alias) {
                if o.contains_key("key") {
                    notes.push(format!(
                        "key wins over conflicting {alias} ({alias} value discarded)"
                    ));
                } else {
                    o.insert("key".into(), val);
                    notes.push(format!("{alias} -> key"));
                }
            }
        }
        if flat_provider.is_some() && !o.contains_key("type") && o.contains_key("key")
            || flat_provider.is_some() && !o.contains_key("type") && o.contains_key("keyRef")
        {
            o.insert("type".into(), Value::from("api_key"));
            notes.push("type inferred as api_key".into());
        }
        // Era A `credentials/oauth.json`: `{provider: {access, refresh, expires, …}}`, no type.
        if flat_provider.is_some()
            && !o.contains_key("type")
            && (o.contains_key("access") || o.contains_key("refresh"))
        {
            o.insert("type".into(), Value::from("oauth"));
            notes.push("type inferred as oauth (legacy oauth.json)".into());
        }
        for (f, rf) in [("key", "keyRef"), ("token", "tokenRef")] {
            // Both a literal and a ref: OpenClaw keeps the ref and drops the literal.
            if o.contains_key(f) && o.get(rf).is_some_and(Value::is_object) {
                o.remove(f);
                ref_wins.push(f.to_string());
                continue;
            }
            if o.get(f).is_some_and(Value::is_object) && !o.contains_key(rf) {
                let r = o.remove(f).unwrap_or(Value::Null);
                o.insert(rf.into(), r);
                notes.push(format!("SecretRef in {f} -> {rf}"));
            }
        }
        for rf in ["keyRef", "tokenRef"] {
            if let Some(Value::Object(r)) = o.get_mut(rf) {
                if r.contains_key("source") && r.contains_key("id") && !r.contains_key("provider") {
                    r.insert("provider".into(), Value::from("default"));
                    notes.push(format!(
                        "legacy ref in {rf} completed with provider default"
                    ));
                }
            }
        }
    }
    let ty = match o.get("type") {
        Some(Value::String(t)) if VALID_TYPES.contains(&t.as_str()) => t.clone(),
        Some(Value::String(t)) => {
            let shown = if t.chars().count() <= 32 {
                format!("`{t}`")
            } else {
                "a long string".into()
            };
            return Err(entry_error(
                ptr,
                "invalid_type",
                format!("profile type {shown} is not one of api_key, oauth, token"),
            ));
        }
        Some(_) => {
            return Err(entry_error(
                ptr,
                "invalid_type",
                "profile type must be a string: api_key, oauth or token",
            ))
        }
        None => {
            return Err(entry_error(
                ptr,
                "invalid_type",
                "profile has no type (api_key, oauth or token)",
            ))
        }
    };
    match (o.get("provider"), flat_provider) {
        (Some(Value::String(p)), _) if !p.trim().is_empty() => {}
        (_, Some(p)) => {
            o.insert("provider".into(), Value::from(p));
        }
        _ => {
            return Err(entry_error(
                ptr,
                "missing_provider",
                "profile has no `provider`",
            ))
        }
    }
    if let Err(e) = ids::normalize_profile_id(key, &Aliases::new()) {
        return Err(entry_error(ptr, "invalid_profile", e.to_string()));
    }
    o.insert("id".into(), Value::from(key));
    let mut dropped = vec![];
    if !strict {
        let allowed = allowed_fields(&ty);
        let unknown: Vec<String> = o
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            // Secret fields of another type are an error (validate_profile names them), not a drop.
            if CREDENTIAL_FIELDS.contains(&k.as_str()) {
                continue;
            }
            o.remove(&k);
            dropped.push(k);
        }
    }
    Ok((o, notes, dropped, ref_wins))
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

/// OpenClaw walks a provider that has no explicit order over the ids of `openclaw.json`
/// `auth.profiles` (`config_ids`, in file order), stably sorted by type (oauth, token,
/// api_key), expired oauth last, least recently used first (`resolveAuthProfileOrder` with
/// `explicitProfiles`); ids not listed there are not walked. modelauth's default order
/// breaks ties by id instead. Where the two differ for some scope view of the import (the
/// shared scope, or shared + an agent's own without its own order), the config sequence,
/// sorted OpenClaw's way, becomes the shared order, so that every view picks what OpenClaw
/// picks. Pure: `now` is ms since the epoch. Returns the providers given such an order.
pub fn config_profile_orders(
    plan: &mut ImportPlan,
    config_ids: &[String],
    now: i64,
    aliases: &Aliases,
) -> Vec<String> {
    let mut by_provider: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for raw in config_ids {
        if let Ok((id, _)) = ids::normalize_profile_id(raw, aliases) {
            let provider = id
                .split_once(':')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default();
            let list = by_provider.entry(provider).or_default();
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }
    let usage: BTreeMap<String, Option<i64>> = plan
        .scopes
        .iter()
        .flat_map(|s| s.usage.iter().map(|(id, u)| (id.clone(), u.last_used)))
        .collect();
    let last_used = |id: &str| usage.get(id).copied().flatten().unwrap_or(0);
    let expired = |p: &Profile| p.credential.expires().is_some_and(|e| now >= e);
    let oc_key = |p: &Profile| {
        let oauth_expired =
            matches!(p.credential, crate::core::profile::Credential::OAuth { .. }) && expired(p);
        (p.credential.type_rank(), oauth_expired, last_used(&p.id))
    };
    let ma_key = |p: &Profile| {
        (
            p.credential.type_rank(),
            expired(p),
            last_used(&p.id),
            p.id.clone(),
        )
    };
    if by_provider.is_empty() {
        return vec![];
    }
    let shared_ix = match plan.scopes.iter().position(|s| s.agent.is_none()) {
        Some(i) => i,
        None => {
            plan.scopes.insert(0, ScopePlan::default());
            0
        }
    };
    let mut given = vec![];
    for (provider, cfg) in by_provider {
        if plan.scopes[shared_ix].orders.contains_key(&provider) {
            continue;
        }
        let shared: BTreeMap<&str, &Profile> = plan.scopes[shared_ix]
            .profiles
            .values()
            .filter(|pp| pp.profile.provider == provider)
            .map(|pp| (pp.profile.id.as_str(), &pp.profile))
            .collect();
        let mut views = vec![shared.clone()];
        for s in plan.scopes.iter().filter(|s| s.agent.is_some()) {
            if s.orders.contains_key(&provider) {
                continue;
            }
            let mut v = shared.clone();
            for pp in s
                .profiles
                .values()
                .filter(|pp| pp.profile.provider == provider)
            {
                v.insert(pp.profile.id.as_str(), &pp.profile);
            }
            views.push(v);
        }
        let oc_order = |v: &BTreeMap<&str, &Profile>| {
            let mut l: Vec<&Profile> = cfg
                .iter()
                .filter_map(|id| v.get(id.as_str()).copied())
                .collect();
            l.sort_by_key(|p| oc_key(p));
            l.into_iter().map(|p| p.id.clone()).collect::<Vec<_>>()
        };
        let differs = views.iter().filter(|v| !v.is_empty()).any(|v| {
            let mut ma: Vec<&Profile> = v.values().copied().collect();
            ma.sort_by_key(|p| ma_key(p));
            oc_order(v) != ma.into_iter().map(|p| p.id.clone()).collect::<Vec<_>>()
        });
        if !differs {
            continue;
        }
        let mut all: BTreeMap<&str, &Profile> = BTreeMap::new();
        for s in &plan.scopes {
            for pp in s
                .profiles
                .values()
                .filter(|pp| pp.profile.provider == provider)
            {
                all.entry(pp.profile.id.as_str()).or_insert(&pp.profile);
            }
        }
        let ids = oc_order(&all);
        if ids.is_empty() {
            continue;
        }
        plan.warnings.push(ImportWarning {
            pointer: "/auth/profiles".into(),
            kind: "order_from_config".into(),
            message: format!(
                "OpenClaw walks {provider} over the profiles listed in openclaw.json auth.profiles; imported as the shared {provider} order so that the picks match"
            ),
            source: Some("openclaw.json".into()),
        });
        let indexes = ids
            .iter()
            .map(|id| cfg.iter().position(|c| c == id).unwrap_or(0))
            .collect();
        plan.scopes[shared_ix].orders.insert(
            provider.clone(),
            PlannedOrder {
                ids,
                indexes,
                pointer: "/auth/profiles".into(),
                source: Some("openclaw.json /auth/profiles".into()),
            },
        );
        given.push(provider);
    }
    given
}

/// The planned profiles whose openclaw.json `mode` (`modes`: id → mode) names another
/// credential type than the stored one (`api_key`, `token`, `oauth`; `apiKey` and
/// `api-key` spell `api_key`). OpenClaw skips such a profile when it walks; each one is
/// taken out of every planned order with a warning (`mode_mismatch`), and returned so the
/// order made from `auth.profiles` leaves it out too. Pure.
pub fn mode_mismatches(
    plan: &mut ImportPlan,
    modes: &Map<String, Value>,
    aliases: &Aliases,
) -> Vec<String> {
    let mut out = vec![];
    for (raw, mode) in modes {
        let Some(mode) = mode.as_str() else { continue };
        let mode = match mode.to_ascii_lowercase().replace('-', "_").as_str() {
            "apikey" | "api_key" => "api_key".to_string(),
            m => m.to_string(),
        };
        let Ok((id, _)) = ids::normalize_profile_id(raw, aliases) else {
            continue;
        };
        let stored = plan
            .scopes
            .iter()
            .find_map(|s| s.profiles.get(&id))
            .map(|pp| pp.profile.credential.type_name());
        let Some(stored) = stored else { continue };
        if stored == mode {
            continue;
        }
        for s in plan.scopes.iter_mut() {
            for po in s.orders.values_mut() {
                if let Some(i) = po.ids.iter().position(|x| *x == id) {
                    po.ids.remove(i);
                    if i < po.indexes.len() {
                        po.indexes.remove(i);
                    }
                }
            }
        }
        plan.warnings.push(ImportWarning {
            pointer: format!("/auth/profiles/{}/mode", escape_pointer(raw)),
            kind: "mode_mismatch".into(),
            message: format!(
                "openclaw.json says `{id}` is {mode}, but its credential is {stored}: OpenClaw skips it, so it is left out of the order here"
            ),
            source: Some("openclaw.json".into()),
        });
        out.push(id);
    }
    out
}

fn ms_field(o: &Map<String, Value>, f: &str) -> Result<Option<i64>, String> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| f.to_string()),
    }
}

fn str_field(o: &Map<String, Value>, f: &str) -> Result<Option<String>, String> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 128 && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(f.to_string()),
    }
}

/// Maps an OpenClaw `usageStats` entry `{lastUsed, cooldownUntil, cooldownReason,
/// cooldownModel?, disabledUntil, disabledReason, errorCount, failureCounts, lastFailureAt}`
/// (times in ms since the epoch) onto [`Usage`]. Unknown members are ignored. Errors with
/// the name of the first invalid member.
pub fn usage_from_openclaw(v: &Value) -> Result<Usage, String> {
    let Some(o) = v.as_object() else {
        return Err(String::new());
    };
    let mut u = Usage {
        last_used: ms_field(o, "lastUsed")?,
        last_failure_at: ms_field(o, "lastFailureAt")?,
        ..Default::default()
    };
    if let Some(until) = ms_field(o, "cooldownUntil")? {
        u.cooldowns.push(Window {
            until,
            reason: str_field(o, "cooldownReason")?.unwrap_or_else(|| "unknown".into()),
            model: str_field(o, "cooldownModel")?,
        });
    }
    if let Some(until) = ms_field(o, "disabledUntil")? {
        u.disabled = Some(Window {
            until,
            reason: str_field(o, "disabledReason")?.unwrap_or_else(|| "unknown".into()),
            model: None,
        });
    }
    if let Some(n) = ms_field(o, "errorCount")? {
        u.error_count = u32::try_from(n).map_err(|_| "errorCount".to_string())?;
    }
    match o.get("failureCounts") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let n = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| "failureCounts".to_string())?;
                u.failure_counts.insert(k.clone(), n);
            }
        }
        Some(_) => return Err("failureCounts".into()),
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan_of(doc: Value) -> ImportPlan {
        let l = load_json(doc, Format::Auto, None).unwrap();
        plan(&l, &Aliases::new())
    }

    #[test]
    fn detects_the_json_formats() {
        assert_eq!(
            detect_json(&json!({"version": 1, "profiles": {}})),
            Some(Format::Openclaw)
        );
        assert_eq!(
            detect_json(&json!({"document": {"version": 1, "profiles": {}}})),
            Some(Format::Modelauth)
        );
        assert_eq!(
            detect_json(&json!({"openai": {"apiKey": "k"}})),
            Some(Format::OpenclawFlat)
        );
        assert_eq!(
            detect_json(&json!({"name": "x", "scripts": {"a": "b"}})),
            None
        );
        assert_eq!(detect_json(&json!({})), None);
        assert_eq!(detect_json(&json!([1])), None);
        let e = load_json(json!({"name": "x"}), Format::Auto, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeUnrecognized);
        let wrapped = json!({"agent": "main", "document": {"version": 1, "profiles": {}}});
        let l = load_json(wrapped.clone(), Format::Auto, None).unwrap();
        assert_eq!(l.pieces[0].agent.as_deref(), Some("main"));
        let l = load_json(wrapped, Format::Auto, Some("cron")).unwrap();
        assert_eq!(l.pieces[0].agent.as_deref(), Some("cron"));
        let e = load_json(json!({"version": 2, "profiles": {}}), Format::Auto, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImportInvalid);
        let e = load_json(json!({"name": "x"}), Format::Openclaw, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeUnrecognized);
    }

    #[test]
    fn legacy_aliases_are_normalised_with_one_warning_each() {
        let p = plan_of(json!({"version": 1, "profiles": {
            "a:m": {"provider": "a", "mode": "api_key", "apiKey": "k1"},
            "a:t": {"provider": "a", "type": "apiKey", "key": "k2"},
            "a:r": {"provider": "a", "type": "api_key", "key": {"source": "env", "id": "X"}},
            "a:w": {"provider": "a", "type": "api_key", "key": "k3", "apiKey": "k4-ignored"},
            "a:ok": {"provider": "a", "type": "api_key", "key": "k5"}
        }}));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.warnings.len(), 4);
        let s = &p.scopes[0];
        assert_eq!(s.profiles.len(), 5);
        let r = &s.profiles["a:r"].profile.credential;
        assert_eq!(r.secret_ref().unwrap().provider, "default");
        let w = s.profiles["a:w"]
            .profile
            .credential
            .inline_secret()
            .unwrap();
        assert_eq!(w.expose(), "k3");
        assert!(!format!("{:?}", p.warnings).contains("k4-ignored"));
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
    fn usage_stats_map_onto_usage() {
        let u = usage_from_openclaw(&json!({"lastUsed": 5, "cooldownUntil": 9,
            "cooldownReason": "rate_limit", "errorCount": 2, "failureCounts": {"rate_limit": 2},
            "lastFailureAt": 7}))
        .unwrap();
        assert_eq!(u.cooldowns[0].until, 9);
        assert_eq!(u.error_count, 2);
        assert_eq!(
            usage_from_openclaw(&json!({"lastUsed": 1.5})).unwrap_err(),
            "lastUsed"
        );
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

    #[test]
    fn a_ref_beats_a_literal_and_era_a_entries_are_oauth() {
        let p = plan_of(json!({"version": 1, "profiles": {
            "a:both": {"type": "api_key", "provider": "a", "key": "lit", "keyRef": {"source": "env", "provider": "default", "id": "A_KEY"}},
            "b:both": {"type": "token", "provider": "b", "token": "lit", "tokenRef": {"source": "env", "provider": "default", "id": "B_TOK"}}
        }}));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let ptrs: Vec<&str> = p
            .warnings
            .iter()
            .filter(|w| w.kind == "literal_dropped")
            .map(|w| w.pointer.as_str())
            .collect();
        assert_eq!(ptrs, ["/profiles/a:both/key", "/profiles/b:both/token"]);
        assert!(!format!("{:?}", p.warnings).contains("lit\""));
        let c = &p.scopes[0].profiles["a:both"].profile.credential;
        assert!(c.inline_secret().is_none() && c.secret_ref().is_some());
        let e = plan_of(
            json!({"anthropic": {"access": "a", "refresh": "r", "expires": 1_800_000_000_000i64}}),
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(
            e.scopes[0].profiles["anthropic:default"]
                .profile
                .credential
                .type_name(),
            "oauth"
        );
    }

    fn api(id: &str) -> PlannedProfile {
        let provider = id.split(':').next().unwrap();
        PlannedProfile {
            profile: validate_profile(
                &json!({"id": id, "type": "api_key", "provider": provider, "key": "k"}),
                "",
                &Aliases::new(),
            )
            .unwrap(),
            pointer: String::new(),
        }
    }

    #[test]
    fn config_profiles_become_an_order_only_where_the_walks_differ() {
        let mut shared = ScopePlan::default();
        shared.profiles.insert("p:z".into(), api("p:z"));
        shared.profiles.insert("p:a".into(), api("p:a"));
        shared.profiles.insert("q:a".into(), api("q:a"));
        shared.profiles.insert("q:b".into(), api("q:b"));
        let mut agent = ScopePlan {
            agent: Some("cron".into()),
            ..Default::default()
        };
        agent.profiles.insert("p:m".into(), api("p:m"));
        let mut plan = ImportPlan {
            format: Format::OpenclawState,
            scopes: vec![shared, agent],
            warnings: vec![],
            errors: vec![],
        };
        let cfg: Vec<String> = ["p:z", "p:a", "p:m", "q:a", "q:b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let given = config_profile_orders(&mut plan, &cfg, 0, &Aliases::new());
        // p: OpenClaw walks z, a (file order), modelauth would walk a, z: an order is given,
        // with the agent's id where the config put it. q: the same either way: none.
        assert_eq!(given, ["p"]);
        assert_eq!(plan.scopes[0].orders["p"].ids, ["p:z", "p:a", "p:m"]);
        assert!(!plan.scopes[0].orders.contains_key("q"));
    }
}
