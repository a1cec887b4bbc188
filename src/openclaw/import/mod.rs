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

mod config;
mod normalize;
mod plan;
mod source;
mod types;
mod usage;

pub(crate) use config::{config_profile_orders, mode_mismatches};
#[cfg(test)]
pub(crate) use plan::PlannedProfile;
pub(crate) use plan::{plan, ImportPlan, PlannedOrder, ScopePlan};
pub(crate) use source::{check_version, detect_json, load_json};
pub(crate) use types::{
    EntryError, Format, ImportAction, ImportParams, ImportResult, ImportWarning, Loaded,
    OrderAction, Piece, PieceKind, ProfileAction, ValidateParams, ValidateResult,
};
#[cfg(test)]
pub(crate) use usage::usage_from_openclaw;
