//! When the change log cannot be trusted — wiped, pruned, its triggers
//! dropped, the schema changed, or a different file at the path — the store
//! falls back to a full reload and diff, and ends holding exactly what the
//! database holds, with the reason counted.

mod support;

use livesettings::{Error, Event, Options, ReloadReason, Source, Store, WatchMode};
use serde_json::json;

use support::*;

fn open_store(path: &std::path::Path) -> Store {
    Options::new()
        .with_watch(WatchMode::default())
        .open(path)
        .expect("open the store")
}

/// A store with five keys written through it (applied_seq 5).
fn seeded(db: &TempDb) -> Store {
    let store = open_store(&db.path);
    store
        .merge(&json!({
            "physics": {"damping": 0.6, "iterations": 100, "enabled": true},
            "render": {"title": "graph", "size": [80.0, 180.0]},
        }))
        .unwrap();
    assert_eq!(store.stats().applied_seq, 5);
    store
}

fn waited_reload(events: &crossbeam_channel::Receiver<Event>, what: &str) -> ReloadReason {
    let (event, before) = events_until(events, what, |event| {
        matches!(event, Event::Reloaded { .. })
    });
    assert!(
        before.is_empty(),
        "{what}: nothing precedes the reload: {before:?}"
    );
    match event {
        Event::Reloaded { reason, .. } => reason,
        _ => unreachable!(),
    }
}

/// One key's change: (key, old, new).
type KeyChange = (String, Option<serde_json::Value>, Option<serde_json::Value>);

/// Reads the next `count` events, which must be external changes, and
/// returns them sorted by key; then waits until the snapshot equals the
/// database and checks no further change was published.
fn changes_then_converged(
    store: &Store,
    events: &crossbeam_channel::Receiver<Event>,
    count: usize,
    what: &str,
) -> Vec<KeyChange> {
    let mut changes: Vec<KeyChange> = (0..count)
        .map(|_| {
            let change = next_change(events, what);
            assert_eq!(change.source, Source::External, "{what}: {change:?}");
            (
                change.key.clone(),
                change.old_value().cloned(),
                change.new_value().cloned(),
            )
        })
        .collect();
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    wait_converged(store, what);
    let extra = drain(events);
    assert!(extra.is_empty(), "{what}: unexpected events {extra:?}");
    changes
}

/// The log wiped by an operator (rows and the AUTOINCREMENT counter), then
/// a change: the log restarts below the applied position.
#[test]
fn log_wiped_then_a_change_reloads() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "DELETE FROM settings_log; DELETE FROM sqlite_sequence WHERE name = 'settings_log';",
    );
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.9' WHERE key = 'physics.damping'",
    );

    let reason = waited_reload(&events, "a reload after the log was wiped");
    assert!(
        matches!(reason, ReloadReason::LogReset | ReloadReason::LogGap),
        "{reason:?}"
    );
    let in_db = wait_converged(&store, "after the log was wiped");
    assert_eq!(in_db["physics.damping"], json!(0.9));
    // The store follows the restarted log.
    wait_stats(&store, "applied_seq back at 1", |stats| {
        stats.applied_seq == 1
    });
    let stats = store.stats();
    assert!(
        stats.reloads(ReloadReason::LogReset) + stats.reloads(ReloadReason::LogGap) >= 1,
        "{stats:?}"
    );

    // The restarted log is followed granularly from then on.
    let reloads = stats.full_reloads;
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '7' WHERE key = 'physics.iterations'",
    );
    let (event, _) = events_until(&events, "a change after the restart", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "physics.iterations")
    });
    assert_eq!(
        event.as_change().unwrap().new_value().cloned(),
        Some(json!(7))
    );
    wait_converged(&store, "after a change on the restarted log");
    assert_eq!(store.stats().full_reloads, reloads, "{:?}", store.stats());
}

/// Empties the log, restarts its sequence and makes five changes (seq 1..=5
/// afterwards), to run inside one transaction.
const WIPE_LOG_AND_MAKE_FIVE_CHANGES: &str = "
    DELETE FROM settings_log;
    DELETE FROM sqlite_sequence WHERE name = 'settings_log';
    UPDATE settings SET value = '0.1' WHERE key = 'physics.damping';
    UPDATE settings SET value = '1' WHERE key = 'physics.iterations';
    UPDATE settings SET value = 'false' WHERE key = 'physics.enabled';
    UPDATE settings SET value = '\"wiped\"' WHERE key = 'render.title';
    DELETE FROM settings WHERE key = 'render.size';";

/// The log wiped and refilled in one transaction with more rows than the
/// store had applied: the position alone looks like progress, but the rows
/// at or below it are not the ones the store applied.
#[test]
fn log_wiped_and_refilled_past_the_applied_position_in_one_transaction() {
    let db = TempDb::new();
    let store = seeded(&db);

    // Seven new log rows (seq 1..=7) against an applied position of 5: the
    // first five changes land at seqs the store believes it has applied.
    sqlite3(
        &db.path,
        &format!(
            "BEGIN; {WIPE_LOG_AND_MAKE_FIVE_CHANGES}
             INSERT INTO settings (key, value) VALUES ('extra.a', '1');
             INSERT INTO settings (key, value) VALUES ('extra.b', '2');
             COMMIT;"
        ),
    );
    wait_until("the last two rows applied", || {
        store.get_json("extra.b") == Some(json!(2))
    });
    let in_db = wait_converged(&store, "after the log was wiped and refilled");
    assert_eq!(in_db["physics.damping"], json!(0.1));
}

/// The log wiped and refilled in one transaction with exactly as many rows
/// as the store had applied: the position is unchanged, yet every key
/// changed.
#[test]
fn log_wiped_and_refilled_to_exactly_the_applied_position_in_one_transaction() {
    let db = TempDb::new();
    let store = seeded(&db);

    // Five new log rows (seq 1..=5) against an applied position of 5.
    sqlite3(
        &db.path,
        &format!("BEGIN; {WIPE_LOG_AND_MAKE_FIVE_CHANGES} COMMIT;"),
    );
    assert_eq!(
        db_scalar(&db.path, "SELECT max(seq) FROM settings_log").as_deref(),
        Some("5")
    );
    let in_db = wait_converged(&store, "after the log was wiped and refilled to 5");
    assert_eq!(in_db["physics.damping"], json!(0.1));
}

/// Log rows after the applied position pruned in the same transaction as
/// the changes they recorded: a gap.
#[test]
fn log_pruned_past_the_applied_position_reloads_with_log_gap() {
    let db = TempDb::new();
    let store = seeded(&db);
    let applied = store.stats().applied_seq;
    let events = store.subscribe("").unwrap();

    let mut writer = PythonWriter::open(&db.path);
    writer.transaction(&[
        (
            "UPDATE settings SET value = '0.3' WHERE key = 'physics.damping'",
            vec![],
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('physics.gravity', '9.8')",
            vec![],
        ),
        (
            "DELETE FROM settings_log WHERE seq = ?1",
            vec![json!(applied + 1)],
        ),
    ]);
    writer.finish();

    assert_eq!(
        waited_reload(&events, "a reload after the log was pruned"),
        ReloadReason::LogGap
    );
    let changes = changes_then_converged(&store, &events, 2, "after the log was pruned");
    assert_eq!(
        changes,
        [
            (
                "physics.damping".to_owned(),
                Some(json!(0.6)),
                Some(json!(0.3))
            ),
            ("physics.gravity".to_owned(), None, Some(json!(9.8))),
        ],
        "the diff still yields exact per-key events"
    );
    wait_stats(&store, "the reload counted", |stats| {
        stats.full_reloads >= 1
    });
    let stats = store.stats();
    assert_eq!(stats.reloads(ReloadReason::LogGap), 1, "{stats:?}");
    assert_eq!(stats.full_reloads, 1, "{stats:?}");
    assert_eq!(stats.applied_seq, applied + 2, "{stats:?}");
}

/// The change-log triggers dropped by an operator, and changes made while
/// they were gone (so nothing logged them): the store recreates them and
/// reloads.
#[test]
fn triggers_dropped_are_recreated_and_the_store_reloads() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "BEGIN;
         DROP TRIGGER settings_log_insert;
         DROP TRIGGER settings_log_update;
         DROP TRIGGER settings_log_delete;
         UPDATE settings SET value = '0.75' WHERE key = 'physics.damping';
         INSERT INTO settings (key, value) VALUES ('physics.gravity', '9.8');
         DELETE FROM settings WHERE key = 'render.title';
         COMMIT;",
    );

    assert_eq!(
        waited_reload(&events, "a reload after the triggers were dropped"),
        ReloadReason::TriggersMissing
    );
    let changes = changes_then_converged(&store, &events, 3, "after the triggers were dropped");
    assert_eq!(
        changes,
        [
            (
                "physics.damping".to_owned(),
                Some(json!(0.6)),
                Some(json!(0.75))
            ),
            ("physics.gravity".to_owned(), None, Some(json!(9.8))),
            ("render.title".to_owned(), Some(json!("graph")), None),
        ]
    );
    assert_triggers_present(&db.path);
    wait_stats(&store, "the reload counted", |stats| {
        stats.full_reloads >= 1
    });
    let stats = store.stats();
    assert_eq!(stats.reloads(ReloadReason::TriggersMissing), 1, "{stats:?}");

    // With the triggers back, the next foreign change is logged and applied
    // granularly.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.8' WHERE key = 'physics.damping'",
    );
    let change = next_change(&events, "a change after the triggers were recreated");
    assert_eq!(
        (change.key.as_str(), change.new_value().cloned()),
        ("physics.damping", Some(json!(0.8)))
    );
    wait_converged(&store, "after the triggers were recreated");
    wait_stats(&store, "the granular apply counted", |stats| {
        stats.external_applies >= 1
    });
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 1, "{stats:?}");
    assert_eq!(stats.external_applies, 1, "{stats:?}");
}

/// Foreign DDL (an operator adds an index and a table) in the transaction
/// of a change: the schema changed, so the store reloads.
#[test]
fn foreign_schema_change_reloads_with_schema_changed() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "BEGIN;
         CREATE TABLE operator_notes (note TEXT);
         UPDATE settings SET value = '42' WHERE key = 'physics.iterations';
         COMMIT;",
    );
    assert_eq!(
        waited_reload(&events, "a reload after foreign DDL"),
        ReloadReason::SchemaChanged
    );
    let changes = changes_then_converged(&store, &events, 1, "after foreign DDL");
    assert_eq!(
        changes,
        [(
            "physics.iterations".to_owned(),
            Some(json!(100)),
            Some(json!(42))
        )]
    );
    wait_stats(&store, "the reload counted", |stats| {
        stats.full_reloads >= 1
    });
    assert_eq!(
        store.stats().reloads(ReloadReason::SchemaChanged),
        1,
        "{:?}",
        store.stats()
    );
    assert_triggers_present(&db.path);
}

/// The schema version in the meta table changed under the store.
#[test]
fn schema_version_bumped_reloads_with_schema_version_changed() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "BEGIN;
         UPDATE livesettings_meta SET value = '1.0' WHERE name = 'schema_version';
         UPDATE settings SET value = '\"bumped\"' WHERE key = 'render.title';
         COMMIT;",
    );
    assert_eq!(
        waited_reload(&events, "a reload after the schema version changed"),
        ReloadReason::SchemaVersionChanged
    );
    let changes = changes_then_converged(&store, &events, 1, "after the version bump");
    assert_eq!(
        changes,
        [(
            "render.title".to_owned(),
            Some(json!("graph")),
            Some(json!("bumped"))
        )]
    );
    wait_stats(&store, "the reload counted", |stats| {
        stats.full_reloads >= 1
    });
    let stats = store.stats();
    assert_eq!(
        stats.reloads(ReloadReason::SchemaVersionChanged),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.full_reloads, 1, "{stats:?}");
}

/// Builds a second database next to `db` with the CLI and returns its path
/// and instance id.
fn build_other_database(db: &TempDb, name: &str, tree: serde_json::Value) -> std::path::PathBuf {
    let other = db.sibling(name);
    let document = db.sibling(&format!("{name}.json"));
    std::fs::write(&document, tree.to_string()).unwrap();
    cli_ok(&other, &["import", document.to_str().unwrap()]);
    other
}

fn instance_id(path: &std::path::Path) -> String {
    db_scalar(
        path,
        "SELECT value FROM livesettings_meta WHERE name = 'instance_id'",
    )
    .expect("an instance id")
}

/// A deploy tool renames a new database over the live one: the store
/// notices the different file, reopens, reloads, and writes to the new file.
#[test]
fn database_replaced_by_rename_is_followed() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();
    let other = build_other_database(
        &db,
        "other.db",
        json!({
            "physics": {"damping": 0.2, "iterations": 100},
            "deploy": {"version": "v2"},
        }),
    );
    let new_id = instance_id(&other);
    assert_ne!(new_id, instance_id(&db.path));

    std::fs::rename(&other, &db.path).unwrap();

    assert_eq!(
        waited_reload(&events, "a reload after the file was replaced"),
        ReloadReason::FileReplaced
    );
    let changes = changes_then_converged(&store, &events, 5, "after the rename");
    assert_eq!(
        changes,
        [
            ("deploy.version".to_owned(), None, Some(json!("v2"))),
            (
                "physics.damping".to_owned(),
                Some(json!(0.6)),
                Some(json!(0.2))
            ),
            ("physics.enabled".to_owned(), Some(json!(true)), None),
            ("render.size".to_owned(), Some(json!([80.0, 180.0])), None),
            ("render.title".to_owned(), Some(json!("graph")), None),
        ]
    );
    wait_stats(&store, "the reload counted", |stats| {
        stats.reloads(ReloadReason::FileReplaced) >= 1
    });

    // Writes land in the new file, not the orphaned old one.
    store.set("deploy.version", "v3").unwrap();
    assert_eq!(instance_id(&db.path), new_id);
    assert_eq!(
        sqlite3(
            &db.path,
            "SELECT value FROM settings WHERE key = 'deploy.version'"
        )
        .trim(),
        "\"v3\""
    );
    // And foreign writes to the new file are followed granularly.
    let reloads = store.stats().full_reloads;
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.25' WHERE key = 'physics.damping'",
    );
    let (event, _) = events_until(&events, "a foreign change to the new file", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "physics.damping")
    });
    let change = event.as_change().unwrap();
    assert_eq!(
        (
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        (Some(json!(0.2)), Some(json!(0.25)), Source::External)
    );
    wait_converged(&store, "after a change to the new file");
    assert_eq!(store.stats().full_reloads, reloads);
}

/// The database deleted (with its `-wal` and `-shm`): the store keeps
/// serving the last snapshot and refuses writes; when a database is created
/// at the path again, it follows it.
#[test]
fn database_deleted_then_recreated_is_followed() {
    let db = TempDb::new();
    let store = seeded(&db);
    let events = store.subscribe("").unwrap();
    let old_id = instance_id(&db.path);

    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => panic!("cannot delete {name:?}: {error}"),
        }
    }

    assert_eq!(store.get::<f64>("physics.damping").unwrap(), Some(0.6));
    match store.set("physics.damping", &0.1) {
        Err(Error::DatabaseMissing { path }) => assert_eq!(path, db.path),
        other => panic!("expected DatabaseMissing, got {other:?}"),
    }
    assert!(
        !db.path.exists(),
        "a failed write does not recreate the file"
    );
    assert_eq!(store.get::<f64>("physics.damping").unwrap(), Some(0.6));

    // The watcher survives: it follows a new database at the path.
    let document = db.sibling("new.json");
    std::fs::write(
        &document,
        json!({"physics": {"damping": 0.4}, "fresh": {"start": true}}).to_string(),
    )
    .unwrap();
    cli_ok(&db.path, &["import", document.to_str().unwrap()]);
    assert_ne!(instance_id(&db.path), old_id);

    let (_, before) = events_until(&events, "a reload after the file came back", |event| {
        matches!(
            event,
            Event::Reloaded {
                reason: ReloadReason::FileReplaced,
                ..
            }
        )
    });
    assert!(
        before.iter().all(|event| event.as_change().is_none()),
        "no change before the reload: {before:?}"
    );
    let in_db = wait_converged(&store, "after the file was recreated");
    assert_eq!(
        in_db,
        [
            ("fresh.start".to_owned(), json!(true)),
            ("physics.damping".to_owned(), json!(0.4)),
        ]
        .into_iter()
        .collect()
    );
    wait_stats(&store, "the reload counted", |stats| {
        stats.reloads(ReloadReason::FileReplaced) >= 1
    });

    store.set("physics.damping", &0.5).unwrap();
    assert_eq!(
        sqlite3(
            &db.path,
            "SELECT value FROM settings WHERE key = 'physics.damping'"
        )
        .trim(),
        "0.5"
    );
}
