//! The sealed-store envelope (PROTOCOL §9 r3), pure: store keys, their fingerprints, the
//! associated data that binds a ciphertext to its place, and the versioned envelope text.
//!
//! Cryptography is RustCrypto's `chacha20poly1305` (XChaCha20-Poly1305, 256-bit key,
//! random 192-bit nonces, 128-bit tag); nothing here is home-made beyond the framing.
//!
//! - A **store key** is 32 random bytes written as `msk1-` followed by the 43 characters of
//!   their unpadded base64url encoding (RFC 4648 §5): 48 ASCII characters in all.
//! - Its **fingerprint** is `sha256:` + the first 12 hex digits of
//!   SHA-256(`"modelauth-store-key\0"` ‖ key bytes). It names the key; it is never the key.
//! - An **envelope** is `$msealed$1$<12 hex of the key fingerprint>$<base64url(nonce ‖
//!   ciphertext ‖ tag)>`. Version `1` is the only version; anything else is refused.
//! - The **associated data** is a length-prefixed list (u32 big-endian length, then the
//!   bytes) of `"modelauth-seal/1"`, the store id, the row kind (`profile`, `settings`,
//!   `provider`), the scope (`""` = shared), the row id and the field, so a ciphertext
//!   copied to another store, scope, profile or field fails to open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The text every store key starts with.
pub(crate) const KEY_PREFIX: &str = "msk1-";
/// The text every envelope starts with.
pub(crate) const ENVELOPE_PREFIX: &str = "$msealed$";
/// Nonce length of XChaCha20-Poly1305, bytes.
pub(crate) const NONCE_LEN: usize = 24;
/// Authentication tag length, bytes.
pub(crate) const TAG_LEN: usize = 16;
/// Longest envelope text accepted by [`parse`] (a secret is at most a few KiB).
pub(crate) const MAX_ENVELOPE_LEN: usize = 1 << 20;

/// A store key (32 bytes, zeroed on drop) and its fingerprint.
#[derive(Clone)]
pub struct StoreKey {
    bytes: Zeroizing<[u8; 32]>,
    fingerprint: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.fingerprint)
    }
}

/// Why a key or an envelope text was refused (never echoes the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatError {
    /// Not `msk1-` + 43 base64url characters.
    BadKey,
    /// Not `$msealed$` + version + fingerprint + payload.
    NotEnvelope,
    /// An envelope of a version this build does not know.
    UnknownVersion,
    /// The payload is not base64url or shorter than a nonce and a tag.
    BadPayload,
}

impl StoreKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> StoreKey {
        let mut h = Sha256::new();
        h.update(b"modelauth-store-key\0");
        h.update(bytes);
        let d = h.finalize();
        let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
        StoreKey {
            bytes: Zeroizing::new(bytes),
            fingerprint: format!("sha256:{hex}"),
        }
    }

    /// Parses the text form (`msk1-` + 43 base64url characters; surrounding whitespace is
    /// ignored). Errors: [`FormatError::BadKey`].
    pub(crate) fn parse(text: &str) -> Result<StoreKey, FormatError> {
        let t = text.trim();
        let body = t.strip_prefix(KEY_PREFIX).ok_or(FormatError::BadKey)?;
        if body.len() != 43 {
            return Err(FormatError::BadKey);
        }
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| FormatError::BadKey)?,
        );
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| FormatError::BadKey)?;
        Ok(StoreKey::from_bytes(bytes))
    }

    /// The text form of this key (for `modelauth store keygen`).
    pub(crate) fn encode(&self) -> String {
        format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(*self.bytes))
    }

    /// `sha256:<12 hex>`.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The 12 hex digits of the fingerprint, as named in an envelope.
    pub(crate) fn short_id(&self) -> &str {
        &self.fingerprint["sha256:".len()..]
    }

    /// Seals `plaintext` with the given nonce (pure). Use [`random_nonce`] for a nonce.
    pub(crate) fn seal_with_nonce(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> String {
        let cipher = XChaCha20Poly1305::new(self.bytes.as_slice().into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a bounded message cannot fail");
        let mut payload = Vec::with_capacity(NONCE_LEN + ct.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&ct);
        format!(
            "{ENVELOPE_PREFIX}1${}${}",
            self.short_id(),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    /// Seals `plaintext` under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        self.seal_with_nonce(aad, plaintext, random_nonce())
    }

    /// Opens a parsed envelope; `None` when the key is not the envelope's or the
    /// ciphertext, its nonce or the associated data were changed.
    pub(crate) fn open(&self, aad: &[u8], env: &Envelope<'_>) -> Option<Zeroizing<Vec<u8>>> {
        if env.key_id != self.short_id() {
            return None;
        }
        let cipher = XChaCha20Poly1305::new(self.bytes.as_slice().into());
        let (nonce, ct) = env.payload.split_at(NONCE_LEN);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

/// A fresh random store key (the operating system's generator).
pub(crate) fn generate_key() -> StoreKey {
    let mut b = [0u8; 32];
    getrandom_fill(&mut b);
    let k = StoreKey::from_bytes(b);
    zeroize::Zeroize::zeroize(&mut b);
    k
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom_fill(&mut n);
    n
}

fn getrandom_fill(buf: &mut [u8]) {
    use chacha20poly1305::aead::rand_core::RngCore;
    chacha20poly1305::aead::OsRng.fill_bytes(buf);
}

/// A parsed envelope: version 1, the short id of its key, nonce ‖ ciphertext ‖ tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    /// 12 hex digits of the key fingerprint.
    pub key_id: &'a str,
    /// Nonce (24 bytes), then ciphertext and tag (at least 16 bytes).
    pub payload: Vec<u8>,
}

/// Whether `s` is an envelope's text (it may still fail to parse).
pub(crate) fn is_envelope(s: &str) -> bool {
    s.starts_with(ENVELOPE_PREFIX)
}

/// Parses envelope text. Errors: [`FormatError`] (never a panic, whatever the input).
pub(crate) fn parse(s: &str) -> Result<Envelope<'_>, FormatError> {
    if s.len() > MAX_ENVELOPE_LEN {
        return Err(FormatError::BadPayload);
    }
    let rest = s
        .strip_prefix(ENVELOPE_PREFIX)
        .ok_or(FormatError::NotEnvelope)?;
    let mut parts = rest.splitn(3, '$');
    let version = parts.next().ok_or(FormatError::NotEnvelope)?;
    if version != "1" {
        return Err(FormatError::UnknownVersion);
    }
    let key_id = parts.next().ok_or(FormatError::NotEnvelope)?;
    if key_id.len() != 12
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(FormatError::NotEnvelope);
    }
    let b64 = parts.next().ok_or(FormatError::NotEnvelope)?;
    let payload = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| FormatError::BadPayload)?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(FormatError::BadPayload);
    }
    Ok(Envelope { key_id, payload })
}

/// The associated data of one sealed field: store id, row kind (`profile`, `settings`,
/// `provider`), scope (`""` = shared), row id and field, each length-prefixed.
pub fn aad(store_id: &str, kind: &str, scope: &str, id: &str, field: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + id.len() + field.len());
    for part in ["modelauth-seal/1", store_id, kind, scope, id, field] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The body of the `envelope` fuzz target (`fuzz/fuzz_targets/envelope.rs`) and of its
/// seeded test (`tests/envelope_fuzz.rs`): the bytes as envelope text through [`parse`],
/// then [`StoreKey::open`] with a fixed key, and as key text through [`StoreKey::parse`].
/// Never panics; returns whether the input opened (only a real envelope of the fixed key
/// and empty associated data does).
pub fn fuzz_envelope(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let _ = StoreKey::parse(text);
    let Ok(env) = parse(text) else {
        return false;
    };
    assert!(env.payload.len() >= NONCE_LEN + TAG_LEN);
    StoreKey::from_bytes([7; 32]).open(b"", &env).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> StoreKey {
        StoreKey::from_bytes([n; 32])
    }

    #[test]
    fn key_text_round_trips_and_is_48_characters() {
        let k = generate_key();
        let t = k.encode();
        assert_eq!(t.len(), 48);
        assert!(t.starts_with("msk1-"));
        let back = StoreKey::parse(&format!("  {t}\n")).unwrap();
        assert_eq!(back.fingerprint(), k.fingerprint());
        assert!(k.fingerprint().starts_with("sha256:"));
        assert_eq!(k.fingerprint().len(), "sha256:".len() + 12);
        assert_ne!(generate_key().fingerprint(), k.fingerprint());
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in [
            "",
            "msk1-",
            "msk2-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "msk1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "msk1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(
                StoreKey::parse(bad).unwrap_err(),
                FormatError::BadKey,
                "{bad}"
            );
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let k = key(1);
        let a = aad("store", "profile", "", "openai:x", "key");
        let env = k.seal(&a, b"sk-test-123");
        assert!(is_envelope(&env));
        assert!(!env.contains("sk-test"));
        let p = parse(&env).unwrap();
        assert_eq!(p.key_id, k.short_id());
        assert_eq!(k.open(&a, &p).unwrap().as_slice(), b"sk-test-123");
    }

    #[test]
    fn moved_or_changed_ciphertexts_fail_to_open() {
        let k = key(1);
        let a = aad("store", "profile", "", "openai:x", "key");
        let env = k.seal(&a, b"secret");
        let p = parse(&env).unwrap();
        for other in [
            aad("store2", "profile", "", "openai:x", "key"),
            aad("store", "profile", "main", "openai:x", "key"),
            aad("store", "profile", "", "openai:y", "key"),
            aad("store", "profile", "", "openai:x", "token"),
            aad("store", "settings", "", "openai:x", "key"),
        ] {
            assert!(k.open(&other, &p).is_none());
        }
        // Another key, even one claiming the same id, fails.
        assert!(key(2).open(&a, &p).is_none());
        let k2 = key(2);
        let forged = Envelope {
            key_id: k2.short_id(),
            payload: p.payload.clone(),
        };
        assert!(k2.open(&a, &forged).is_none());
        // A flipped bit anywhere fails.
        for i in 0..p.payload.len() {
            let mut q = p.clone();
            q.payload[i] ^= 1;
            assert!(k.open(&a, &q).is_none(), "byte {i}");
        }
    }

    #[test]
    fn nonces_differ_so_equal_secrets_seal_differently() {
        let k = key(3);
        let a = aad("s", "profile", "", "p:x", "key");
        assert_ne!(k.seal(&a, b"same"), k.seal(&a, b"same"));
        // With a fixed nonce the output is deterministic (pure).
        assert_eq!(
            k.seal_with_nonce(&a, b"same", [7; 24]),
            k.seal_with_nonce(&a, b"same", [7; 24])
        );
    }

    #[test]
    fn aad_parts_cannot_be_shifted() {
        assert_ne!(aad("a", "b", "", "c:d", "e"), aad("a", "b", "c", ":d", "e"));
    }

    #[test]
    fn parser_refuses_malformed_envelopes() {
        let k = key(1);
        let env = k.seal(b"", b"x");
        assert!(parse(&env).is_ok());
        assert_eq!(parse("sk-plain").unwrap_err(), FormatError::NotEnvelope);
        assert_eq!(
            parse(&env.replacen("$1$", "$2$", 1)).unwrap_err(),
            FormatError::UnknownVersion
        );
        assert_eq!(
            parse("$msealed$1$0123456789ab$AAAA").unwrap_err(),
            FormatError::BadPayload
        );
        assert_eq!(
            parse("$msealed$1$0123456789AB$AAAA").unwrap_err(),
            FormatError::NotEnvelope
        );
        assert_eq!(parse("$msealed$1$").unwrap_err(), FormatError::NotEnvelope);
        assert_eq!(
            parse("$msealed$1$0123456789ab$***").unwrap_err(),
            FormatError::BadPayload
        );
    }
}
