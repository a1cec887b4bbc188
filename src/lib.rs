//! modelauth: a non-interactive credential helper for model-provider auth profiles.
//!
//! Gateways, editors, shell pipelines and cron jobs spawn `modelauth serve` (or
//! `modelauth call METHOD`) and speak line-delimited JSON-RPC 2.0 on stdin/stdout. The
//! contract is protocol/README.md; `protocol/openrpc.json` is generated from the types here.
//!
//! Layout (dependencies point down; the pure core does no I/O):
//!
//! | layer | modules |
//! |---|---|
//! | command line | [`cli`] (`serve`, `call`, `schema`) |
//! | transport | [`transport`] (framing, ids, batches, notifications) |
//! | registry | [`rpc`] (jsonrpsee `RpcModule`), [`openrpc`], [`api`] (params/results) |
//! | shell | [`service`] (handlers), [`providers`] (provider registry), [`refresh`] (OAuth refresh, single flight), [`oauth`] (RFC 6749 refresh grant over HTTP), [`flight`] (per-profile refresh lock), [`transfer`] (import/export sources), [`store`] (SQLite), [`secrets`] (SecretRef resolution: env, file, exec) |
//! | pure core | [`import`] (import plans), [`export`] (export documents), [`resolve`] (the walk), [`profile`] (validation), [`usage`] (windows, cooldown arithmetic), [`envkeys`], [`status`], [`ids`], [`secret`], [`settings`], [`error`] |

pub mod api;
pub mod cli;
pub mod envkeys;
pub mod error;
pub mod export;
pub mod flight;
pub mod fsread;
pub mod ids;
pub mod import;
pub mod oauth;
pub mod openrpc;
pub mod profile;
pub mod providers;
pub mod refresh;
pub mod resolve;
pub mod rpc;
pub mod secret;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod status;
pub mod store;
pub mod transfer;
pub mod transport;
pub mod usage;
