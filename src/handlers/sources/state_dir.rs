//! Reading an OpenClaw state directory (`store.import` format `openclaw-state`): the shared
//! database, openclaw.json, the era-A `credentials/oauth.json` and each agent's files.

use std::path::Path;

use serde_json::Value;

use super::{config_profile_ids, read_json, read_json_bytes, sqlite_pieces};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids;
use crate::openclaw::import::{self, EntryError, Format, ImportWarning, Loaded, Piece, PieceKind};

/// Reads an OpenClaw state directory: `state/openclaw.sqlite` (shared scope),
/// `agents/<id>/agent/openclaw-agent.sqlite` (agent `<id>`; a legacy
/// `agents/<id>/agent/auth-profiles.json` when there is no database) and the `auth.order`
/// of `openclaw.json` (the shared order). Errors `shape_unrecognized` when none is there.
pub(super) fn load_state_dir(dir: &Path) -> Result<Loaded> {
    let mut run = StateDir {
        dir,
        pieces: vec![],
        warnings: vec![],
        errors: vec![],
        found: false,
    };
    let global = dir.join("state/openclaw.sqlite");
    if global.is_file() {
        run.found = true;
        if let Some(p) = sqlite_pieces(&global, "state/openclaw.sqlite", None, &mut run.warnings)? {
            run.pieces.extend(p);
        }
    }
    run.config();
    // Era A: `credentials/oauth.json` `{provider: {access, refresh, expires}}` goes to the
    // shared store as oauth `<provider>:default`, filling only absent ids.
    let legacy_oauth = dir.join("credentials/oauth.json");
    if legacy_oauth.is_file() {
        run.found = true;
        run.pieces.push(Piece {
            agent: None,
            kind: PieceKind::FlatFill,
            doc: read_json(&legacy_oauth)?,
            source: Some("credentials/oauth.json".into()),
            strict: false,
        });
    }
    run.agents()?;
    if !run.found {
        return Err(RpcError::new(
            ErrorKind::ShapeUnrecognized,
            format!(
                "{} is not an OpenClaw state directory (no state/openclaw.sqlite, openclaw.json, credentials/oauth.json or agents/*/agent/ auth files); nothing was imported",
                dir.display()
            ),
        )
        .with_hint("point `path` at the OpenClaw state directory, usually ~/.openclaw"));
    }
    Ok(Loaded {
        format: Format::OpenclawState,
        pieces: run.pieces,
        warnings: run.warnings,
        errors: run.errors,
    })
}

/// What [`load_state_dir`] has read so far.
struct StateDir<'a> {
    dir: &'a Path,
    pieces: Vec<Piece>,
    warnings: Vec<ImportWarning>,
    errors: Vec<EntryError>,
    /// Whether any OpenClaw file was found.
    found: bool,
}

/// A shared-scope piece of openclaw.json.
fn config_piece(kind: PieceKind, doc: Value, source: &str) -> Piece {
    Piece {
        agent: None,
        kind,
        doc,
        source: Some(source.into()),
        strict: false,
    }
}

impl StateDir<'_> {
    /// openclaw.json: the `auth.profiles` ids and modes, `secrets.providers` and
    /// `auth.order` (the shared order). A file that is not plain JSON is skipped with a
    /// warning.
    fn config(&mut self) {
        let config = self.dir.join("openclaw.json");
        if !config.is_file() {
            return;
        }
        self.found = true;
        // One non-blocking, capped read (fsread) for both the JSON and its key order.
        let Ok((v, bytes)) = read_json_bytes(&config) else {
            self.warnings.push(ImportWarning {
                pointer: String::new(),
                kind: "source_skipped".into(),
                message:
                    "openclaw.json is not plain JSON (JSON5?); its auth.order was not imported"
                        .into(),
                source: Some("openclaw.json".into()),
            });
            return;
        };
        let ids = config_profile_ids(&bytes);
        if !ids.is_empty() {
            self.pieces.push(config_piece(
                PieceKind::ConfigProfiles,
                Value::from(ids),
                "openclaw.json /auth/profiles",
            ));
        }
        if let Some(Value::Object(profiles)) = v.pointer("/auth/profiles") {
            let modes: serde_json::Map<String, Value> = profiles
                .iter()
                .filter_map(|(id, p)| p.get("mode").map(|m| (id.clone(), m.clone())))
                .collect();
            if !modes.is_empty() {
                self.pieces.push(config_piece(
                    PieceKind::ConfigModes,
                    Value::Object(modes),
                    "openclaw.json /auth/profiles",
                ));
            }
        }
        if let Some(providers) = v.pointer("/secrets/providers").filter(|o| !o.is_null()) {
            self.pieces.push(config_piece(
                PieceKind::SecretProviders,
                providers.clone(),
                "openclaw.json /secrets/providers",
            ));
        }
        if let Some(order) = v.pointer("/auth/order").filter(|o| !o.is_null()) {
            self.pieces.push(config_piece(
                PieceKind::ConfigOrder,
                order.clone(),
                "openclaw.json /auth/order",
            ));
        }
    }

    /// Each `agents/<id>/agent/` directory with an auth file, in name order.
    fn agents(&mut self) -> Result<()> {
        let agents = self.dir.join("agents");
        let Ok(rd) = std::fs::read_dir(&agents) else {
            return Ok(());
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            self.agent(&agents.join(&name).join("agent"), &name)?;
        }
        Ok(())
    }

    /// One agent directory `adir` of agent `name`.
    fn agent(&mut self, adir: &Path, name: &str) -> Result<()> {
        let db = adir.join("openclaw-agent.sqlite");
        let json = adir.join("auth-profiles.json");
        let state_json = adir.join("auth-state.json");
        let flat_json = adir.join("auth.json");
        if !db.is_file() && !json.is_file() && !state_json.is_file() && !flat_json.is_file() {
            return Ok(());
        }
        self.found = true;
        let agent = match ids::validate_agent(name) {
            Ok(a) => a,
            Err(e) => {
                self.errors.push(EntryError {
                    pointer: String::new(),
                    kind: "invalid_agent".into(),
                    message: format!("{e}; this agent's profiles were not imported"),
                    valid_types: None,
                    source: Some(format!("agents/{name}")),
                });
                return Ok(());
            }
        };
        // The legacy JSON files of an agent (OpenClaw's doctor migrates them into its
        // database): `auth-profiles.json`, `auth-state.json` (order, lastGood,
        // usageStats) and `auth.json` (a flat map that fills only absent ids). Those of
        // the default agent `main` go to the shared store, as the doctor moves them.
        let legacy_agent = (name != "main").then(|| agent.clone());
        if state_json.is_file() && !db.is_file() {
            self.pieces.push(Piece {
                agent: legacy_agent.clone(),
                kind: PieceKind::State,
                doc: read_json(&state_json)?,
                source: Some(format!("agents/{name}/agent/auth-state.json")),
                strict: false,
            });
        }
        // OpenClaw 2026.9.6's doctor migrates it as `<provider>:default` (and renames
        // it `auth.json.migrated-*`): tests/fixtures/openclaw/legacy-agent-auth.
        if flat_json.is_file() {
            self.pieces.push(Piece {
                agent: legacy_agent.clone(),
                kind: PieceKind::FlatFill,
                doc: read_json(&flat_json)?,
                source: Some(format!("agents/{name}/agent/auth.json")),
                strict: false,
            });
        }
        if db.is_file() {
            let label = format!("agents/{name}/agent/openclaw-agent.sqlite");
            if let Some(p) = sqlite_pieces(&db, &label, Some(&agent), &mut self.warnings)? {
                self.pieces.extend(p);
            }
        } else if json.is_file() {
            self.legacy_store(&json, name, legacy_agent)?;
        }
        Ok(())
    }

    /// An agent's legacy `auth-profiles.json` (when it has no database).
    fn legacy_store(&mut self, json: &Path, name: &str, agent: Option<String>) -> Result<()> {
        let doc = read_json(json)?;
        let label = format!("agents/{name}/agent/auth-profiles.json");
        if import::detect_json(&doc) == Some(Format::Openclaw) {
            import::check_version(&doc, &format!("{label}: "))?;
            self.pieces.push(Piece {
                agent,
                kind: PieceKind::Store,
                doc,
                source: Some(label),
                strict: false,
            });
        } else {
            self.warnings.push(ImportWarning {
                pointer: String::new(),
                kind: "source_skipped".into(),
                message: "not an auth-profiles store; skipped".into(),
                source: Some(label),
            });
        }
        Ok(())
    }
}
