//! The protocol's params and results as serde + schemars types (protocol §3).
//!
//! These types are the single source of the OpenRPC document (`rpc.discover`,
//! `modelauth schema`, `protocol/openrpc.json`). Params are by name; unknown params are
//! refused (`invalid_params`) so that a typo such as `agentId` is not silently ignored.
//! Times are integer milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::profile::CredentialType;
use crate::core::profile::{Profile, ProfileView};
use crate::core::resolve::{CredentialSource, Decision, OrderSource, SkipReason};
use crate::core::secret_value::Secret;
use crate::core::status::{Health, ProfileHealth};

/// `helper.info` params (none).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InfoParams {}

/// Where the store is and what it holds.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoreInfo {
    /// The backend: `sqlite` (a file) or `postgres` (a fleet store).
    pub backend: String,
    /// The store location: the SQLite file's path, or the PostgreSQL URL without any password.
    pub path: String,
    /// Whether the store exists (reads never create it).
    pub exists: bool,
    /// The store's schema version; null when it does not exist.
    pub schema_version: Option<i64>,
    /// *(r3)* Whether secrets are sealed under a store key (PROTOCOL §9).
    pub sealed: bool,
    /// *(r3)* Fingerprints (`sha256:<12 hex>`) of the store keys in use; the first seals
    /// new writes. Empty when not sealed.
    pub keys: Vec<String>,
    /// *(r3)* False when the store could not be reached or read just now (`helper.info`
    /// still answers; `error` says why).
    pub reachable: bool,
    /// *(r3)* When not `reachable`: the store error `{kind, message, retryable, hint}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// `helper.info` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InfoResult {
    /// Always `modelauth`.
    pub name: String,
    /// The crate version.
    pub version: String,
    /// Protocol version: 1.
    pub protocol_version: u32,
    /// The store.
    pub store: StoreInfo,
    /// Every method name.
    pub methods: Vec<String>,
}

/// `rpc.discover` params (none).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverParams {}

/// `profiles.put` params.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PutParams {
    /// The profile: `id`, `type` and the fields of its type (protocol §2.2).
    #[schemars(with = "Profile")]
    pub profile: Value,
    /// The agent scope; omitted or null = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Put it first in the scope's order and record it as lastGood.
    #[serde(default)]
    pub primary: bool,
    /// Only write if the profile's current revision is this (0 = must not exist).
    #[serde(default)]
    pub expected_revision: Option<i64>,
}

/// `profiles.put` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutResult {
    /// The normalised id.
    pub profile_id: String,
    /// The scope written (null = shared).
    pub agent: Option<String>,
    /// True when the id was new in the scope.
    pub created: bool,
    /// The profile's revision after the put.
    pub revision: i64,
    /// The scope's explicit order for the provider after the put, or null when it has none.
    pub order: Option<Vec<String>>,
}

/// `profiles.get` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GetParams {
    /// `<provider>:<name>`.
    pub profile_id: String,
    /// The agent whose view to read; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Include the plain secret fields.
    #[serde(default)]
    pub reveal: bool,
}

/// `profiles.get` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetResult {
    /// The scope whose view was read.
    pub agent: Option<String>,
    /// The profile.
    pub profile: ProfileView,
}

/// `profiles.list` params.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListParams {
    /// The agent whose view to list; omitted = shared only.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only this provider.
    #[serde(default)]
    pub provider: Option<String>,
}

/// `profiles.list` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListResult {
    /// The scope listed.
    pub agent: Option<String>,
    /// Sorted by provider, then id.
    pub profiles: Vec<ProfileView>,
}

/// `profiles.remove` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RemoveParams {
    /// `<provider>:<name>`.
    pub profile_id: String,
    /// The scope; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Say what would go, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Only remove if the profile's revision is this.
    #[serde(default)]
    pub expected_revision: Option<i64>,
}

/// `profiles.remove` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RemoveResult {
    /// The normalised id.
    pub profile_id: String,
    /// The scope.
    pub agent: Option<String>,
    /// True when it was removed (false on a dry run).
    pub removed: bool,
    /// Providers whose order in the scope listed it.
    pub order_entries_removed: Vec<String>,
    /// Providers whose lastGood in the scope was it.
    pub last_good_removed: Vec<String>,
    /// Echo of `dryRun`.
    pub dry_run: bool,
}

/// `order.get` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OrderGetParams {
    /// Provider id (normalised).
    pub provider: String,
    /// The agent; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// The model, for model-scoped cooldowns in `effective`.
    #[serde(default)]
    pub model: Option<String>,
}

/// One entry of `effective`: what `auth.resolve` would do with this candidate now.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EffectiveEntry {
    /// The profile id.
    pub profile_id: String,
    /// Whether it would be used if reached.
    pub usable: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// When the blocking window ends (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `order.get` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderGetResult {
    /// Provider id.
    // Through redact_secret_looking: a key pasted as the provider is not echoed (issue 20).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// The agent.
    pub agent: Option<String>,
    /// The explicit order in effect (agent's, else shared), or null.
    pub order: Option<Vec<String>>,
    /// `agent`, `shared`, or null when there is no explicit order.
    pub source: Option<OrderSource>,
    /// The exact sequence `auth.resolve` would walk now.
    pub effective: Vec<EffectiveEntry>,
}

/// `order.set` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OrderSetParams {
    /// Provider id.
    pub provider: String,
    /// The scope; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Profile ids, first tried first; duplicates dropped; must not be empty.
    pub order: Vec<String>,
    /// Only write if the order's revision is this (0 = no order yet).
    #[serde(default)]
    pub expected_revision: Option<i64>,
}

/// `order.set` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderSetResult {
    /// Provider id.
    // Through redact_secret_looking: a key pasted as the provider is not echoed (issue 20).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// The scope.
    pub agent: Option<String>,
    /// The stored order.
    pub order: Vec<String>,
    /// The order's revision.
    pub revision: i64,
}

/// `order.clear` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OrderClearParams {
    /// Provider id.
    pub provider: String,
    /// The scope; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
}

/// `order.clear` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderClearResult {
    /// Provider id.
    // Through redact_secret_looking: a key pasted as the provider is not echoed (issue 20).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// The scope.
    pub agent: Option<String>,
    /// False when there was nothing to clear.
    pub cleared: bool,
}

/// `auth.resolve` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResolveParams {
    /// Provider id (normalised); may be omitted when `profileId` is given.
    #[serde(default)]
    pub provider: Option<String>,
    /// The agent; omitted = shared only.
    #[serde(default)]
    pub agent: Option<String>,
    /// The model, for model-scoped cooldowns.
    #[serde(default)]
    pub model: Option<String>,
    /// Use exactly this profile; its problem is the error.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// Include `trace`.
    #[serde(default)]
    pub explain: bool,
}

/// One line of `trace`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TraceEntry {
    /// The profile considered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    /// Or the environment variable considered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// `chosen` or `skipped`.
    pub decision: Decision,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    /// When the blocking window ends (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `auth.resolve` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResolveResult {
    /// The chosen profile, or null for an environment key.
    pub profile_id: Option<String>,
    /// Provider id.
    pub provider: String,
    /// The agent.
    pub agent: Option<String>,
    /// `api_key`, `token` or `oauth`.
    #[serde(rename = "type")]
    pub kind: CredentialType,
    /// `profile` or `env`.
    pub source: CredentialSource,
    /// The environment variable, for `source: env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// The string to send: API key, token or OAuth access token.
    pub secret: Secret,
    /// Expiry (ms since the epoch) or null.
    pub expires: Option<i64>,
    /// E-mail of the profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// OAuth account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The first candidate of the walk, when it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<SkipReason>,
    /// Every candidate and the decision taken (with `explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<TraceEntry>>,
}

/// `rpc.discover` result: the OpenRPC 1.x document.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub(crate) struct OpenRpcDocument(pub Value);

impl schemars::JsonSchema for OpenRpcDocument {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OpenRpcDocument".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "An OpenRPC 1.x document (https://spec.open-rpc.org), the same as `modelauth schema` prints.",
            "required": ["openrpc", "info", "methods"]
        })
    }
}
/// `auth.report` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReportParams {
    /// The profile the call used.
    pub profile_id: String,
    /// How the call went. Either this or `httpStatus` is required; when both are given
    /// this one wins.
    #[serde(default)]
    pub outcome: Option<crate::core::usage::Outcome>,
    /// The provider's HTTP status, mapped to an outcome when `outcome` is absent (r2):
    /// 2xx success, 429 rate_limit, 402 billing, 401/403 auth, 404 model_not_found,
    /// 408/504 timeout, 500/502/503/529 overloaded, other 4xx format, else unknown.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// The provider's `Retry-After`, in milliseconds (r2): a new rate_limit, overloaded or
    /// timeout window lasts at least this long, capped at `rateLimitMaxMs`; an active
    /// window is never shortened or extended.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// The model of the call: `rate_limit`, `timeout` and `model_not_found` windows are
    /// scoped to it.
    #[serde(default)]
    pub model: Option<String>,
    /// The agent whose view holds the profile; a success records lastGood in its scope.
    #[serde(default)]
    pub agent: Option<String>,
}

/// `auth.report` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportResult {
    /// The normalised id.
    pub profile_id: String,
    /// The agent.
    pub agent: Option<String>,
    /// The outcome used: the given `outcome`, else the one `httpStatus` maps to.
    pub outcome: crate::core::usage::Outcome,
    /// False when nothing was recorded (a failure of a cooldown-exempt provider).
    pub recorded: bool,
    /// The usage state after the report (times in ms since the epoch).
    pub usage: crate::core::profile::UsageView,
}

/// `auth.clearCooldown` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClearCooldownParams {
    /// The profile (usage state belongs to the credential, whatever the scope).
    pub profile_id: String,
    /// Only clear the windows scoped to this model.
    #[serde(default)]
    pub model: Option<String>,
    /// The agent whose view holds the profile; omitted = any scope.
    #[serde(default)]
    pub agent: Option<String>,
}

/// `auth.clearCooldown` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClearCooldownResult {
    /// The normalised id.
    pub profile_id: String,
    /// True when a window or a failure count was removed.
    pub cleared: bool,
    /// The usage state after clearing.
    pub usage: crate::core::profile::UsageView,
}

fn default_expiring_within() -> i64 {
    86_400_000
}

/// `auth.status` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StatusParams {
    /// The agent whose view to report; omitted = shared only.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only this provider (reported `missing` when it has no profile).
    #[serde(default)]
    pub provider: Option<String>,
    /// A credential expiring within this many milliseconds is `expiring` (default 24 h).
    #[serde(default = "default_expiring_within")]
    pub expiring_within_ms: i64,
    /// Also run `exec` SecretRefs to see whether they resolve (`env` and `file` refs are
    /// always checked, without side effects).
    #[serde(default)]
    pub probe: bool,
}

impl Default for StatusParams {
    fn default() -> Self {
        StatusParams {
            agent: None,
            provider: None,
            expiring_within_ms: default_expiring_within(),
            probe: false,
        }
    }
}

/// One profile in `auth.status`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileStatus {
    /// The profile id.
    pub profile_id: String,
    /// `api_key`, `token` or `oauth`.
    #[serde(rename = "type")]
    pub kind: CredentialType,
    /// `ok`, `static`, `expiring`, `expired`, `refreshable`, `cooldown`, `disabled`,
    /// `needs_reauth` or `ref_unavailable`.
    pub status: ProfileHealth,
    /// Why (`rate_limit`, `billing`, `expired`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Expiry, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// End of the cooldown/disable window, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// One provider in `auth.status`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderStatus {
    /// Provider id.
    // Through redact_secret_looking: a key pasted as the provider is not echoed (issue 20).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// `missing`, `static`, `expired`, `expiring` or `ok`.
    pub status: Health,
    /// The earliest expiry of its tokens and oauth profiles, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Its profiles, in the order `auth.resolve` walks them.
    pub profiles: Vec<ProfileStatus>,
    /// Environment variables offering keys for it (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<String>,
}

/// `auth.status` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusResult {
    /// The agent.
    pub agent: Option<String>,
    /// Roll-up of every provider: `missing`, `static`, `expired`, `expiring` or `ok`.
    pub overall: Health,
    /// Every provider with a profile in the view (and the one asked for), sorted.
    pub providers: Vec<ProviderStatus>,
    /// When the status was taken, ms since the epoch.
    pub now: i64,
}

/// `auth.candidates` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CandidatesParams {
    /// Provider id (normalised).
    pub provider: String,
    /// The agent; omitted = shared only.
    #[serde(default)]
    pub agent: Option<String>,
    /// The model, for model-scoped cooldowns.
    #[serde(default)]
    pub model: Option<String>,
}

/// One usable credential of `auth.candidates`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateEntry {
    /// The profile, for `source: profile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    /// The environment variable, for `source: env`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// `profile` or `env`.
    pub source: CredentialSource,
    /// `api_key`, `token` or `oauth`.
    #[serde(rename = "type")]
    pub kind: CredentialType,
    /// The string to send.
    pub secret: Secret,
    /// Expiry (ms since the epoch) or null.
    pub expires: Option<i64>,
}

/// `auth.candidates` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidatesResult {
    /// Provider id.
    // Through redact_secret_looking: a key pasted as the provider is not echoed (issue 20).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// The agent.
    pub agent: Option<String>,
    /// Every usable credential in resolution order, deduplicated by secret, then env keys.
    pub candidates: Vec<CandidateEntry>,
}

/// `settings.get` params (none).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsGetParams {}

/// `settings.set` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SettingsSetParams {
    /// The keys to change; merged into the stored ones (`cooldowns` key by key).
    #[schemars(with = "crate::core::settings::Settings")]
    pub settings: serde_json::Map<String, Value>,
    /// Store only if the settings revision is still this one (`revision_conflict` otherwise),
    /// so two editors of `secretProviders` do not overwrite each other.
    #[serde(default)]
    pub expected_revision: Option<i64>,
}

/// `settings.get` / `settings.set` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingsResult {
    /// The effective settings (durations in milliseconds).
    pub settings: crate::core::settings::Settings,
    /// The settings revision: 0 before the first `settings.set`, +1 per successful one
    /// (give it as `expectedRevision`).
    pub revision: i64,
}

/// A provider's OAuth client (protocol §5.2): where and as whom refresh tokens are redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProviderOAuth {
    /// The token endpoint (RFC 6749 §3.2): `https://`, or `http://` to a loopback address.
    pub token_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Where the client secret lives, for a confidential client (resolved at refresh time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<crate::core::profile::SecretRef>,
    /// `scope` sent with the refresh grant (RFC 6749 §6), when the provider needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderView {
    /// The canonical provider id.
    pub id: String,
    /// Other ids normalised to this one everywhere (`claude-cli` → `anthropic`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Extra environment variables holding keys for it (protocol §6), after the standard ones.
    #[serde(default)]
    pub env_vars: Vec<String>,
    /// Its OAuth client, used to refresh oauth profiles without their own `tokenUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<ProviderOAuth>,
    /// True for one of OpenClaw's built-in OAuth providers that `providers.put` has not
    /// overridden (protocol §5.2).
    #[serde(default)]
    pub builtin: bool,
    /// The registration's revision: 1 when first registered, +1 per `providers.put`; 0 for
    /// a built-in provider that is not registered (give it as `expectedRevision`).
    #[serde(default)]
    pub revision: i64,
}

/// `providers.put` params: creates or replaces the provider's registration.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProviderPutParams {
    /// The provider id (`^[a-z0-9][a-z0-9._-]{0,63}$`, trimmed and lower-cased).
    pub id: String,
    /// Alias ids.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// Environment variable names.
    #[serde(default)]
    pub env_vars: Option<Vec<String>>,
    /// The OAuth client.
    #[serde(default)]
    pub oauth: Option<ProviderOAuth>,
    /// Only write if the registration's current revision is this (0 = must not be
    /// registered yet); `revision_conflict` otherwise, and nothing changes.
    #[serde(default)]
    pub expected_revision: Option<i64>,
}

/// `providers.put` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderPutResult {
    /// The provider as stored.
    pub provider: ProviderView,
    /// True when it was not registered before.
    pub created: bool,
}

/// `providers.get` / `providers.remove` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProviderIdParams {
    /// The provider id or one of its aliases.
    pub id: String,
}

/// `providers.get` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderGetResult {
    /// The provider.
    pub provider: ProviderView,
}

/// `providers.list` params (none).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvidersListParams {}

/// `providers.list` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProvidersListResult {
    /// Every registered provider, sorted by id.
    pub providers: Vec<ProviderView>,
}

/// `providers.remove` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderRemoveResult {
    /// The canonical id removed.
    pub id: String,
    /// Always true (an unknown id is `unknown_provider`).
    pub removed: bool,
}

/// `auth.refresh` params.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RefreshParams {
    /// The oauth profile.
    pub profile_id: String,
    /// The agent whose view holds it; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Refresh even when the access token is not inside `refreshMarginMs` of expiry.
    #[serde(default)]
    pub force: bool,
}

/// `auth.refresh` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshResult {
    /// The profile.
    pub profile_id: String,
    /// The agent.
    pub agent: Option<String>,
    /// True when this call redeemed the refresh token; false when it was not due or another
    /// process or request refreshed it meanwhile.
    pub refreshed: bool,
    /// Expiry of the stored access token now (ms since the epoch).
    pub expires: i64,
}

/// Hand-written so that a Debug print never shows a secret: `profile` may hold a secret.
impl std::fmt::Debug for PutParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutParams").finish_non_exhaustive()
    }
}

/// *(r3)* `store.seal`, `store.rekey` and `store.unseal` params (none; the keys come from
/// the environment of the helper, PROTOCOL §9).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SealParams {}

/// *(r3)* What `store.seal`, `store.rekey` or `store.unseal` did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SealResult {
    /// Whether the store is sealed now.
    pub sealed: bool,
    /// Fingerprints of the store keys in use now (the first seals new writes).
    pub keys: Vec<String>,
    /// Profiles rewritten.
    pub profiles: u64,
    /// Write transactions used (each changes at most 200 profiles).
    pub transactions: u64,
    /// `<scope>/<profile id>` of profiles left unchanged because a sealed field could not
    /// be opened (scope empty = shared); they are skipped as `undecryptable` by the walk.
    pub undecryptable: Vec<String>,
    /// Secret fields still stored in plaintext.
    pub plaintext_secrets: u64,
}
