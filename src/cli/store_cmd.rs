//! *(r3)* `modelauth store keygen | seal | rekey | unseal` (PROTOCOL §9): each verb but
//! `keygen` is one JSON-RPC call (`store.seal`, `store.rekey`, `store.unseal`) whose result
//! is printed as JSON on stdout; errors as `call` (the error object on stderr, exit 1).

use clap::Subcommand;

use super::{dispatcher, print_error, write_stdout};

/// The verbs of `modelauth store`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum StoreAction {
    /// Print a new random store key (one line: `msk1-` and 43 base64url characters).
    Keygen,
    /// Seal every plaintext secret under the first configured store key (store.seal).
    Seal,
    /// Move every sealed secret to the first configured key; keep the old one configured
    /// after it until this finishes (store.rekey).
    Rekey,
    /// Store every secret in plaintext again (store.unseal).
    Unseal,
}

/// Runs one verb; returns the exit code.
pub(super) fn run(store: Option<&std::path::Path>, action: StoreAction) -> i32 {
    let method = match action {
        StoreAction::Keygen => {
            let key = crate::seal::envelope::generate_key();
            let text = zeroize::Zeroizing::new(format!("{}\n", key.encode()));
            return write_stdout(&text, 0);
        }
        StoreAction::Seal => "store.seal",
        StoreAction::Rekey => "store.rekey",
        StoreAction::Unseal => "store.unseal",
    };
    let d = match dispatcher(store) {
        Ok(d) => d,
        Err(e) => return print_error(&e),
    };
    match d.call(method, None) {
        Ok(r) => write_stdout(&format!("{}\n", r.get()), 0),
        Err(e) => print_error(&e),
    }
}
