//! Rows the store refuses on their own — a value the CHECK constraint lets
//! through but JSON numbers cannot hold, a key below a key that holds a
//! value — stay visible as rejections (`rejected()`, `stats`, events) from
//! the moment the store opens, and never break reads of their section.

mod support;

use livesettings::{Event, Options, Store, WatchMode};
use serde_json::json;
use support::{TempDb, cli_ok, next_event, recv_until, sqlite3};

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

#[test]
fn a_key_below_a_leaf_written_by_the_shell_is_refused_and_reads_keep_working() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge_json(&json!({"p": {"damping": 0.6, "spring": 0.1}}))
        .unwrap();
    let events = store.subscribe("p").unwrap();
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('p.damping.sub', '1')",
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
    // Removing the leaf and rewriting the key below it makes it a section.
    store.unset("p.damping").unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '2' WHERE key = 'p.damping.sub'",
    );
    loop {
        if let Event::Change(change) = next_event(&events, "the section key") {
            if change.key == "p.damping.sub" {
                assert_eq!(change.new, Some(json!(2)));
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
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('a.b', '1'), ('a.b.c', '2'), ('a.b-x', '3'), ('a.d', '4')",
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

/// One commit that adds a key below a leaf and removes the leaf is a valid
/// restructuring: the place of a key is judged once the whole commit is in.
#[test]
fn a_commit_that_turns_a_leaf_into_a_section_is_applied_whole() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("m.a", &1).unwrap();
    let events = store.subscribe("m").unwrap();
    sqlite3(
        &db.path,
        "BEGIN; INSERT INTO settings (key, value) VALUES ('m.a.deep', '2'); \
         DELETE FROM settings WHERE key = 'm.a'; COMMIT;",
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
