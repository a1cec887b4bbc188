//! OpenClaw interop, pure: the shapes of OpenClaw's auth-profile stores turned into an
//! import plan ([`import`]), and the OpenClaw auth-profiles.json v1 export document
//! ([`export`]). Reading the files is the handlers' job. Depends on the core only.

pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod settings_import;
