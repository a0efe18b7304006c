//! Temporary overrides (`set KEY VALUE --for 2s`, `Store::set_for`): the
//! previous value comes back when the time is up, as a logged change with
//! origin `override-expired`, put back by whichever store runs, or by the
//! next one to open when none ran; a later write cancels it.

mod support;

use std::time::{Duration, SystemTime};

use livesettings::{Options, Store, WatchMode};
use serde_json::json;

use support::*;

/// Sleeps until `until` has passed: the behaviour under test is due at a
/// time, so this waits for the clock, not for another thread.
fn sleep_past(until: SystemTime) {
    if let Ok(left) = until.duration_since(SystemTime::now()) {
        std::thread::sleep(left + Duration::from_millis(50));
    }
}

fn newest_origin(db: &std::path::Path, key: &str) -> Option<String> {
    db_scalar(
        db,
        &format!("SELECT origin FROM settings_log WHERE key = '{key}' ORDER BY seq DESC LIMIT 1"),
    )
}

#[test]
fn a_running_store_restores_an_expired_override_on_time() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "log.level", "\"info\""]);
    let watch = WatchProcess::spawn(&db.path, &["--json"]);
    let ready = watch.lines.recv_timeout(TIMEOUT).expect("ready");
    assert!(ready.contains("ready"), "{ready}");
    cli_ok(&db.path, &["set", "log.level", "\"debug\"", "--for", "1s"]);
    assert_eq!(db_value(&db.path, "log.level"), Some(json!("debug")));
    // Restored by the watch process (nobody else opens the database).
    wait_until("the watch process restores the value", || {
        db_value(&db.path, "log.level") == Some(json!("info"))
    });
    assert_eq!(
        newest_origin(&db.path, "log.level").as_deref(),
        Some("override-expired")
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert!(store.pending_overrides().unwrap().is_empty());
}

#[test]
fn the_next_store_to_open_restores_an_override_that_expired_while_none_ran() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("a.kept", &1).unwrap();
    store
        .set_for("a.kept", &2, Duration::from_millis(300))
        .unwrap();
    store
        .set_for("a.new", &true, Duration::from_millis(300))
        .unwrap();
    let pending = store.pending_overrides().unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let until = pending.iter().map(|p| p.until).max().unwrap();
    store.close().unwrap();
    sleep_past(until);
    assert_eq!(db_value(&db.path, "a.kept"), Some(json!(2)), "no store ran");
    // The next opener (here the CLI's writing path) restores at once.
    let reopened = Store::open(&db.path).unwrap();
    assert_eq!(reopened.get::<i64>("a.kept").unwrap(), Some(1));
    assert_eq!(
        reopened.get::<bool>("a.new").unwrap(),
        None,
        "an absent key is removed again"
    );
    assert_eq!(db_value(&db.path, "a.kept"), Some(json!(1)));
    assert!(reopened.pending_overrides().unwrap().is_empty());
}

#[test]
fn a_later_write_cancels_the_override() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "k.by_set", "1"]);
    cli_ok(&db.path, &["set", "k.by_shell", "1"]);
    cli_ok(&db.path, &["set", "k.by_set", "2", "--for", "300ms"]);
    cli_ok(&db.path, &["set", "k.by_shell", "2", "--for", "300ms"]);
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let pending = store.pending_overrides().unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let until = pending.iter().map(|p| p.until).max().unwrap();
    store.close().unwrap();
    // A set through the CLI and a foreign write of another value: both
    // cancel at once (nothing pending), and no restore clobbers them.
    cli_ok(&db.path, &["set", "k.by_set", "3"]);
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '4' WHERE key = 'k.by_shell'",
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert!(store.pending_overrides().unwrap().is_empty());
    store.close().unwrap();
    sleep_past(until);
    let store = Store::open(&db.path).unwrap();
    assert_eq!(store.get::<i64>("k.by_set").unwrap(), Some(3));
    assert_eq!(store.get::<i64>("k.by_shell").unwrap(), Some(4));
    assert!(store.pending_overrides().unwrap().is_empty());
}

#[test]
fn an_override_over_a_pending_one_keeps_the_original_value_to_restore() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("mode", &"normal").unwrap();
    store
        .set_for("mode", &"maintenance", Duration::from_secs(600))
        .unwrap();
    store
        .set_for("mode", &"drain", Duration::from_secs(900))
        .unwrap();
    let pending = store.pending_overrides().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].value, Some(json!("drain")));
    assert_eq!(pending[0].restore, Some(json!("normal")));
    assert!(store.set_for("mode", &1, Duration::ZERO).is_err());
}

#[test]
fn status_lists_the_pending_overrides() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "log.level", "\"info\""]);
    cli_ok(&db.path, &["set", "log.level", "\"debug\"", "--for", "15m"]);
    let table = cli_ok(&db.path, &["status"]);
    assert!(table.contains("temporary override of log.level"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&cli_ok(&db.path, &["status", "--json"])).unwrap();
    assert_eq!(report["overrides"][0]["key"], "log.level", "{report}");
    assert_eq!(report["overrides"][0]["by"], "livesettings-cli");
    // A set cancels it: nothing pending any more.
    cli_ok(&db.path, &["set", "log.level", "\"warn\""]);
    let report: serde_json::Value =
        serde_json::from_str(&cli_ok(&db.path, &["status", "--json"])).unwrap();
    assert_eq!(report["overrides"], json!([]), "{report}");
}

#[test]
fn a_read_command_after_expiry_shows_the_restored_value_and_writes_nothing() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "log.level", "\"info\""]);
    cli_ok(
        &db.path,
        &["set", "log.level", "\"debug\"", "--for", "300ms"],
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .read_only()
        .open(&db.path)
        .unwrap();
    let until = store.pending_overrides().unwrap()[0].until;
    store.close().unwrap();
    sleep_past(until);
    let before = fingerprint(&db.path);
    // `get` reads without writing: it serves what the restore will write.
    assert_eq!(cli_ok(&db.path, &["get", "log.level"]).trim(), "\"info\"");
    let exported = cli_ok(&db.path, &["export", "log"]);
    assert!(exported.contains("info"), "{exported}");
    assert_eq!(fingerprint(&db.path), before, "a read command wrote");
    assert_eq!(db_value(&db.path, "log.level"), Some(json!("debug")));
    // The next store with write access logs the restore.
    cli_ok(&db.path, &["set", "other", "1"]);
    assert_eq!(db_value(&db.path, "log.level"), Some(json!("info")));
    assert_eq!(
        newest_origin(&db.path, "log.level").as_deref(),
        Some("override-expired")
    );
}
