//! Issue 4, validation: registered sections keep invalid values out of the
//! snapshot. In-process writes that would break a section fail with nothing
//! written; foreign writes that break it are refused (last good values stay
//! readable, a rejection is published and pending) until a later foreign
//! write makes the section valid again.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use livesettings::{Error, Event, Options, Store, WatchMode};
use serde::Deserialize;
use serde_json::{Value, json};

use support::{TempDb, db_contents, db_value, log_rows, next_event, recv_until, sqlite3};

#[derive(Debug, Deserialize)]
struct Physics {
    min: f64,
    max: f64,
}

fn min_le_max(physics: &Physics) -> Result<(), String> {
    if physics.min <= physics.max {
        Ok(())
    } else {
        Err(format!(
            "min ({}) must not exceed max ({})",
            physics.min, physics.max
        ))
    }
}

/// A store holding `p = {min: 1.0, max: 5.0}` and `other.x = 1`, with the
/// physics validator registered on `p`.
fn seeded(db: &TempDb, watch: WatchMode) -> Store {
    let store = Options::new()
        .with_watch(watch)
        .open(&db.path)
        .expect("open the store");
    store
        .merge(&json!({"p": {"min": 1.0, "max": 5.0}, "other": {"x": 1}}))
        .expect("seed the section");
    store
        .add_validator::<Physics>("p", min_le_max)
        .expect("the seeded section is valid");
    store
}

fn assert_rejected(result: livesettings::Result<livesettings::Commit>, key: &str, value: &str) {
    let error = result.expect_err("the write must be rejected");
    let message = error.to_string();
    match &error {
        Error::Rejected {
            key: rejected,
            reason,
        } => {
            assert_eq!(
                rejected, key,
                "the error names the offending key: {message}"
            );
            assert!(!reason.is_empty(), "the error gives a reason: {message}");
        }
        other => panic!("expected Error::Rejected for {key}, got {other:?}"),
    }
    assert!(
        message.contains(key),
        "the message names the key {key}: {message}"
    );
    assert!(
        message.contains(value),
        "the message names the value {value}: {message}"
    );
}

#[test]
fn invalid_in_process_writes_are_rejected_with_nothing_written() {
    let db = TempDb::new();
    let store = seeded(&db, WatchMode::default());
    let events = store.subscribe("").unwrap();
    let before = store.snapshot();
    let rows_before = db_contents(&db.path);
    let log_before = log_rows(&db.path);

    // A cross-field rule: min <= max.
    assert_rejected(store.set("p.min", &10.0), "p.min", "10.0");
    // A section write that breaks it, together with an unrelated key: the
    // whole transaction is rolled back.
    assert_rejected(
        store.merge(&json!({"other": {"y": 2}, "p": {"max": 0.5}})),
        "p.max",
        "0.5",
    );
    let both = store.merge(&json!({"p": {"min": 7.0, "max": 6.0}}));
    assert!(
        matches!(both, Err(Error::Rejected { .. })),
        "a merge making the section invalid is rejected: {both:?}"
    );
    // The typed schema: a string where an f64 is expected, a removed field.
    assert_rejected(store.set("p.min", &"high"), "p.min", "high");
    assert_rejected(store.unset("p.max"), "p.max", "removed");
    // Raw SQL through the store is checked too.
    let raw = store.write(|tx| {
        tx.execute("UPDATE settings SET value = '-3.0' WHERE key = 'p.max'", [])?;
        Ok(())
    });
    assert!(
        matches!(raw, Err(Error::Rejected { ref key, .. }) if key == "p.max"),
        "raw SQL breaking the section is rejected: {raw:?}"
    );

    // Nothing reached the snapshot...
    assert_eq!(store.get::<f64>("p.min").unwrap(), Some(1.0));
    assert_eq!(store.get::<f64>("p.max").unwrap(), Some(5.0));
    assert!(!store.contains("other.y"));
    assert_eq!(store.snapshot().seq(), before.seq());
    assert_eq!(store.subtree("").unwrap(), before.subtree("").unwrap());
    // ...nor the database (read with a fresh connection)...
    assert_eq!(db_contents(&db.path), rows_before);
    assert_eq!(log_rows(&db.path), log_before, "no change-log row survives");
    // ...nor any subscriber.
    assert!(
        events.is_empty(),
        "rejected writes publish nothing: {:?}",
        events.try_iter().collect::<Vec<_>>()
    );

    // A valid write still goes through, and is the first thing published.
    let commit = store.set("p.min", &4.5).expect("a valid write");
    assert_eq!(store.get::<f64>("p.min").unwrap(), Some(4.5));
    assert_eq!(db_value(&db.path, "p.min"), Some(json!(4.5)));
    match next_event(&events, "the valid write") {
        Event::Change(change) => {
            assert_eq!(change.key, "p.min");
            assert_eq!(change.seq, commit.seq);
            assert_eq!(change.old_value(), Some(&json!(1.0)));
            assert_eq!(change.new_value(), Some(&json!(4.5)));
        }
        other => panic!("expected the change of p.min, got {other:?}"),
    }
    // Writes outside the section are not checked against it.
    store
        .set("other.x", &"anything")
        .expect("an unrelated write");
    assert!(store.rejected().is_empty());
}

#[test]
fn json_validators_check_enums() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("render.mode", &"fast").unwrap();
    store
        .add_json_validator("render.mode", |value| match value.as_str() {
            Some("fast" | "pretty") => Ok(()),
            _ => Err(format!("{value} is not one of fast, pretty")),
        })
        .unwrap();
    assert_rejected(store.set("render.mode", &"ugly"), "render.mode", "ugly");
    assert_rejected(store.set("render.mode", &3), "render.mode", "3");
    assert_eq!(
        store.get::<String>("render.mode").unwrap().as_deref(),
        Some("fast")
    );
    store.set("render.mode", &"pretty").unwrap();
    assert_eq!(db_value(&db.path, "render.mode"), Some(json!("pretty")));
}

#[test]
fn invalid_foreign_write_is_refused_until_a_fix_arrives() {
    let db = TempDb::new();
    let store = Arc::new(seeded(&db, WatchMode::default()));
    let events = store.subscribe("p").unwrap();
    let seq_before = store.snapshot().seq();

    // Readers never see an invalid section, whatever the timing.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (store, stop, reads) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&reads));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let physics: Physics = store.section("p").expect("the section decodes");
                assert!(
                    physics.min <= physics.max,
                    "a reader saw an invalid section: {physics:?}"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    sqlite3(
        &db.path,
        "UPDATE settings SET value='10.0' WHERE key='p.min'",
    );
    let mut seen = Vec::new();
    let rejection = match recv_until(&events, &mut seen, "the rejection", |event| {
        matches!(event, Event::Rejected(_))
    }) {
        Event::Rejected(rejection) => rejection,
        _ => unreachable!(),
    };
    assert!(
        seen.iter().all(|event| event.as_change().is_none()),
        "no change of the section is published before the rejection: {seen:?}"
    );
    assert!(rejection.seq > seq_before, "{rejection:?}");
    assert!(
        rejection.keys.iter().any(|key| key == "p.min"),
        "the rejection lists p.min: {rejection:?}"
    );
    assert!(!rejection.reason.is_empty());

    // The last good value stays readable; the database holds the bad one.
    assert_eq!(store.get::<f64>("p.min").unwrap(), Some(1.0));
    assert_eq!(store.get::<f64>("p.max").unwrap(), Some(5.0));
    assert_eq!(db_value(&db.path, "p.min"), Some(json!(10.0)));
    assert!(store.stats().rejected_values > 0, "{:?}", store.stats());
    let pending = store.rejected();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].keys.iter().any(|key| key == "p.min"),
        "{pending:?}"
    );

    // A foreign write that makes the section valid again: the section is
    // re-read, so the earlier refused value arrives with it.
    sqlite3(
        &db.path,
        "UPDATE settings SET value='20.0' WHERE key='p.max'",
    );
    let mut changed: Vec<(String, Option<Value>)> = Vec::new();
    let mut seen = Vec::new();
    recv_until(
        &events,
        &mut seen,
        "the changes of p.min and p.max",
        |event| {
            if let Event::Change(change) = event {
                changed.push((change.key.clone(), change.new_value().cloned()));
            }
            changed.contains(&("p.min".to_owned(), Some(json!(10.0))))
                && changed.contains(&("p.max".to_owned(), Some(json!(20.0))))
        },
    );
    assert!(
        seen.iter()
            .all(|event| !matches!(event, Event::Rejected(_))),
        "the fix is not rejected: {seen:?}"
    );
    assert_eq!(store.get::<f64>("p.min").unwrap(), Some(10.0));
    assert_eq!(store.get::<f64>("p.max").unwrap(), Some(20.0));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());

    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw only valid sections");
    assert!(reads.load(Ordering::Relaxed) > 0);
}

#[test]
fn foreign_write_breaking_the_typed_schema_is_refused() {
    let db = TempDb::new();
    let store = seeded(&db, WatchMode::default());
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "UPDATE settings SET value='\"fast\"' WHERE key='p.max'",
    );
    let mut seen = Vec::new();
    recv_until(
        &events,
        &mut seen,
        "the rejection",
        |event| matches!(event, Event::Rejected(rejection) if rejection.keys.iter().any(|k| k == "p.max")),
    );
    assert_eq!(store.get::<f64>("p.max").unwrap(), Some(5.0));
    assert_eq!(store.rejected().len(), 1);

    // Later foreign writes elsewhere still apply while the rejection is
    // pending, and the section keeps its last good values.
    sqlite3(
        &db.path,
        "UPDATE settings SET value='2' WHERE key='other.x'",
    );
    recv_until(&events, &mut seen, "the change of other.x", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "other.x" && change.new_value() == Some(&json!(2)))
    });
    assert_eq!(store.get::<f64>("p.max").unwrap(), Some(5.0));
    assert_eq!(store.rejected().len(), 1, "still pending");

    // A foreign fix clears it.
    sqlite3(
        &db.path,
        "UPDATE settings SET value='8.5' WHERE key='p.max'",
    );
    recv_until(&events, &mut seen, "the change of p.max", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "p.max" && change.new_value() == Some(&json!(8.5)))
    });
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
    assert!(store.stats().rejected_values >= 1);
}

#[test]
fn a_local_write_while_a_rejection_is_pending_is_either_refused_or_visible() {
    // The database holds p.min = 10 (refused; readers see 1). The
    // application then sets p.max = 7: the section it sees ({1, 7}) is
    // valid, the section the database would hold ({10, 7}) is not. Either
    // answer is defensible, but a write that returns Ok must be readable
    // when the call returns (read-your-writes).
    let db = TempDb::new();
    let store = seeded(&db, WatchMode::default());
    let events = store.subscribe("p").unwrap();
    sqlite3(
        &db.path,
        "UPDATE settings SET value='10.0' WHERE key='p.min'",
    );
    let mut seen = Vec::new();
    recv_until(&events, &mut seen, "the rejection", |event| {
        matches!(event, Event::Rejected(_))
    });

    match store.set("p.max", &7.0) {
        Ok(commit) => {
            assert_eq!(
                store.get::<f64>("p.max").unwrap(),
                Some(7.0),
                "set returned Ok (seq {}) but the value is not readable; rejected: {:?}",
                commit.seq,
                store.rejected()
            );
            let physics: Physics = store.section("p").unwrap();
            assert!(physics.min <= physics.max, "{physics:?}");
        }
        Err(Error::Rejected { key, .. }) => {
            assert_eq!(key, "p.max");
            assert_eq!(db_value(&db.path, "p.max"), Some(json!(5.0)));
            assert_eq!(store.get::<f64>("p.max").unwrap(), Some(5.0));
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn registering_a_validator_on_an_invalid_section_succeeds_and_withholds_what_it_refuses() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"p": {"min": 10.0, "max": 5.0}}))
        .unwrap();

    // No logged state of `p` passes (it was created invalid) and there are
    // no defaults: the section is withheld, and the refusal is reported.
    store
        .add_validator::<Physics>("p", min_le_max)
        .expect("registering never fails on stored data");
    assert!(store.keys("p").is_empty(), "{:?}", store.keys("p"));
    let rejected = store.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].reason.contains("min"), "{}", rejected[0].reason);
    assert!(
        rejected[0].reason.contains("withheld"),
        "{}",
        rejected[0].reason
    );
    // The database keeps what was stored.
    assert_eq!(db_value(&db.path, "p.min"), Some(json!(10.0)));

    // A section that does not exist yet does not fit the schema either:
    // registering works, and the first valid write brings it in.
    store.add_validator::<Physics>("q", min_le_max).unwrap();
    assert!(matches!(
        store.set("q.min", &"text"),
        Err(Error::Rejected { .. })
    ));
    store
        .merge(&json!({"q": {"min": 1.0, "max": 2.0}}))
        .unwrap();
    assert_eq!(store.get::<f64>("q.max").unwrap(), Some(2.0));

    // A write that makes `p` valid clears its refusal.
    store.set("p.max", &20.0).unwrap();
    assert_eq!(store.get::<f64>("p.min").unwrap(), Some(10.0));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

#[test]
fn a_rule_keeps_a_refused_key_withheld_while_other_keys_of_its_section_change() {
    let db = TempDb::new();
    let store = Options::new().open(&db.path).expect("open the store");
    store
        .merge(&json!({"app": {"a": 1, "b": 2, "c": 3}}))
        .expect("seed");
    let rules = livesettings::Rules::from_json(r#"{"rules": [{"keys": "app.**", "maximum": 10}]}"#)
        .expect("rules");
    store
        .add_rules(&rules)
        .expect("the stored values meet the rule");
    let events = store.subscribe("app").unwrap();

    sqlite3(&db.path, "UPDATE settings SET value='99' WHERE key='app.a'");
    let mut seen = Vec::new();
    recv_until(
        &events,
        &mut seen,
        "the refusal of app.a",
        |event| matches!(event, Event::Rejected(rejection) if rejection.keys == ["app.a"]),
    );
    assert_eq!(store.get::<i64>("app.a").unwrap(), Some(1));

    // Another key of the section changes: it goes through, the refused key
    // stays withheld and its refusal pending.
    sqlite3(&db.path, "UPDATE settings SET value='4' WHERE key='app.b'");
    let mut seen = Vec::new();
    recv_until(
        &events,
        &mut seen,
        "the change of app.b",
        |event| matches!(event, Event::Change(change) if change.key == "app.b" && change.new_value() == Some(&json!(4))),
    );
    store
        .set("app.c", &7)
        .expect("a valid local write beside the refusal");
    assert_eq!(store.get::<i64>("app.b").unwrap(), Some(4));
    assert_eq!(store.get::<i64>("app.c").unwrap(), Some(7));
    assert_eq!(store.get::<i64>("app.a").unwrap(), Some(1));
    let pending = store.rejected();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].keys, ["app.a"], "{pending:?}");

    // The fix of the refused key arrives as its change and clears the refusal.
    sqlite3(&db.path, "UPDATE settings SET value='5' WHERE key='app.a'");
    let mut seen = Vec::new();
    let fixed = recv_until(
        &events,
        &mut seen,
        "the change of app.a",
        |event| matches!(event, Event::Change(change) if change.key == "app.a"),
    );
    let Event::Change(fixed) = fixed else {
        unreachable!()
    };
    assert_eq!(fixed.old_value(), Some(&json!(1)));
    assert_eq!(fixed.new_value(), Some(&json!(5)));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
    assert_eq!(
        store_entries_of(&store),
        json!({"a": 5, "b": 4, "c": 7}),
        "the snapshot is the database again"
    );
    assert_eq!(
        db_contents(&db.path).get("app.a"),
        Some(&json!(5)),
        "the database holds the fix"
    );
}

fn store_entries_of(store: &Store) -> Value {
    store.subtree("app").unwrap().unwrap_or(Value::Null)
}
