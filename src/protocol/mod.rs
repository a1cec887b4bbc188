//! The protocol layer: JSON-RPC 2.0 framing over lines ([`transport`]), the method
//! registry and dispatch into the handlers ([`dispatch`]), the table of every method
//! ([`methods`]), and the OpenRPC document built
//! from the registry's schemas ([`openrpc`]). Depends on the handlers and the contract
//! types below it, never on the command line above it.

pub mod dispatch;
pub(crate) mod methods;
pub(crate) mod openrpc;
pub(crate) mod suggest;
pub(crate) mod transport;
