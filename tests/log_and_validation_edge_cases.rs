//! Edge cases of the change log, validation, lag accounting and side-file
//! cleanup: each test pins one behaviour that an earlier version got wrong.

mod support;

use std::time::Duration;

use livesettings::{Event, Options, Store, WatchMode};
use serde_json::json;
use support::{TempDb, connect, next_event, poll_until, sqlite3};

/// How long the tests below give the store to do something that takes
/// milliseconds, when a failure is expected to show as a timeout.
const SHORT: Duration = Duration::from_secs(5);

/// A validator on a section rewrites that section's `Change` events with the
/// pass's last seq, so a multi-key commit reports the wrong seq for the
/// validated keys (and `revert(change.seq)` would undo another key).
#[test]
fn validated_section_events_keep_their_own_seq() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.add_json_validator("a", |_| Ok(())).unwrap();
    let events = store.subscribe("").unwrap();
    store.merge(&json!({"a": {"x": 1}, "b": 2})).unwrap();
    let logged = store.history("a.x", 1).unwrap()[0].seq;
    let mut changes = Vec::new();
    while let Ok(Event::Change(change)) = events.try_recv() {
        changes.push(change);
    }
    let a_x = changes
        .iter()
        .find(|change| change.key == "a.x")
        .expect("an event for a.x");
    assert_eq!(
        a_x.seq, logged,
        "the event for a.x names seq {} but a.x was logged at {logged}; events: {changes:?}",
        a_x.seq
    );
    let seqs: Vec<i64> = changes.iter().map(|change| change.seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "events out of seq order: {changes:?}"
    );
}

/// A pending rejection is cleared only when a pass has a `Change` under the
/// section. Restoring the last good value (the natural fix, and exactly what
/// `revert(rejection.seq)` writes) produces no change against the snapshot,
/// so the rejection stays reported forever although the database is valid.
#[test]
fn restoring_the_last_good_value_clears_the_rejection() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("limits.max", &10).unwrap();
    store
        .add_json_validator("limits", |section| match section["max"].as_i64() {
            Some(max) if max <= 100 => Ok(()),
            _ => Err("max must be at most 100".to_owned()),
        })
        .unwrap();
    let events = store.subscribe("limits").unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '999' WHERE key = 'limits.max'",
    );
    let Event::Rejected(rejection) = next_event(&events, "the rejection") else {
        panic!("expected a rejection")
    };
    assert_eq!(store.get::<i64>("limits.max").unwrap(), Some(10));
    // Undo the bad write: the database holds 10 again, a valid section.
    store.revert(rejection.seq).unwrap();
    assert_eq!(
        support::db_value(&db.path, "limits.max"),
        Some(json!(10)),
        "the revert restored the database"
    );
    assert!(
        store.rejected().is_empty(),
        "the section is valid again but still reported as rejected: {:?}",
        store.rejected()
    );
}

/// `INSERT OR REPLACE` (the shell's `REPLACE INTO`) on an existing key
/// deletes the row without firing the delete trigger, so the insert trigger
/// logs `old = NULL`: history says the key was created, and `revert` /
/// `revert_to` delete a key that existed.
#[test]
fn revert_after_insert_or_replace_restores_the_old_value() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let before = store.set("a", &1).unwrap();
    store
        .write(|tx| {
            tx.execute("REPLACE INTO settings (key, value) VALUES ('a', '2')", [])?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.get::<i64>("a").unwrap(), Some(2));
    let history = store.history("a", 10).unwrap();
    assert_eq!(
        history.last().unwrap().old_value().cloned(),
        Some(json!(1)),
        "the log says 'a' was created: {history:?}"
    );
    store.revert_to(before.seq).unwrap();
    assert_eq!(
        store.get::<i64>("a").unwrap(),
        Some(1),
        "revert_to deleted a key that held 1 at seq {}",
        before.seq
    );
}

/// The granular path reads `settings_log.key`/`new` as `String`: a BLOB
/// value that bypassed the CHECK (`PRAGMA ignore_check_constraints`, which the
/// full reload explicitly tolerates) makes every later pass fail. Every
/// later local write then returns an error although it committed, and
/// nothing reaches the snapshot again.
#[test]
fn a_non_text_value_in_the_log_does_not_wedge_the_store() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("a", &1).unwrap();
    let conn = connect(&db.path);
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON; UPDATE settings SET value = x'35' WHERE key = 'a';",
    )
    .unwrap();
    drop(conn);
    let written = store.set("b", &2);
    assert_eq!(
        support::db_scalar(&db.path, "SELECT value FROM settings WHERE key = 'b'").as_deref(),
        Some("2"),
        "the write committed"
    );
    assert!(
        written.is_ok(),
        "a committed write reported an error: {written:?}"
    );
    assert_eq!(store.get::<i64>("b").unwrap(), Some(2));
}

/// A validator closure that panics (an `unwrap` on an operator-supplied
/// value) kills the watcher thread: no foreign change is ever applied again.
#[test]
fn a_panicking_validator_does_not_kill_the_watcher() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.merge(&json!({"a": {"n": 1}, "b": 1})).unwrap();
    store
        .add_json_validator("a", |section| {
            let n = section["n"].as_i64().unwrap(); // panics on a non-integer
            if n >= 0 {
                Ok(())
            } else {
                Err("negative".to_owned())
            }
        })
        .unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '\"oops\"' WHERE key = 'a.n'",
    );
    // A later, unrelated foreign change must still be applied.
    sqlite3(&db.path, "UPDATE settings SET value = '2' WHERE key = 'b'");
    assert!(
        poll_until(SHORT, || store.get::<i64>("b").unwrap() == Some(2)),
        "the foreign change to 'b' was never applied (watcher errors: {})",
        store.stats().watcher_errors
    );
}

/// `events_dropped` is computed as `missed - missed_before`, but `missed` is
/// reset to 0 when the `Lagged` notice goes through: drops after the notice
/// in the same publish are not counted.
#[test]
fn dropped_events_are_all_counted() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .with_channel_capacity(2)
        .open(&db.path)
        .unwrap();
    let events = store.subscribe("").unwrap();
    // 4 events into a channel of 2: 2 dropped.
    store
        .merge(&json!({"k1": 1, "k2": 1, "k3": 1, "k4": 1}))
        .unwrap();
    assert_eq!(store.stats().events_dropped, 2);
    // The two that fit and the lag notice; nothing more until it is read.
    store
        .merge(&json!({"k1": 2, "k2": 2, "k3": 2, "k4": 2, "k5": 2, "k6": 2}))
        .unwrap();
    assert_eq!(
        store.stats().events_dropped,
        2 + 6,
        "drops while the Lagged notice is unread are counted"
    );
    let received: Vec<Event> = events.try_iter().collect();
    assert_eq!(received.len(), 3, "{received:?}");
    assert_eq!(received[2], Event::Lagged { missed: 2, seq: 4 });
}

/// `follow_file` removes the recorded side files but keeps the record when
/// the reopen then fails (`release_locked` takes it; `follow_file` does
/// not). The next attempt removes them again by inode number, and by then
/// the inode of the old `-wal` can belong to the new database's `-wal`
/// (ext4 reuses a freed inode at once): a WAL holding another process's
/// committed writes is deleted.
#[test]
fn a_failed_reopen_does_not_later_delete_the_new_databases_wal() {
    use std::os::unix::fs::MetadataExt;
    let db = TempDb::new();
    let wal = db.sibling("settings.db-wal");
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("a", &1).unwrap();
    let old_wal = std::fs::metadata(&wal).unwrap().ino();
    // The database the deploy tool will install, built before the swap.
    let new_db = db.sibling("new.db");
    let builder = Options::new()
        .with_watch(WatchMode::Off)
        .open(&new_db)
        .unwrap();
    builder.set("fresh", &1).unwrap();
    builder.close().unwrap();
    // First a broken file lands at the path: the reopen fails.
    let garbage = db.sibling("garbage");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    std::fs::rename(&garbage, &db.path).unwrap();
    assert!(store.set("a", &2).is_err(), "the reopen of garbage fails");
    // Files created now may get the old -wal's inode number back.
    let mut reused = None;
    for at in 0..500 {
        let candidate = db.sibling(&format!("f{at}"));
        std::fs::write(&candidate, b"").unwrap();
        if std::fs::metadata(&candidate).unwrap().ino() == old_wal {
            reused = Some(candidate);
            break;
        }
    }
    let Some(reused) = reused else {
        eprintln!("inode {old_wal} was not reused here; cannot show the defect");
        return;
    };
    // The good database is installed; another process opens it first and
    // commits (its -wal happens to get the reused inode).
    std::fs::rename(&reused, &wal).unwrap();
    std::fs::rename(&new_db, &db.path).unwrap();
    let other = connect(&db.path);
    other
        .execute(
            "INSERT INTO settings (key, value) VALUES ('from_other', '1')",
            [],
        )
        .unwrap();
    assert_eq!(std::fs::metadata(&wal).unwrap().ino(), old_wal);
    // The store follows the file on its next write.
    let written = store.set("a", &3);
    assert!(
        std::fs::metadata(&wal).is_ok_and(|meta| meta.ino() == old_wal),
        "the store deleted the -wal of the new database (written: {written:?})"
    );
    assert!(written.is_ok(), "{written:?}");
    assert_eq!(store.get::<i64>("from_other").unwrap(), Some(1));
    drop(other);
}
