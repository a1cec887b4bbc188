//! What a handler sees of a sealed secret that could not be opened (PROTOCOL §9 r3).
//!
//! The store seam (`store::sealed`) opens every sealed field before a handler sees it.
//! When one cannot be opened (no key, a damaged or moved ciphertext, a key that is not
//! configured) the field holds [`UNDECRYPTABLE`] instead: a value no secret input can
//! equal (it holds a NUL, and input with control characters is refused, protocol §2.2),
//! so it is never mistaken for a credential, and it is never a ciphertext.

use crate::core::profile::Credential;
use crate::core::secret_value::Secret;

/// The stand-in for a secret that could not be opened.
pub(crate) const UNDECRYPTABLE: &str = "\u{0}modelauth:undecryptable";

/// The stand-in for a sealed secret this helper holds no key for (the store is sealed and
/// no key, or only keys the store does not list, are configured). Unlike
/// [`UNDECRYPTABLE`] the profile is not skipped by the walk: it is as usable as ever, and a
/// request that needs its secret answers `store_sealed` / `store_key_mismatch`.
pub(crate) const LOCKED: &str = "\u{0}modelauth:sealed";

/// [`LOCKED`] as a [`Secret`].
pub(crate) fn locked() -> Secret {
    Secret::new(LOCKED)
}

/// Whether any inline secret of `c` is [`LOCKED`] or [`UNDECRYPTABLE`]: a value that is
/// not the secret.
pub(crate) fn credential_unopened(c: &Credential) -> bool {
    let f = |s: &Secret| s.expose() == LOCKED || s.expose() == UNDECRYPTABLE;
    match c {
        Credential::ApiKey { key, .. } => key.as_ref().is_some_and(f),
        Credential::Token { token, .. } => token.as_ref().is_some_and(f),
        Credential::OAuth {
            access, refresh, ..
        } => f(access) || f(refresh),
    }
}

/// The stand-in value as a [`Secret`].
pub(crate) fn undecryptable() -> Secret {
    Secret::new(UNDECRYPTABLE)
}

/// Whether `s` is the stand-in.
pub(crate) fn is_undecryptable(s: &Secret) -> bool {
    s.expose() == UNDECRYPTABLE
}

/// Whether any inline secret of `c` (key, token, access or refresh) is the stand-in.
pub(crate) fn credential_undecryptable(c: &Credential) -> bool {
    match c {
        Credential::ApiKey { key, .. } => key.as_ref().is_some_and(is_undecryptable),
        Credential::Token { token, .. } => token.as_ref().is_some_and(is_undecryptable),
        Credential::OAuth {
            access, refresh, ..
        } => is_undecryptable(access) || is_undecryptable(refresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret_value::normalize_secret_input;

    #[test]
    fn no_input_can_be_the_stand_in() {
        assert!(normalize_secret_input(UNDECRYPTABLE).is_err());
        assert!(normalize_secret_input(LOCKED).is_err());
        assert!(credential_unopened(&Credential::Token {
            token: Some(locked()),
            token_ref: None,
            expires: None
        }));
        assert!(is_undecryptable(&undecryptable()));
        assert!(!is_undecryptable(&Secret::new("modelauth:undecryptable")));
    }
}
