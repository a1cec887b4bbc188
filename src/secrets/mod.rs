//! Secrets the helper fetches at resolve time: SecretRefs (`env`, `file`, `exec`:
//! [`refs`]) and the OAuth 2.0 refresh-token grant over HTTP ([`oauth`], RFC 6749 §6).
//! Depends on the core only.

mod exec_output;
mod exec_ref;
mod file_ref;
pub(crate) mod oauth;
pub(crate) mod refs;
pub(crate) mod trust;

pub(crate) use refs::resolve_ref;
