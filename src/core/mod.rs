//! The pure core: validation, ids, the resolution walk, cooldown arithmetic, status
//! roll-up, environment keys, settings, error kinds and the redacting secret type.
//!
//! Nothing here does I/O: the clock (`now`, milliseconds since the epoch), the stored
//! state and the environment are passed in, so every rule is unit-tested exhaustively.
//! Depends on nothing else in the crate.

pub(crate) mod envkeys;
pub(crate) mod error;
pub(crate) mod fence;
pub mod ids;
pub mod profile;
pub mod resolve;
pub(crate) mod sealed;
pub mod secret_value;
pub(crate) mod settings;
pub(crate) mod status;
pub mod usage;
