//! Secrets the helper fetches at resolve time: SecretRefs (`env`, `file`, `exec`:
//! [`refs`]) and the OAuth 2.0 refresh-token grant over HTTP ([`oauth`], RFC 6749 §6).
//! Depends on the core only.

mod exec_output;
mod exec_ref;
mod file_ref;
pub mod oauth;
pub mod refs;
pub mod trust;

pub use refs::resolve_ref;
