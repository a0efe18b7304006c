//! Rows the store refuses on their own — a value the CHECK constraint lets
//! through but JSON numbers cannot hold, a key below a key that holds a
//! value (which the database refuses since schema version 3, but a file
//! from before, or a session that dropped the trigger, can hold) — stay
//! visible as rejections (`rejected()`, `stats`, events) from the moment
//! the store opens, and never break reads of their section.

mod support;

use livesettings::{Event, Options, Store, WatchMode};
use serde_json::json;
use support::{
    TempDb, cli_ok, db_scalar, fingerprint, next_change, next_event, recv_until, sqlite3,
    sqlite3_command,
};

#[test]
fn an_unreadable_value_stored_before_open_is_reported_as_rejected() {
    let db = TempDb::new();
    Store::open(&db.path).unwrap().close().unwrap();
    // Valid JSON text (the CHECK accepts it), but beyond any f64.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('app.huge', '1e400'), ('app.ok', '1')",
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert_eq!(store.get::<i64>("app.ok").unwrap(), Some(1));
    assert!(!store.contains("app.huge"));
    let rejected = store.rejected();
    assert!(
        rejected
            .iter()
            .any(|rejection| rejection.keys == ["app.huge"]),
        "{rejected:?}"
    );
    assert!(store.stats().rejected_values >= 1, "{:?}", store.stats());
    // A good value for the key clears the refusal.
    store.set("app.huge", &2).unwrap();
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

/// Since schema version 3 the database refuses the row itself: the shell
/// gets the trigger's error, and nothing changes anywhere.
#[test]
fn a_key_below_a_leaf_written_by_the_shell_is_refused_by_the_database_and_nothing_changes() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"p": {"damping": 0.6, "spring": 0.1}}))
        .unwrap();
    let events = store.subscribe("p").unwrap();
    let before = fingerprint(&db.path);
    let output = sqlite3_command(&db.path)
        .arg("INSERT INTO settings (key, value) VALUES ('p.damping.sub', '1')")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the shell's insert succeeded");
    assert!(
        stderr.contains("livesettings: a key cannot lie below a key that holds a value"),
        "{stderr}"
    );
    assert_eq!(fingerprint(&db.path), before, "the file changed");
    // A later commit is the next thing the store sees: no change, no
    // refusal before it.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.2' WHERE key = 'p.spring'",
    );
    let change = next_change(&events, "the later commit");
    assert_eq!(change.key, "p.spring");
    assert_eq!(
        store.subtree("p").unwrap(),
        Some(json!({"damping": 0.6, "spring": 0.2}))
    );
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

/// A shell session that drops the shape trigger before inserting (as a file
/// from before schema version 3 could hold such a row) gets the key below
/// the leaf stored: the store refuses it on its side, keeps serving the
/// leaf, and recreates the trigger.
#[test]
fn a_key_below_a_leaf_stored_without_the_shape_trigger_is_refused_and_reads_keep_working() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"p": {"damping": 0.6, "spring": 0.1}}))
        .unwrap();
    let events = store.subscribe("p").unwrap();
    sqlite3(
        &db.path,
        "BEGIN; DROP TRIGGER settings_shape_insert; \
         INSERT INTO settings (key, value) VALUES ('p.damping.sub', '1'); COMMIT;",
    );
    let mut seen = Vec::new();
    let event = recv_until(&events, &mut seen, "the refusal", |event| {
        matches!(event, Event::Rejected(_))
    });
    let Event::Rejected(rejection) = event else {
        unreachable!()
    };
    assert_eq!(rejection.keys, ["p.damping.sub"]);
    assert!(rejection.reason.contains("p.damping"), "{rejection:?}");
    assert_eq!(
        store.subtree("p").unwrap(),
        Some(json!({"damping": 0.6, "spring": 0.1}))
    );
    assert!(
        store
            .rejected()
            .iter()
            .any(|rejection| rejection.keys == ["p.damping.sub"])
    );
    // The CLI's export of the same file keeps working too.
    let exported: serde_json::Value =
        serde_json::from_str(&cli_ok(&db.path, &["export", "p"])).unwrap();
    assert_eq!(exported["damping"], json!(0.6), "{exported}");
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT count(*) FROM sqlite_master WHERE name = 'settings_shape_insert'"
        )
        .as_deref(),
        Some("1"),
        "the store recreated the trigger"
    );
    // Removing the leaf and rewriting the key below it makes it a section.
    store.unset("p.damping").unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '2' WHERE key = 'p.damping.sub'",
    );
    loop {
        if let Event::Change(change) = next_event(&events, "the section key") {
            if change.key == "p.damping.sub" {
                assert_eq!(change.new_value(), Some(&json!(2)));
                break;
            }
        }
    }
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

#[test]
fn a_file_holding_a_key_below_a_leaf_opens_serves_the_leaf_and_reports_the_key() {
    let db = TempDb::new();
    Store::open(&db.path).unwrap().close().unwrap();
    // A file from before the shape triggers: the session drops them first.
    sqlite3(
        &db.path,
        "DROP TRIGGER settings_shape_insert; \
         INSERT INTO settings (key, value) VALUES ('a.b', '1'), ('a.b.c', '2'), ('a.b-x', '3'), ('a.d', '4')",
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert_eq!(
        store.subtree("a").unwrap(),
        Some(json!({"b": 1, "b-x": 3, "d": 4}))
    );
    let rejected = store.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].keys, ["a.b.c"]);
}

#[test]
fn watch_reports_the_rows_refused_at_start_up() {
    let db = TempDb::new();
    Store::open(&db.path).unwrap().close().unwrap();
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('app.huge', '1e400'), ('app.ok', '1')",
    );
    let watch = support::WatchProcess::spawn(&db.path, &["--json"]);
    let mut lines = Vec::new();
    let rejected = loop {
        let line = watch
            .lines
            .recv_timeout(support::TIMEOUT)
            .unwrap_or_else(|error| panic!("no rejected line; got {lines:?}: {error}"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["event"] == "rejected" {
            break value;
        }
        lines.push(value);
    };
    assert_eq!(rejected["key"], "app.huge", "{rejected}");
    assert!(
        lines.iter().any(|line| line["event"] == "ready"),
        "ready comes first: {lines:?}"
    );
}

/// One commit that removes a leaf and adds a key below it is a valid
/// restructuring, applied whole (the database refuses each statement that
/// would leave a key both a value and a section, so the delete comes first).
#[test]
fn a_commit_that_turns_a_leaf_into_a_section_is_applied_whole() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("m.a", &1).unwrap();
    let events = store.subscribe("m").unwrap();
    sqlite3(
        &db.path,
        "BEGIN; DELETE FROM settings WHERE key = 'm.a'; \
         INSERT INTO settings (key, value) VALUES ('m.a.deep', '2'); COMMIT;",
    );
    let mut seen = Vec::new();
    recv_until(
        &events,
        &mut seen,
        "the new key",
        |event| matches!(event, Event::Change(change) if change.key == "m.a.deep"),
    );
    support::wait_until("the leaf is gone", || !store.contains("m.a"));
    assert_eq!(store.subtree("m").unwrap(), Some(json!({"a": {"deep": 2}})));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
    assert!(
        seen.iter()
            .all(|event| !matches!(event, Event::Rejected(_))),
        "{seen:?}"
    );
}

/// The other order (the key below first, then the leaf's delete) is
/// refused at its first statement: the shell's transaction stops there
/// (`-bail`, and the shell's exit rolls it back), and nothing changes.
#[test]
fn a_commit_that_inserts_below_a_leaf_before_deleting_it_is_refused_and_changes_nothing() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("m.a", &1).unwrap();
    let events = store.subscribe("m").unwrap();
    let before = fingerprint(&db.path);
    let output = sqlite3_command(&db.path)
        .arg(
            "BEGIN; INSERT INTO settings (key, value) VALUES ('m.a.deep', '2'); \
             DELETE FROM settings WHERE key = 'm.a'; COMMIT;",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the shell's commit succeeded");
    assert!(
        stderr.contains("livesettings: a key cannot lie below a key that holds a value"),
        "{stderr}"
    );
    assert_eq!(fingerprint(&db.path), before, "the file changed");
    // The next commit is the first thing the store sees.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '3' WHERE key = 'm.a'",
    );
    let change = next_change(&events, "the later commit");
    assert_eq!(
        (change.key.as_str(), change.new_value().cloned()),
        ("m.a", Some(json!(3)))
    );
    assert_eq!(store.subtree("m").unwrap(), Some(json!({"a": 3})));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}
