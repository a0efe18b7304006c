//! Faults, each with its documented outcome: a lock held past the busy
//! timeout, a full disk, a corrupt file, a read-only file or folder, the
//! folder deleted under a running store, and the permissions of new files.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livesettings::{Error, Options, Store, WatchMode};
use serde_json::json;
use support::{
    TIMEOUT, TempDb, db_contents, integrity, poll_until, store_map, wait_converged,
    wait_for_watcher_checks,
};

const BIN: &str = env!("CARGO_BIN_EXE_livesettings");

/// Outcome: another process holds the write lock past the busy timeout →
/// `Error::Busy` after about the timeout, nothing written or applied; once
/// the lock is released the same write succeeds.
#[test]
fn a_lock_held_past_the_busy_timeout_is_busy_then_a_retry_succeeds() {
    let db = TempDb::new();
    let store = Options::new()
        .with_busy_timeout(Duration::from_millis(200))
        .open(&db.path)
        .unwrap();
    store.merge(&json!({"a": {"x": 1, "y": 1}})).unwrap();
    let before_db = db_contents(&db.path);
    let before_snap = store_map(&store);

    let script = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO settings (key, value) VALUES ('held.by.python', '1')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&db.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");

    let started = Instant::now();
    let result = store.merge(&json!({"a": {"x": 2, "y": 2}, "b": 3}));
    let waited = started.elapsed();
    match &result {
        Err(Error::Busy { path }) => assert_eq!(path, &db.path),
        other => panic!("expected Error::Busy, got {other:?}"),
    }
    let message = result.unwrap_err().to_string();
    assert!(message.contains("locked"), "{message}");
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "waited {waited:?} for a 200 ms busy timeout"
    );
    assert!(matches!(store.set("a.x", &5), Err(Error::Busy { .. })));
    assert_eq!(
        store_map(&store),
        before_snap,
        "half-applied to the snapshot"
    );

    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "released");
    child.wait().unwrap();
    assert_eq!(db_contents(&db.path), before_db, "half-written to the db");

    store
        .merge(&json!({"a": {"x": 2, "y": 2}, "b": 3}))
        .unwrap();
    assert_eq!(store.get::<i64>("a.y").unwrap(), Some(2));
    assert_eq!(store_map(&store), db_contents(&db.path));
}

fn page_counts(store: &Store) -> (i64, i64) {
    store
        .write(|tx| {
            let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let max: i64 = tx.query_row("PRAGMA max_page_count", [], |r| r.get(0))?;
            Ok((pages, max))
        })
        .unwrap()
}

/// Outcome: a full disk (simulated with `PRAGMA max_page_count` on the
/// writer connection) fails the write with an error naming the cause; the
/// snapshot and the database keep their previous values; once space is
/// back the write succeeds.
///
/// `max_page_count` is per connection, so it must be set on the store's own
/// writer: through `write`, inside its transaction, where the pragma takes
/// effect (and persists for the connection after the commit).
#[test]
fn a_full_disk_fails_the_write_and_keeps_the_previous_values() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.merge(&json!({"k": {"a": 1, "b": "x"}})).unwrap();
    let (pages, default_max) = page_counts(&store);
    store
        .write(|tx| {
            let _: i64 =
                tx.query_row(&format!("PRAGMA max_page_count = {}", pages + 2), [], |r| {
                    r.get(0)
                })?;
            Ok(())
        })
        .unwrap();
    let (_, max) = page_counts(&store);
    assert_eq!(max, pages + 2, "max_page_count did not take");
    let before_db = db_contents(&db.path);
    let before_snap = store_map(&store);

    // About 2 MB of new keys: far more than 2 pages.
    let mut doc = serde_json::Map::new();
    for i in 0..2000 {
        doc.insert(format!("big.k{i}"), json!("v".repeat(1000)));
    }
    doc.insert("k".into(), json!({"a": 2}));
    let doc = serde_json::Value::Object(doc);
    let error = store.merge(&doc).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("full"),
        "a full disk should say so: {error:?}"
    );
    assert_eq!(store_map(&store), before_snap, "the snapshot changed");
    assert_eq!(db_contents(&db.path), before_db, "the database changed");
    assert_eq!(integrity(&db.path), "ok");
    // A small write that fits still works.
    store.set("k.a", &3).unwrap();
    assert_eq!(store.get::<i64>("k.a").unwrap(), Some(3));

    store
        .write(|tx| {
            let _: i64 =
                tx.query_row(&format!("PRAGMA max_page_count = {default_max}"), [], |r| {
                    r.get(0)
                })?;
            Ok(())
        })
        .unwrap();
    store.merge(&doc).unwrap();
    assert_eq!(store.get::<i64>("k.a").unwrap(), Some(2));
    assert_eq!(store_map(&store), db_contents(&db.path));
}

/// Outcome: random bytes at the path → `Error::Unusable` naming the file,
/// and the file is left untouched (no schema written over it).
#[test]
fn a_corrupt_file_at_open_is_unusable_and_untouched() {
    let db = TempDb::new();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut header_then_garbage = b"SQLite format 3\0".to_vec();
    header_then_garbage.extend(random(8192 - 16));
    for (what, bytes) in [
        ("random bytes", random(64 * 1024)),
        ("a SQLite header then garbage", header_then_garbage),
        ("text", b"not a database at all\n".to_vec()),
    ] {
        std::fs::write(&db.path, &bytes).unwrap();
        match Store::open(&db.path) {
            Err(Error::Unusable { path, reason }) => {
                assert_eq!(path, db.path, "{what}");
                assert!(!reason.is_empty());
            }
            other => panic!("{what}: expected Unusable, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&db.path).unwrap(),
            bytes,
            "{what}: file modified"
        );
        // The CLI says so and exits non-zero.
        let out = Command::new(BIN)
            .arg("--db")
            .arg(&db.path)
            .args(["get", "a"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unusable"), "{what}: {stderr}");
        assert_eq!(
            std::fs::read(&db.path).unwrap(),
            bytes,
            "{what}: file modified"
        );
        for side in ["-wal", "-shm", "-journal"] {
            let mut p = db.path.as_os_str().to_owned();
            p.push(side);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
    }
}

/// Outcome: the file overwritten with garbage while a store has it open:
/// reads keep serving the last good snapshot, writes fail with an error
/// (no panic, no garbage applied), and the watcher keeps running.
#[test]
fn a_file_corrupted_while_open_keeps_the_last_good_snapshot() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Poll {
            interval: Duration::from_millis(20),
        })
        .open(&db.path)
        .unwrap();
    store.merge(&json!({"a": {"x": 1, "y": "two"}})).unwrap();
    let good = store_map(&store);
    // Checkpoint so the data lives in the main file, then overwrite it in
    // place (same inode), leaving the header intact except for the pages.
    let (busy, _, _): (i64, i64, i64) = rusqlite::Connection::open(&db.path)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "checkpoint blocked");
    let mut bytes = std::fs::read(&db.path).unwrap();
    for (at, byte) in bytes.iter_mut().enumerate().skip(100) {
        *byte = (at * 7 + 13) as u8;
    }
    std::fs::write(&db.path, &bytes).unwrap();
    // Let the watcher look at the corrupt file a few times.
    wait_for_watcher_checks(&store, 3);
    assert_eq!(store_map(&store), good, "garbage reached the snapshot");
    // The write fails (SQLite reads the corrupt pages); nothing may panic
    // and the snapshot keeps the last good values.
    let write = store.set("a.x", &2);
    eprintln!("write into the corrupt file: {write:?}");
    assert!(write.is_err(), "a write into a corrupt file succeeded");
    wait_for_watcher_checks(&store, 3);
    let snap = store_map(&store);
    for (key, value) in &snap {
        assert!(
            key == "a.x" || good.get(key) == Some(value),
            "garbage reached the snapshot: {key} = {value}"
        );
    }
    assert_eq!(store.get::<String>("a.y").unwrap().as_deref(), Some("two"));
    let fresh = Store::open(&db.path);
    eprintln!(
        "a fresh open of the corrupted file: {:?}; integrity_check: {:?}; stats of the open store: {:?}",
        fresh.as_ref().map(|_| ()),
        rusqlite::Connection::open(&db.path).and_then(|c| c.query_row(
            "PRAGMA integrity_check",
            [],
            |r| r.get::<_, String>(0)
        )),
        store.stats()
    );
    drop(fresh);
    drop(store);
}

fn is_root() -> bool {
    // SAFETY-free check: root can write a 0444 file.
    let probe = tempfile::NamedTempFile::new().unwrap();
    std::fs::set_permissions(probe.path(), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(probe.path())
        .is_ok()
}

/// Runs the CLI as `nobody` when we are root (permission bits do not bind
/// root), else as ourselves.
fn cli_as_unprivileged(args: &[&str], db: &std::path::Path) -> Option<std::process::Output> {
    let mut command = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    command.arg("--db").arg(db).args(args);
    let out = command.output().ok()?;
    if String::from_utf8_lossy(&out.stderr).contains("setpriv:") {
        eprintln!(
            "note: cannot drop privileges: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(out)
}

/// Outcome: a read-only database file (0444) or folder (0555): reads work,
/// writes fail with a clear error, nothing changes. Permission bits do not
/// bind root, so when the suite runs as root the CLI is run as `nobody`
/// through `setpriv`.
#[test]
fn a_read_only_file_or_folder_reads_but_refuses_writes() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.merge(&json!({"a": {"x": 1}})).unwrap();
    store.close().unwrap();
    let before = db_contents(&db.path);
    // The read-only connection above leaves root-owned 0600 side files
    // (checkpointed, empty); an unprivileged reader could not open them.
    for side in ["-wal", "-shm"] {
        let mut p = db.path.as_os_str().to_owned();
        p.push(side);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }

    // (what, file mode, folder mode): the file is world-readable either way;
    // "file" leaves the folder writable, "both" does not.
    for (what, file_mode, dir_mode) in [
        ("file", 0o444, 0o777),
        ("folder", 0o666, 0o555),
        ("file and folder", 0o444, 0o555),
    ] {
        std::fs::set_permissions(db.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(file_mode)).unwrap();
        std::fs::set_permissions(db.dir.path(), std::fs::Permissions::from_mode(dir_mode)).unwrap();
        let Some(get) = cli_as_unprivileged(&["get", "a.x"], &db.path) else {
            eprintln!("note: read-only {what} case skipped: cannot run unprivileged");
            continue;
        };
        eprintln!(
            "read-only {what}: get → {:?} stdout {:?} stderr {:?}",
            get.status.code(),
            String::from_utf8_lossy(&get.stdout),
            String::from_utf8_lossy(&get.stderr)
        );
        let set = cli_as_unprivileged(&["set", "a.x", "2"], &db.path).unwrap();
        for side in ["-wal", "-shm"] {
            let mut p = db.path.as_os_str().to_owned();
            p.push(side);
            let _ = std::fs::remove_file(std::path::PathBuf::from(p));
        }
        let stderr = String::from_utf8_lossy(&set.stderr).to_string();
        eprintln!(
            "read-only {what}: set → {:?} stderr {stderr:?}",
            set.status.code()
        );
        std::fs::set_permissions(db.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(db_contents(&db.path), before, "read-only {what}: changed");
        assert!(!set.status.success(), "read-only {what}: set succeeded");
        assert!(
            stderr.contains("read") || stderr.contains("permission") || stderr.contains("denied"),
            "read-only {what}: unclear error: {stderr}"
        );
        assert!(
            get.status.success() && String::from_utf8_lossy(&get.stdout).trim() == "1",
            "read-only {what}: reads must work: {get:?}"
        );
    }
}

/// Outcome: the folder removed under a running store: reads keep serving the
/// last snapshot, writes return `Error::DatabaseMissing`, nothing panics;
/// when a database appears at the path again the store follows it.
#[test]
fn the_folder_deleted_under_a_running_store() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let path = dir.join("settings.db");
    let store = Options::new()
        .with_watch(WatchMode::Poll {
            interval: Duration::from_millis(20),
        })
        .open(&path)
        .unwrap();
    let events = store.subscribe("").unwrap();
    store.merge(&json!({"a": {"x": 1, "y": 2}})).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for_watcher_checks(&store, 3);

    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(1));
    assert_eq!(store.keys("a").len(), 2);
    match store.set("a.x", &5) {
        Err(Error::DatabaseMissing { path: p }) => assert_eq!(p, path),
        other => panic!("expected DatabaseMissing, got {other:?}"),
    }
    assert!(matches!(
        store.merge(&json!({"b": 1})),
        Err(Error::DatabaseMissing { .. })
    ));
    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(1));

    // Another process recreates the database at the path.
    {
        let other = Options::new()
            .with_watch(WatchMode::Off)
            .open(&path)
            .unwrap();
        other.merge(&json!({"a": {"x": 10}, "c": true})).unwrap();
        other.close().unwrap();
    }
    wait_converged(&store, "after the database came back");
    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(10));
    assert!(!store.contains("a.y"));
    store.set("a.z", &3).unwrap();
    assert_eq!(db_contents(&path).get("a.z"), Some(&json!(3)));
    // Subscribers were told: a.y removed, a.x changed.
    let mut seen = Vec::new();
    let ok = poll_until(TIMEOUT, || {
        while let Ok(event) = events.try_recv() {
            if let Some(change) = event.as_change() {
                seen.push((change.key.clone(), change.new_value().cloned()));
            }
        }
        seen.contains(&("a.y".to_owned(), None)) && seen.contains(&("a.x".into(), Some(json!(10))))
    });
    assert!(ok, "events after the recreate: {seen:?}");
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Outcome: new database files are created 0600 (and so are SQLite's side
/// files, which copy the database's mode); `with_file_mode` changes it; an
/// existing file keeps its own mode.
#[test]
fn new_files_are_private() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("secret.token", &"hunter2").unwrap();
    assert_eq!(mode_of(&db.path), 0o600);
    for side in ["-wal", "-shm"] {
        let mut p = db.path.as_os_str().to_owned();
        p.push(side);
        let p = std::path::PathBuf::from(p);
        if p.exists() {
            assert_eq!(mode_of(&p), 0o600, "{side}");
        }
    }
    store.close().unwrap();

    let other = db.sibling("shared.db");
    let store = Options::new().with_file_mode(0o640).open(&other).unwrap();
    assert_eq!(mode_of(&other), 0o640);
    store.close().unwrap();

    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&db.path).unwrap();
    assert_eq!(mode_of(&db.path), 0o644, "an existing file keeps its mode");
    drop(store);

    // The CLI creates private files too.
    let cli_db = db.sibling("cli.db");
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&cli_db)
        .args(["set", "a", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode_of(&cli_db), 0o600);
}
