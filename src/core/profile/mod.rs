//! Auth profiles: the stored shape, the validation of protocol §2.2 and the
//! `ProfileView` callers see.
//!
//! [`validate_profile`] is pure: it takes the caller's JSON and the alias map and returns
//! a [`Profile`] or an `invalid_profile` error with a JSON pointer, `validTypes` and, for a
//! near miss, a hint. Secrets are normalised on the way in ([`crate::core::secret_value`]).

mod fields;
mod secret_ref;
mod types;
mod validate;
mod view;

pub(crate) use fields::{allowed_fields, escape_pointer};
pub(crate) use secret_ref::validate_secret_ref;
pub use types::{Credential, CredentialType, Profile, SecretRef, SecretSource, VALID_TYPES};
pub use validate::validate_profile;
pub use view::{ProfileView, StoredProfile, UsageView};
