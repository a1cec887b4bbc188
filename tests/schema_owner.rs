//! PROTOCOL §11 *(r3)*: the PostgreSQL schema must be owned by the connecting role. A
//! role that pre-creates the schema (or a table in it) — schema squatting — would read
//! every key the victim writes and choose the settings it obeys; the helper refuses with
//! `store_permissions` (`schema_not_owned`) and writes nothing. Needs `MODELAUTH_TEST_PG`.

mod common;

use serde_json::json;

fn admin() -> postgres::Client {
    common::pg_client()
}

fn squatter(c: &mut postgres::Client) {
    c.batch_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'modelauth_squatter') THEN CREATE ROLE modelauth_squatter NOLOGIN; END IF; END $$",
    )
    .unwrap();
}

#[test]
fn a_schema_created_by_another_role_is_refused_and_nothing_is_written() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let schema = common::pg_schema(&env.store());
    let mut a = admin();
    squatter(&mut a);
    a.batch_execute(&format!(
        "CREATE SCHEMA {schema} AUTHORIZATION modelauth_squatter; GRANT ALL ON SCHEMA {schema} TO PUBLIC"
    ))
    .unwrap();
    let e = env
        .call(
            "profiles.put",
            json!({"profile": common::api_key("openai:a", "sk-squat-victim-key-1")}),
        )
        .unwrap_err();
    assert_eq!(e["data"]["kind"], "store_permissions", "{e}");
    assert_eq!(e["data"]["reason"], "schema_not_owned", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("modelauth_squatter"),
        "{e}"
    );
    // Nothing was created in the squatted schema.
    let n: i64 = a
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    a.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn a_table_planted_in_an_existing_store_is_refused_on_read_too() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let schema = common::pg_schema(&env.store());
    env.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-owned-1")}),
    )
    .unwrap();
    let mut a = admin();
    squatter(&mut a);
    a.batch_execute(&format!(
        "CREATE TABLE {schema}.extra (x int); ALTER TABLE {schema}.extra OWNER TO modelauth_squatter"
    ))
    .unwrap();
    let e = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap_err();
    assert_eq!(e["data"]["reason"], "schema_not_owned", "{e}");
    a.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn a_schema_named_like_a_keyword_works_and_public_is_refused() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let mut a = admin();
    a.batch_execute("DROP SCHEMA IF EXISTS \"order\" CASCADE")
        .unwrap();
    let call = |schema: &str, method: &str, params: serde_json::Value| {
        let mut c = env.command();
        c.env("MODELAUTH_PG_SCHEMA", schema);
        let out = common::call_with_stdin(c, method, &params);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = call(
        "order",
        "profiles.put",
        json!({"profile": common::api_key("openai:k", "sk-keyword-1")}),
    );
    assert!(ok, "{text}");
    let (ok, text) = call("order", "profiles.list", json!({}));
    assert!(ok && text.contains("openai:k"), "{text}");
    let (ok, text) = call("public", "profiles.list", json!({}));
    assert!(!ok && text.contains("bad_schema_name"), "{text}");
    a.batch_execute("DROP SCHEMA IF EXISTS \"order\" CASCADE")
        .unwrap();
}

#[test]
fn a_version_1_store_is_migrated_to_salted_lock_keys_on_its_next_write() {
    if !common::on_pg() {
        eprintln!("SKIPPED: needs MODELAUTH_TEST_PG");
        return;
    }
    let env = common::Env::new();
    let schema = common::pg_schema(&env.store());
    env.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-v1-1")}),
    )
    .unwrap();
    let mut a = admin();
    // What a store written by the previous version looks like.
    a.batch_execute(&format!(
        "UPDATE {schema}.meta SET value = 1 WHERE key = 'schema_version'; DELETE FROM {schema}.meta WHERE key = 'lock_salt'; DROP TABLE {schema}.named_secrets, {schema}.import_marks"
    ))
    .unwrap();
    let r = env
        .call("auth.resolve", json!({"provider": "openai"}))
        .unwrap();
    assert_eq!(r["secret"], "sk-v1-1");
    env.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:b", "sk-v1-2")}),
    )
    .unwrap();
    let rows = a
        .query(
            &format!("SELECT key::text, value FROM {schema}.meta WHERE key IN ('schema_version', 'lock_salt') ORDER BY 1"),
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2, "the salt was added");
    assert_eq!(
        rows[1].get::<_, i64>(1),
        modelauth::store::postgres::PG_SCHEMA_VERSION,
        "migrated to this build's version"
    );
    a.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}
