//! Sealing secrets at rest (PROTOCOL §9 r3): the pure envelope ([`envelope`]) and the
//! places store keys come from ([`keys`]). The store seam applies them
//! (`crate::store::sealed`), so both backends share one implementation and no handler
//! ever sees a ciphertext.

pub mod envelope;
pub mod keys;
