//! A bad value stored by another writer never takes the application down:
//! registering a validator (or a rules file) over stored values it refuses
//! succeeds, serves the section from the newest logged state it accepts,
//! else from the defaults, else withholds it, and reports the refusal until
//! a write makes the section valid. And every writing command of the CLI
//! checks the rules file, as `watch` does.

mod support;

use std::path::Path;

use livesettings::{Event, Options, Retention, Rules, Store};
use serde::Deserialize;
use serde_json::json;

use support::*;

#[derive(Debug, Deserialize, PartialEq)]
struct Range {
    min: f64,
    max: f64,
}

fn range_is_ordered(range: &Range) -> Result<(), String> {
    if range.min <= range.max {
        Ok(())
    } else {
        Err(format!("min {} > max {}", range.min, range.max))
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The store's good history, then an operator's bad edit with the shell.
fn db_with_a_bad_edit() -> TempDb {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"range": {"min": 0.0, "max": 1.0}, "other": {"x": 1}}))
        .unwrap();
    store.set("range.max", &2.0).unwrap();
    store.close().unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '5.0' WHERE key = 'range.min'",
    );
    db
}

#[test]
fn registering_over_a_bad_stored_section_serves_its_newest_good_logged_state() {
    let db = db_with_a_bad_edit();
    let store = Store::open(&db.path).unwrap();
    let events = store.subscribe("").unwrap();
    store
        .add_validator::<Range>("range", range_is_ordered)
        .expect("registering over a bad edit must not fail");
    assert_eq!(
        store.section::<Range>("range").unwrap(),
        Range { min: 0.0, max: 2.0 },
        "served as of the last good state"
    );
    let rejected = store.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].keys, vec!["range.min".to_owned()]);
    assert!(
        rejected[0].reason.contains("min 5 > max 2"),
        "{}",
        rejected[0].reason
    );
    match next_event(&events, "the rejection") {
        Event::Rejected(rejection) => assert_eq!(rejection, rejected[0]),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // Everything else works: other sections, and writes elsewhere.
    assert_eq!(store.get::<i64>("other.x").unwrap(), Some(1));
    store.set("other.x", &2).unwrap();
    assert_eq!(
        db_value(&db.path, "range.min"),
        Some(json!(5.0)),
        "unchanged"
    );

    // An operator's fix clears it; the section is the database's again.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '1.5' WHERE key = 'range.min'",
    );
    wait_until("the fix is applied", || {
        store.get::<f64>("range.min").ok().flatten() == Some(1.5)
    });
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

#[test]
fn a_bad_section_with_no_good_logged_state_is_served_from_the_defaults_else_withheld() {
    let db = TempDb::new();
    // The shell created every row: the log holds no good state.
    Store::open(&db.path).unwrap().close().unwrap();
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('range.min', '5'), ('range.max', '1'), ('other.x', '1')",
    );

    let withheld = Store::open(&db.path).unwrap();
    withheld
        .add_validator::<Range>("range", range_is_ordered)
        .unwrap();
    assert!(withheld.keys("range").is_empty(), "withheld");
    assert!(withheld.section::<Range>("range").is_err());
    assert_eq!(withheld.get::<i64>("other.x").unwrap(), Some(1));
    let reason = &withheld.rejected()[0].reason;
    assert!(reason.contains("withheld"), "{reason}");
    withheld.close().unwrap();

    let defaulted = Options::new()
        .with_defaults(json!({"range": {"min": 0, "max": 3}}))
        .open(&db.path)
        .unwrap();
    defaulted
        .add_validator::<Range>("range", range_is_ordered)
        .unwrap();
    // (min 5 stored with the default max 3 is no better: judged as readers
    // would see it.)
    assert_eq!(
        defaulted.section::<Range>("range").unwrap(),
        Range { min: 0.0, max: 3.0 }
    );
    assert!(defaulted.rejected()[0].reason.contains("defaults"));
    // The database still holds what the operator stored.
    assert_eq!(db_value(&db.path, "range.min"), Some(json!(5)));
}

#[test]
fn a_pruned_log_falls_back_to_withholding_the_section() {
    let db = db_with_a_bad_edit();
    let store = Store::open(&db.path).unwrap();
    store
        .prune(Retention {
            keep_last: Some(0),
            max_age: None,
        })
        .unwrap();
    store
        .add_validator::<Range>("range", range_is_ordered)
        .unwrap();
    assert!(store.keys("range").is_empty(), "{:?}", store.keys("range"));
}

#[test]
fn rules_over_bad_stored_values_refuse_only_the_bad_keys() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"app": {"port": 8080}, "ui": {"name": "a"}}))
        .unwrap();
    store.close().unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '70000' WHERE key = 'app.port'; \
         INSERT INTO settings (key, value) VALUES ('app.fresh', '70000')",
    );
    let rules = Rules::from_json(
        r#"{"rules":[{"keys":"app.*","type":"integer","maximum":65535},{"keys":"ui.name","type":"string"}]}"#,
    )
    .unwrap();
    let store = Store::open(&db.path).unwrap();
    store.add_rules(&rules).expect("must not fail");
    assert_eq!(store.get::<i64>("app.port").unwrap(), Some(8080), "logged");
    assert_eq!(store.get::<i64>("app.fresh").unwrap(), None, "withheld");
    let rejected = store.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].keys, vec!["app.fresh", "app.port"]);

    // A foreign write to another key of the rule is applied, and a local
    // write to another key is accepted, while the refusal is pending.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('app.other', '1')",
    );
    wait_until("the other key arrives", || {
        store.get::<i64>("app.other").ok().flatten() == Some(1)
    });
    assert_eq!(store.get::<i64>("app.port").unwrap(), Some(8080));
    store.set("app.workers", &4).unwrap();
    // A local write of a bad value is refused, naming key, value and rule.
    let error = store.set("app.workers", &70000).unwrap_err().to_string();
    assert!(
        error.contains("app.workers") && error.contains("70000") && error.contains("app.*"),
        "{error}"
    );
}

#[test]
fn a_typed_live_section_follows_the_fallback() {
    let db = db_with_a_bad_edit();
    let store = Store::open(&db.path).unwrap();
    let live = store.live::<Range>("range").unwrap();
    assert_eq!(live.load().min, 5.0, "before any validator: as stored");
    store
        .add_validator::<Range>("range", range_is_ordered)
        .unwrap();
    assert_eq!(
        *live.load(),
        std::sync::Arc::new(Range { min: 0.0, max: 2.0 })
    );
}

// ---------------------------------------------------------------------------
// The CLI

/// A database whose rules file sits beside it (`DB.schema.json`).
fn db_with_rules() -> TempDb {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "8080"]);
    cli_ok(&db.path, &["set", "app.name", "\"a\""]);
    let mut rules = db.path.as_os_str().to_owned();
    rules.push(".schema.json");
    std::fs::write(
        rules,
        r#"{"rules":[{"keys":"app.port","type":"integer","maximum":65535}]}"#,
    )
    .unwrap();
    db
}

fn assert_refused(db: &Path, args: &[&str], words: &[&str]) {
    let before = fingerprint(db);
    let output = cli(db, args);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{args:?}: {word:?} in {stderr}");
    }
    assert_eq!(fingerprint(db), before, "{args:?} wrote");
}

#[test]
fn every_writing_command_checks_the_rules_file() {
    let db = db_with_rules();
    let words = ["app.port", "70000", "app.port", "maximum"];
    assert_refused(&db.path, &["set", "app.port", "70000"], &words);
    assert_refused(&db.path, &["set", "app", r#"{"port": 70000}"#], &words);
    let document = db.sibling("doc.json");
    std::fs::write(&document, r#"{"app": {"port": 70000}}"#).unwrap();
    assert_refused(&db.path, &["import", document.to_str().unwrap()], &words);
    // Store a bad value behind the CLI's back, fix it, then revert the fix.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '70000' WHERE key = 'app.port'",
    );
    let fixed = cli_ok(&db.path, &["set", "app.port", "8081"]);
    let bad_seq: i64 = fixed.trim().parse::<i64>().unwrap() - 1;
    assert_refused(&db.path, &["revert", fixed.trim()], &words);
    assert_refused(&db.path, &["revert", "--to", &bad_seq.to_string()], &words);
    // A rule on the key being removed: removal passes (an absent key
    // breaks no rule), and a value the rule accepts is written.
    cli_ok(&db.path, &["set", "app.port", "9000"]);
    cli_ok(&db.path, &["unset", "app.port"]);
    // --schema names another file.
    let strict = db.sibling("strict.json");
    std::fs::write(&strict, r#"{"rules":[{"keys":"app.name","enum":["a"]}]}"#).unwrap();
    assert_refused(
        &db.path,
        &[
            "set",
            "app.name",
            "\"b\"",
            "--schema",
            strict.to_str().unwrap(),
        ],
        &["app.name", "\"b\"", "not one of"],
    );
}

#[test]
fn writing_commands_work_beside_bad_stored_values_the_rules_refuse() {
    let db = db_with_rules();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '70000' WHERE key = 'app.port'",
    );
    // Another key: accepted although app.port is bad in the file.
    cli_ok(&db.path, &["set", "app.name", "\"b\""]);
    assert_eq!(db_value(&db.path, "app.name"), Some(json!("b")));
}

#[test]
fn watch_starts_over_bad_stored_values_and_reports_them() {
    let db = db_with_rules();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '70000' WHERE key = 'app.port'",
    );
    let watch = WatchProcess::spawn(&db.path, &["--json"]);
    let mut lines = Vec::new();
    let rejected = loop {
        let line = watch
            .lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|error| panic!("no rejected line; got {lines:?}: {error}"));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["event"] == "rejected" {
            break value;
        }
        lines.push(value);
    };
    assert_eq!(rejected["key"], "app.port", "{rejected}");
    assert!(
        rejected["error"].as_str().unwrap().contains("8080"),
        "names what it serves: {rejected}"
    );
    // And it keeps watching: a later good write shows up.
    cli_ok(&db.path, &["set", "app.port", "9000"]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let line = watch
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the fix is printed");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["key"] == "app.port" && value["new"] == json!(9000) {
            break;
        }
    }
}

#[test]
fn export_of_a_missing_section_exits_1() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "a.b", "1"]);
    let output = cli(&db.path, &["export", "nothing.here"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(output.stdout.is_empty());
    assert!(stderr_of(&output).contains("nothing.here"));
    // Everything of an empty database is an empty document, not an error.
    let empty = TempDb::new();
    cli_ok(&empty.path, &["init"]);
    assert_eq!(cli_ok(&empty.path, &["export"]).trim(), "{}");
}

#[test]
fn a_committed_write_whose_seq_cannot_be_printed_says_it_was_written() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = cli_command(&db.path)
        .args(["set", "a.b", "1"])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("committed at seq"), "{stderr}");
    assert_eq!(db_value(&db.path, "a.b"), Some(json!(1)), "it was written");
}

#[test]
fn seeding_with_init_or_watch_checks_the_rules_file_too() {
    let db = db_with_rules();
    let defaults = db.sibling("defaults.json");
    std::fs::write(
        &defaults,
        r#"{"app": {"port": 8080, "extra": {"port": 1}}}"#,
    )
    .unwrap();
    // Seeds only missing keys: app.port exists, so this one passes.
    cli_ok(
        &db.path,
        &["init", "--defaults", defaults.to_str().unwrap()],
    );
    assert_eq!(db_value(&db.path, "app.extra.port"), Some(json!(1)));
    // A missing key with a value the rule refuses is not seeded.
    cli_ok(&db.path, &["unset", "app.port"]);
    std::fs::write(&defaults, r#"{"app": {"port": 99999}}"#).unwrap();
    assert_refused(
        &db.path,
        &["init", "--defaults", defaults.to_str().unwrap()],
        &["app.port", "99999", "maximum"],
    );
    let output = cli(
        &db.path,
        &["watch", "--defaults", defaults.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(db_value(&db.path, "app.port"), None);
}
