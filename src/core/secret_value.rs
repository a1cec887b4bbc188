//! Secret values: a wrapper whose `Debug` never shows the value, the input
//! normalisation of protocol §2.2, and the fingerprint shown in place of a secret.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A secret string (API key, token, OAuth access or refresh token).
///
/// `Debug` prints `Secret(REDACTED)`; the value is reachable only through
/// [`Secret::expose`]. It serialises as the plain string because the store and the
/// `auth.resolve` result need it; nothing in the logging path serialises it.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps an already-normalised value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The plain value. Call it only where the value must leave the process
    /// (`auth.resolve`, `reveal: true`, the store).
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `{fingerprint: "sha256:<12 hex>", length}`: what is shown instead of the value.
    pub(crate) fn view(&self) -> SecretView {
        SecretView {
            fingerprint: fingerprint(self.expose()),
            length: self.expose().chars().count(),
        }
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A secret value. CR, LF, U+2028 and U+2029 are removed and the value trimmed; it must not be empty or contain other control characters."
        })
    }
}

/// What a caller sees instead of a secret: `fingerprint` is `sha256:` plus the first 12
/// hex digits of SHA-256 of the value, `length` its length in characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SecretView {
    /// `sha256:<first 12 hex of sha256(secret)>`.
    pub fingerprint: String,
    /// Length of the secret in characters.
    pub length: usize,
}

/// `sha256:<first 12 hex digits of SHA-256(value)>`.
pub(crate) fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut s = String::with_capacity(19);
    s.push_str("sha256:");
    for b in &digest[..6] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Why a secret input was refused (protocol §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretInputError {
    /// Nothing left after removing line breaks and trimming.
    Empty,
    /// A control character other than CR, LF, U+2028, U+2029 (tab included).
    ControlCharacter,
}

/// Normalises secret input as protocol §2.2 says: CR, LF, U+2028 and U+2029 are removed
/// and the value trimmed; an empty result or any other control character is an error.
///
/// This is what makes `printf 'sk-...\n' | ...` and a key pasted with a wrapped line work.
pub(crate) fn normalize_secret_input(raw: &str) -> Result<Secret, SecretInputError> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\u{2028}' | '\u{2029}'))
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return Err(SecretInputError::Empty);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(SecretInputError::ControlCharacter);
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(REDACTED)");
        assert!(!format!("{:?}", Some(&s)).contains("very"));
    }

    #[test]
    fn fingerprint_is_sha256_prefix_of_12_hex() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf8f01");
        let v = Secret::new("abc").view();
        assert_eq!(v.length, 3);
    }

    #[test]
    fn secret_input_drops_line_breaks_and_trims() {
        let s = normalize_secret_input("  sk-ab\r\ncd\u{2028}ef\n").unwrap();
        assert_eq!(s.expose(), "sk-abcdef");
    }

    #[test]
    fn secret_input_refuses_empty_and_control_characters() {
        assert_eq!(
            normalize_secret_input(" \r\n ").unwrap_err(),
            SecretInputError::Empty
        );
        assert_eq!(
            normalize_secret_input("sk-a\tb").unwrap_err(),
            SecretInputError::ControlCharacter
        );
        assert_eq!(
            normalize_secret_input("sk-a\u{0}b").unwrap_err(),
            SecretInputError::ControlCharacter
        );
    }
}
