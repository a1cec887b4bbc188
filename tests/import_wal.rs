//! A `-wal` beside an import source is a source file too (issue 20): a FIFO `-wal` is
//! refused at once instead of hanging, a sparse 2 GB `-wal` is refused by the size cap
//! before anything is read or copied, and a modelauth store with commits only in its
//! `-wal` is read through a capped private copy with the source limits on — no `-shm`
//! appears beside the source and the source stays byte-identical.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Env;
use serde_json::{json, Value};

const FIXTURE: &str = "tests/fixtures/openclaw/state-basic/state/openclaw.sqlite";

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// `store.import` in a process of its own, killed (and the test failed) past 30 s.
fn import_bounded(env: &Env, params: Value) -> Result<Value, Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let c = env.command();
    std::thread::spawn(move || {
        let out = common::call_with_stdin(c, "store.import", &params);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("store.import hung on the source's -wal");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(serde_json::from_str(err.lines().last().unwrap_or_default()).unwrap())
    }
}

fn wal_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", p.display()))
}

#[test]
fn a_fifo_or_a_sparse_huge_wal_beside_a_source_is_refused_at_once() {
    let env = Env::with_vars(&[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("openclaw.sqlite");
    std::fs::copy(FIXTURE, &src).unwrap();
    mkfifo(&wal_of(&src));
    let e = import_bounded(&env, json!({"path": src, "format": "openclaw-sqlite"})).unwrap_err();
    assert_eq!(e["data"]["kind"], "import_invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("FIFO"), "{e}");

    std::fs::remove_file(wal_of(&src)).unwrap();
    let f = std::fs::File::create(wal_of(&src)).unwrap();
    f.set_len(2 << 30).unwrap();
    let e = import_bounded(&env, json!({"path": src, "format": "openclaw-sqlite"})).unwrap_err();
    assert_eq!(e["data"]["kind"], "import_invalid", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("larger than"),
        "{e}"
    );
    assert!(!PathBuf::from(format!("{}-shm", src.display())).exists());
}

#[test]
fn a_modelauth_store_with_a_fifo_or_huge_wal_is_refused_and_a_live_wal_is_read_from_a_copy() {
    if common::skip_on_pg("the source is a SQLite store file with a -wal") {
        return;
    }
    // A source store whose last commit is only in its -wal: a server holds it open.
    let src_env = Env::new();
    src_env
        .call(
            "profiles.put",
            json!({"profile": common::api_key("openai:main-file", "sk-main-file-1")}),
        )
        .unwrap();
    let mut srv = src_env.serve();
    srv.put_key("openai:wal-only", "sk-wal-only-1");
    let snap = tempfile::tempdir().unwrap();
    let src = snap.path().join("store.db");
    std::fs::copy(src_env.store(), &src).unwrap();
    std::fs::copy(wal_of(&src_env.store()), wal_of(&src)).unwrap();
    drop(srv);
    assert!(std::fs::metadata(wal_of(&src)).unwrap().len() > 0);
    let before = common::snapshot(snap.path());

    let env = Env::new();
    let r = import_bounded(&env, json!({"path": src, "format": "modelauth-store"})).unwrap();
    let ids: Vec<&str> = r["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["profileId"].as_str())
        .collect();
    assert!(ids.contains(&"openai:wal-only"), "{r}");
    assert_eq!(
        common::snapshot(snap.path()),
        before,
        "the source directory changed"
    );
    assert!(!PathBuf::from(format!("{}-shm", src.display())).exists());

    // The same source with a FIFO, then a sparse 2 GB file, as its -wal.
    std::fs::remove_file(wal_of(&src)).unwrap();
    mkfifo(&wal_of(&src));
    let e = import_bounded(&env, json!({"path": src, "format": "modelauth-store"})).unwrap_err();
    assert_eq!(e["data"]["kind"], "import_invalid", "{e}");
    std::fs::remove_file(wal_of(&src)).unwrap();
    std::fs::File::create(wal_of(&src))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let e = import_bounded(&env, json!({"path": src, "format": "modelauth-store"})).unwrap_err();
    assert_eq!(e["data"]["kind"], "import_invalid", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("larger than"),
        "{e}"
    );
    assert!(!PathBuf::from(format!("{}-shm", src.display())).exists());
}
