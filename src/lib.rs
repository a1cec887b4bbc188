//! modelauth: a non-interactive credential helper for model-provider auth profiles.
//!
//! Gateways, editors, shell pipelines and cron jobs spawn `modelauth serve` (or
//! `modelauth call METHOD`) and speak line-delimited JSON-RPC 2.0 on stdin/stdout. The
//! contract is `protocol/README.md`; `protocol/openrpc.json` is generated from the types here.
//!
//! Layers (ARCHITECTURE.md; dependencies point down, nothing reaches up):
//!
//! | layer | modules |
//! |---|---|
//! | command line | [`cli`] |
//! | protocol | [`protocol`]: framing, dispatch, OpenRPC |
//! | method handlers | [`handlers`]: one file per domain |
//! | contract types | [`api`]: params and results (serde + schemars) |
//! | bottom, side by side | [`core`] (pure rules), [`store`] (the `Store` trait and its backends), [`secrets`] (SecretRefs, OAuth client), [`openclaw`] (OpenClaw formats) |

pub(crate) mod api;
pub mod cli;
pub mod core;
pub(crate) mod fsread;
pub mod handlers;
pub(crate) mod openclaw;
pub mod protocol;
pub mod seal;
pub(crate) mod secrets;
pub mod store;
