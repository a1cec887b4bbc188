//! Issues 19 and 20 on the SQLite store's files: a read writes nothing in the store's
//! directory; hard-linked store files and sidecars are refused untouched; the refresh
//! lock is the store file's, not a path's (no `<store>.locks/` to plant); every ancestor
//! directory is checked as OpenSSH's StrictModes checks them; sidecars beside an import
//! source never block, grow or appear. Each test drives the real binary (the lock tests
//! the store handles of the library, as `serve` uses them).

mod common;

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const OTHER: u32 = 65534;

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn chown(p: &Path, uid: u32) -> bool {
    let c = CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::chown(c.as_ptr(), uid, uid) == 0 }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sidecar(p: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", p.display()))
}

/// A store directory the binary owns. As root, the binary runs as uid 65534 (nobody) in a
/// directory of its own, so SQLite's root-only `fchown` of `-wal`/`-shm` does not apply
/// and the test sees what any user's read does.
struct Owned {
    _outer: tempfile::TempDir,
    dir: PathBuf,
    uid: Option<u32>,
}

impl Owned {
    fn new() -> Self {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        let uid = if euid() == 0 {
            chmod(outer.path(), 0o755);
            assert!(chown(&dir, OTHER));
            Some(OTHER)
        } else {
            None
        };
        Owned {
            _outer: outer,
            dir,
            uid,
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .arg("--store")
            .arg(self.store())
            .envs(common::store_env(&self.store()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(u) = self.uid {
            c.uid(u).gid(u);
        }
        c
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut ch = self.command(args).spawn().unwrap();
        ch.stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        ch.wait_with_output().unwrap()
    }

    fn call(&self, method: &str, params: Value) -> Output {
        self.run(&["call", method, "-"], &params.to_string())
    }
}

/// One directory entry: (name, inode, size, mtime s, mtime ns, mode).
type Entry = (String, u64, u64, i64, i64, u32);

/// The directory's entries and its own mtime (s, ns).
fn listing(dir: &Path) -> (Vec<Entry>, (i64, i64)) {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.mode(),
            )
        })
        .collect();
    v.sort();
    let d = std::fs::metadata(dir).unwrap();
    (v, (d.mtime(), d.mtime_nsec()))
}

/// inotify on `dir`: every event that changes something (create, delete, move, write,
/// truncate, attribute change). Opening and closing are not changes.
struct Watch(std::os::fd::OwnedFd);

impl Watch {
    fn new(dir: &Path) -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls with valid arguments; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let p = CString::new(dir.to_str().unwrap()).unwrap();
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO;
        // SAFETY: a valid inotify descriptor and path.
        assert!(unsafe { libc::inotify_add_watch(fd, p.as_ptr(), mask) } >= 0);
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Watch(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    /// The events seen so far, as `name: mask` strings.
    fn events(&self) -> Vec<String> {
        use std::os::fd::AsRawFd;
        let mut out = vec![];
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reading into a buffer we own.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut off = 0usize;
            while off < n as usize {
                // SAFETY: the kernel writes whole inotify_event records.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name_start = off + std::mem::size_of::<libc::inotify_event>();
                let name = &buf[name_start..name_start + ev.len as usize];
                let name = String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string();
                out.push(format!("{name}: {:#x}", ev.mask));
                off = name_start + ev.len as usize;
            }
        }
    }
}

/// Issue 19, item 1. Before: each read created `-wal`/`-shm`, `fchown`-ed, truncated and
/// wrote the `-shm`, then removed both (8 pwrite, 1 ftruncate, 2 unlink per call).
#[test]
fn a_read_writes_nothing_in_the_store_directory() {
    if common::skip_on_pg("the files of a SQLite store") {
        return;
    }
    let o = Owned::new();
    let put = o.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:main", "sk-test-read-1")}),
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    // Let a coarse file-system clock tick, so a write now would show in an mtime too.
    std::thread::sleep(Duration::from_millis(20));
    let before = listing(&o.dir);
    let watch = Watch::new(&o.dir);
    let p = json!({"provider": "openai"});
    for (method, params) in [
        ("auth.resolve", p.clone()),
        ("order.get", p.clone()),
        ("auth.status", json!({})),
        ("helper.info", json!({})),
        ("auth.candidates", p.clone()),
    ] {
        let out = o.call(method, params);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = o.run(&["check"], "");
    assert!(out.status.code().is_some(), "check died");
    let out = o.run(&["get", "openai"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sk-test-read-1"
    );
    // serve: reads only.
    let lines = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"auth.resolve\",\"params\":{\"provider\":\"openai\"}}\n\
                 {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"order.get\",\"params\":{\"provider\":\"openai\"}}\n";
    let out = o.run(&["serve"], lines);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(
        watch.events(),
        Vec::<String>::new(),
        "a read changed the store directory"
    );
    assert_eq!(listing(&o.dir), before);

    // A write after those reads works, and the reads after it write nothing either.
    let put = o.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:second", "sk-test-read-2")}),
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    std::thread::sleep(Duration::from_millis(20));
    let before = listing(&o.dir);
    let _ = watch.events();
    let out = o.call("profiles.list", json!({}));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profiles"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(watch.events(), Vec::<String>::new());
    assert_eq!(listing(&o.dir), before);
}

/// A store an older modelauth wrote has no `-wal`/`-shm` between processes (it removed
/// them on close): the first read creates them once, and keeps them; the reads after it
/// write nothing.
#[test]
fn a_store_without_its_wal_files_gets_them_once() {
    if common::skip_on_pg("the files of a SQLite store") {
        return;
    }
    let o = Owned::new();
    let put = o.call(
        "profiles.put",
        json!({"profile": common::api_key("openai:main", "sk-test-old-1")}),
    );
    assert!(put.status.success());
    std::fs::remove_file(sidecar(&o.store(), "-wal")).unwrap();
    std::fs::remove_file(sidecar(&o.store(), "-shm")).unwrap();
    let out = o.call("auth.resolve", json!({"provider": "openai"}));
    assert!(out.status.success());
    assert!(sidecar(&o.store(), "-wal").is_file());
    assert!(sidecar(&o.store(), "-shm").is_file());
    std::thread::sleep(Duration::from_millis(20));
    let before = listing(&o.dir);
    let watch = Watch::new(&o.dir);
    let out = o.call("auth.resolve", json!({"provider": "openai"}));
    assert!(out.status.success());
    assert_eq!(watch.events(), Vec::<String>::new());
    assert_eq!(listing(&o.dir), before);
}

/// Pins: a read of a store that does not exist creates nothing (no file, no directory).
#[test]
fn a_read_of_a_missing_store_creates_nothing() {
    if common::skip_on_pg("the files of a SQLite store") {
        return;
    }
    let o = Owned::new();
    let watch = Watch::new(&o.dir);
    for m in ["auth.resolve", "order.get"] {
        let _ = o.call(m, json!({"provider": "openai"}));
    }
    let _ = o.call("helper.info", json!({}));
    let _ = o.run(&["check"], "");
    assert_eq!(watch.events(), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&o.dir).unwrap().count(), 0);
}

/// Issue 20. Before: a `-wal` hard-linked to another file of the user passed the owner
/// check, was `fchmod`-ed to 0600 and overwritten by SQLite; a hard-linked store file
/// (two names, two `-wal`s) was used.
#[test]
fn hard_linked_store_files_and_sidecars_are_refused_untouched() {
    if common::skip_on_pg("the files of a SQLite store") {
        return;
    }
    let t = common::TempStore::new();
    common::ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-test-link-1")}),
    );
    let victim = t.dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    chmod(&victim, 0o644);
    let wal = sidecar(&t.path, "-wal");
    let _ = std::fs::remove_file(&wal);
    std::fs::hard_link(&victim, &wal).unwrap();
    for (m, p) in [
        ("profiles.list", json!({})),
        (
            "profiles.put",
            json!({"profile": common::api_key("openai:b", "sk-test-link-2")}),
        ),
    ] {
        let e = common::err(&t.path, m, p);
        assert_eq!(e["data"]["kind"], "store_permissions", "{m}: {e}");
        assert!(e["message"].as_str().unwrap().contains("links"), "{e}");
    }
    assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o777, 0o644);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    std::fs::remove_file(&wal).unwrap();

    let other = t.dir.path().join("other-name.db");
    std::fs::hard_link(&t.path, &other).unwrap();
    let e = common::err(&t.path, "profiles.list", json!({}));
    assert_eq!(e["data"]["kind"], "store_permissions", "{e}");
    std::fs::remove_file(&other).unwrap();
    common::ok(&t.path, "profiles.list", json!({}));
}

/// Issue 20. Before: the refresh lock was `<store>.locks/refresh-<hash>.lock`, found by
/// path: through a bind mount of the store file two processes took two locks (a double
/// send of a rotated refresh token), and a planted `<store>.locks` (a symlink, or a lock
/// file another user holds) was followed or blocked every refresh.
#[test]
fn the_refresh_lock_is_the_store_file_not_a_path() {
    use modelauth::store::sqlite::SqliteStore;
    use modelauth::store::Store;
    if common::skip_on_pg("the refresh locks of a SQLite store") {
        return;
    }
    let t = common::TempStore::new();
    common::ok(
        &t.path,
        "profiles.put",
        json!({"profile": common::api_key("openai:a", "sk-test-lock-1")}),
    );
    // A planted `.locks`: a symlink to a directory of someone else, holding a lock file
    // that is held. Neither is followed nor waited on.
    let planted = t.dir.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    let locks = PathBuf::from(format!("{}.locks", t.path.display()));
    std::os::unix::fs::symlink(&planted, &locks).unwrap();
    let a = SqliteStore::new(t.path.clone()).refresh_locks();
    let held = a
        .lock(None, "openai:a", Duration::ZERO)
        .expect("lock")
        .expect("a planted .locks blocks nothing");
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0);
    drop(held);

    // The store file bind-mounted under another name (root only).
    let alias_dir = tempfile::tempdir().unwrap();
    let alias = alias_dir.path().join("alias.db");
    std::fs::write(&alias, b"").unwrap();
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(&t.path)
        .arg(&alias)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED the bind-mount half: mount --bind is not permitted here");
        return;
    }
    let b = SqliteStore::new(alias.clone()).refresh_locks();
    let held = a
        .lock(None, "openai:a", Duration::ZERO)
        .expect("lock")
        .expect("free");
    let second = b
        .lock(None, "openai:a", Duration::from_millis(50))
        .expect("lock");
    // The kernel sees it too (what another process would meet): a new open file
    // description of the bind-mounted name finds a write lock in the lock range.
    let seen = ofd_lock_seen(&alias);
    let _ = Command::new("umount").arg(&alias).status();
    assert!(
        second.is_none(),
        "the lock was taken twice through a bind mount"
    );
    assert!(
        seen,
        "no kernel lock on the store file through the bind mount"
    );
    drop(held);
}

/// Whether a write lock is held on a byte in `[2^62, 2^63)` of `file` by another open
/// file description (`F_OFD_GETLK`). The descriptor is leaked on purpose: no SQLite
/// connection of this process may lose its locks to a close.
fn ofd_lock_seen(file: &Path) -> bool {
    use std::os::fd::IntoRawFd;
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap()
        .into_raw_fd();
    // SAFETY: an all-zero flock is valid; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = 1 << 62;
    fl.l_len = (1 << 62) - 1;
    // SAFETY: a valid descriptor and flock.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) }, 0);
    fl.l_type == libc::F_WRLCK as i16
}

/// Issue 20. Before: only the store's own directory was checked, so a world-writable
/// (not sticky) directory higher up let another user swap the store's directory between
/// the check and the open.
#[test]
fn every_ancestor_directory_is_checked() {
    if common::skip_on_pg("the directories of a SQLite store") {
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let open = outer.path().join("open");
    let mine = open.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    chmod(&mine, 0o700);
    let store = mine.join("store.db");
    let put = json!({"profile": common::api_key("openai:a", "sk-test-anc-1")});
    common::ok(&store, "profiles.put", put.clone());

    chmod(&open, 0o777);
    let e = common::err(&store, "profiles.list", json!({}));
    assert_eq!(e["data"]["kind"], "store_permissions", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(open.to_str().unwrap()),
        "{e}"
    );
    let e = common::err(&store, "profiles.put", put.clone());
    assert_eq!(e["data"]["kind"], "store_permissions", "{e}");

    // Sticky, as /tmp is: accepted.
    chmod(&open, 0o1777);
    common::ok(&store, "profiles.list", json!({}));

    chmod(&open, 0o755);
    if euid() == 0 && chown(&open, OTHER) {
        let e = common::err(&store, "profiles.list", json!({}));
        assert_eq!(e["data"]["kind"], "store_permissions", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("owned by uid"),
            "{e}"
        );
        assert!(chown(&open, 0));
    }
    common::ok(&store, "profiles.list", json!({}));
}

/// Issue 20. Pins: `-shm` and `-journal` beside an import source are never opened (a FIFO
/// there does not block) and nothing appears beside the source.
#[test]
fn sidecars_beside_an_import_source_never_block_or_appear() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("openclaw.sqlite");
    std::fs::copy(
        "tests/fixtures/openclaw/state-basic/state/openclaw.sqlite",
        &src,
    )
    .unwrap();
    for s in ["-shm", "-journal"] {
        let c = CString::new(sidecar(&src, s).to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let before: Vec<_> = listing(src_dir.path()).0;
    let env = common::Env::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let c = env.command();
    let params = json!({"path": src, "format": "openclaw-sqlite", "dryRun": true});
    std::thread::spawn(move || {
        let _ = tx.send(common::call_with_stdin(c, "store.validate", &params));
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a FIFO sidecar hung the import");
    assert!(out.status.code().is_some());
    assert_eq!(listing(src_dir.path()).0, before);
}
