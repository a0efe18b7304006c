//! Integration tests for the in-process half of livesettings: writes through
//! the store's own writer connection (typed calls and raw SQL through
//! `Store::write`), the snapshot they leave, and the events they publish.
//!
//! Every write publishes its events before it returns, so once a write call
//! has returned its events are already in the channel: `try_recv` after a
//! write is a reliable "nothing else arrived". Expected events are still
//! awaited with a generous `recv_timeout`, never with a sleep.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use livesettings::{Change, Error, Event, Options, Source, Store, WatchMode};
use serde::Deserialize;
use serde_json::{Value, json};

use support::{TIMEOUT, TempDb, connect, drain, fixture, next_change};

/// A fresh database in its own temporary folder (keep the folder alive).
fn temp_store() -> (TempDb, Store) {
    let db = TempDb::new();
    let store = Store::open(&db.path).expect("open store");
    (db, store)
}

/// Exactly `n` changes, then nothing more queued.
fn changes(events: &Receiver<Event>, n: usize) -> Vec<Change> {
    let received: Vec<Change> = (1..=n)
        .map(|i| next_change(events, &format!("change {i} of {n}")))
        .collect();
    assert_no_more(events);
    received
}

fn assert_no_more(events: &Receiver<Event>) {
    let extra = drain(events);
    assert!(extra.is_empty(), "unexpected extra events: {extra:?}");
}

/// Changes indexed by key, failing if a key appears twice.
fn by_key(changes: &[Change]) -> BTreeMap<&str, &Change> {
    let mut map = BTreeMap::new();
    for change in changes {
        assert!(
            map.insert(change.key.as_str(), change).is_none(),
            "key {} reported twice in {changes:?}",
            change.key
        );
    }
    map
}

fn assert_seqs_increase(changes: &[Change]) {
    for pair in changes.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "seqs must strictly increase: {changes:?}"
        );
    }
}

/// Reads the database file directly, bypassing the store.
fn db_rows(path: &Path, sql: &str) -> Vec<(String, Option<String>)> {
    let conn = connect(path);
    let mut statement = conn.prepare(sql).expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn settings_in_db(path: &Path) -> Vec<(String, Option<String>)> {
    db_rows(path, "SELECT key, value FROM settings ORDER BY key")
}

fn log_in_db(path: &Path) -> Vec<(String, Option<String>)> {
    db_rows(path, "SELECT key, new FROM settings_log ORDER BY seq")
}

// 1. Read-your-writes from another thread.
#[test]
fn a_write_is_visible_to_another_thread_as_soon_as_it_returns() {
    let (_db, store) = temp_store();
    let store = Arc::new(store);
    let (written, to_check) = crossbeam_channel::bounded::<i64>(0);
    let (checked, to_continue) = crossbeam_channel::bounded::<()>(0);
    const ROUNDS: i64 = 200;

    let writer = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for round in 0..ROUNDS {
                store.set("rw.value", &round).expect("set");
                store
                    .set(&format!("rw.keys.k{round}"), &round)
                    .expect("set");
                written.send(round).expect("reader gone");
                // Do not write again until the reader has looked.
                to_continue.recv_timeout(TIMEOUT).expect("reader stalled");
            }
        })
    };
    let reader = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for _ in 0..ROUNDS {
                let round = to_check.recv_timeout(TIMEOUT).expect("writer stalled");
                assert_eq!(store.get::<i64>("rw.value").unwrap(), Some(round));
                assert_eq!(
                    store.get_json(&format!("rw.keys.k{round}")),
                    Some(json!(round))
                );
                assert_eq!(
                    store.snapshot().get::<i64>("rw.value").unwrap(),
                    Some(round)
                );
                checked.send(()).expect("writer gone");
            }
        })
    };
    writer.join().expect("writer thread panicked");
    reader.join().expect("reader thread panicked");
    assert_eq!(store.keys("rw.keys").len(), ROUNDS as usize);
}

// 2. A rolled-back transaction leaves nothing: no key, no event, no commit.
#[test]
fn a_rolled_back_write_leaves_nothing() {
    let (db, store) = temp_store();
    let path = &db.path;
    store.set("rb.existing", &1).unwrap();
    let events = store.subscribe("").unwrap();
    let commits_before = store.stats().local_commits;
    let seq_before = store.snapshot().seq();

    let result: livesettings::Result<()> = store.write(|tx| {
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ('rb.ghost', '1')",
            [],
        )?;
        tx.execute(
            "UPDATE settings SET value = '2' WHERE key = 'rb.existing'",
            [],
        )?;
        Err(Error::Rejected {
            key: "rb.ghost".to_owned(),
            reason: "the test refuses it".to_owned(),
        })
    });
    assert!(
        matches!(result, Err(Error::Rejected { .. })),
        "the closure's error comes back: {result:?}"
    );

    assert!(!store.contains("rb.ghost"));
    assert_eq!(store.get::<i64>("rb.existing").unwrap(), Some(1));
    assert_eq!(store.snapshot().seq(), seq_before);
    assert_eq!(store.stats().local_commits, commits_before);
    assert_no_more(&events);
    assert_eq!(
        settings_in_db(path),
        [("rb.existing".to_owned(), Some("1".to_owned()))]
    );
    assert!(
        !log_in_db(path).iter().any(|(key, _)| key == "rb.ghost"),
        "no change-log row for the rolled-back key"
    );

    // A later successful write delivers its own event, and only that one.
    let commit = store.set("rb.real", &2).unwrap();
    let received = changes(&events, 1);
    assert_eq!(received[0].key, "rb.real");
    assert_eq!(received[0].old_value(), None);
    assert_eq!(received[0].new_value(), Some(&json!(2)));
    assert_eq!(received[0].seq, commit.seq);
    assert_eq!(store.stats().local_commits, commits_before + 1);
    assert!(!store.contains("rb.ghost"));
}

// 3. Raw SQL through `write` is applied granularly.
#[test]
fn raw_sql_through_write_is_applied_granularly() {
    let (_db, store) = temp_store();
    store
        .merge(&json!({"raw": {"a": 1, "b": 2, "c": 3}, "other": {"x": true}}))
        .unwrap();
    let events = store.subscribe("raw").unwrap();
    let commits_before = store.stats().local_commits;

    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('raw.d', '4'), ('raw.e', '\"five\"')",
                [],
            )?;
            let updated = tx.execute(
                "UPDATE settings SET value = CAST(value * 10 AS TEXT) WHERE key IN ('raw.a', 'raw.b')",
                [],
            )?;
            assert_eq!(updated, 2);
            tx.execute("DELETE FROM settings WHERE key = 'raw.c'", [])?;
            Ok(())
        })
        .unwrap();

    let received = changes(&events, 5);
    assert_seqs_increase(&received);
    let keyed = by_key(&received);
    let expect = |key: &str, old: Option<Value>, new: Option<Value>| {
        let change = keyed
            .get(key)
            .unwrap_or_else(|| panic!("no event for {key}"));
        assert_eq!(
            (&change.old_value().cloned(), &change.new_value().cloned()),
            (&old, &new),
            "{key}"
        );
    };
    expect("raw.a", Some(json!(1)), Some(json!(10)));
    expect("raw.b", Some(json!(2)), Some(json!(20)));
    expect("raw.c", Some(json!(3)), None);
    expect("raw.d", None, Some(json!(4)));
    expect("raw.e", None, Some(json!("five")));

    assert_eq!(
        store.subtree("raw").unwrap(),
        Some(json!({"a": 10, "b": 20, "d": 4, "e": "five"}))
    );
    assert_eq!(store.get_json("other.x"), Some(json!(true)));
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.local_commits, commits_before + 1);
    assert_eq!(stats.applied_seq, store.snapshot().seq());
}

// 4a. INSERT OR REPLACE: update_hook is silent for the replaced row.
#[test]
fn insert_or_replace_reports_the_replaced_value_as_old() {
    let (_db, store) = temp_store();
    store.set("rep.k", &1).unwrap();
    store.set("rep.other", &"x").unwrap();
    let events = store.subscribe("rep").unwrap();

    store
        .write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('rep.k', '2'), ('rep.new', '3')",
                [],
            )?;
            Ok(())
        })
        .unwrap();

    let received = changes(&events, 2);
    let keyed = by_key(&received);
    assert_eq!(keyed["rep.k"].old_value().cloned(), Some(json!(1)));
    assert_eq!(keyed["rep.k"].new_value().cloned(), Some(json!(2)));
    assert_eq!(keyed["rep.new"].old_value().cloned(), None);
    assert_eq!(keyed["rep.new"].new_value().cloned(), Some(json!(3)));
    assert_eq!(store.get::<i64>("rep.k").unwrap(), Some(2));
    assert_eq!(
        store.get::<String>("rep.other").unwrap().as_deref(),
        Some("x")
    );
    assert_eq!(store.stats().full_reloads, 0);
}

// 4b. Rows of a savepoint rolled back inside a committed transaction were
// reported by update_hook but never committed.
#[test]
fn a_rolled_back_savepoint_leaves_no_phantom() {
    let (db, store) = temp_store();
    let path = &db.path;
    store.set("sp.kept", &1).unwrap();
    let events = store.subscribe("").unwrap();

    // The phantom first, then a real row (which reuses the phantom's seq).
    store
        .write(|tx| {
            tx.execute_batch(
                "SAVEPOINT s;
                 INSERT INTO settings (key, value) VALUES ('sp.phantom', '1');
                 UPDATE settings SET value = '99' WHERE key = 'sp.kept';
                 ROLLBACK TO s;
                 RELEASE s;
                 INSERT INTO settings (key, value) VALUES ('sp.real', '2');",
            )?;
            Ok(())
        })
        .unwrap();
    let received = changes(&events, 1);
    assert_eq!(received[0].key, "sp.real");
    assert_eq!(received[0].new_value(), Some(&json!(2)));

    // A real row, then the phantom, then another real row.
    store
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO settings (key, value) VALUES ('sp.first', '3');
                 SAVEPOINT s;
                 INSERT INTO settings (key, value) VALUES ('sp.phantom2', '4');
                 DELETE FROM settings WHERE key = 'sp.kept';
                 ROLLBACK TO s;
                 RELEASE s;
                 INSERT INTO settings (key, value) VALUES ('sp.last', '5');",
            )?;
            Ok(())
        })
        .unwrap();
    let received = changes(&events, 2);
    assert_seqs_increase(&received);
    let keys: Vec<&str> = received.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["sp.first", "sp.last"]);

    // Only a phantom: the commit changes nothing.
    let seq_before = store.snapshot().seq();
    store
        .write(|tx| {
            tx.execute_batch(
                "SAVEPOINT s;
                 INSERT INTO settings (key, value) VALUES ('sp.phantom3', '6');
                 ROLLBACK TO s;
                 RELEASE s;",
            )?;
            Ok(())
        })
        .unwrap();
    assert_no_more(&events);
    assert_eq!(store.snapshot().seq(), seq_before);

    assert_eq!(
        store.subtree("sp").unwrap(),
        Some(json!({"kept": 1, "real": 2, "first": 3, "last": 5}))
    );
    for phantom in ["sp.phantom", "sp.phantom2", "sp.phantom3"] {
        assert!(!store.contains(phantom), "{phantom} in the snapshot");
    }
    let stored: Vec<String> = settings_in_db(path).into_iter().map(|(k, _)| k).collect();
    assert_eq!(stored, ["sp.first", "sp.kept", "sp.last", "sp.real"]);
    assert_eq!(store.stats().full_reloads, 0);

    // The next ordinary write is still picked up.
    store.set("sp.after", &7).unwrap();
    assert_eq!(changes(&events, 1)[0].key, "sp.after");
}

// 5. `DELETE FROM settings` with no WHERE clause is seen key by key.
#[test]
fn a_bulk_delete_is_seen_key_by_key() {
    let (_db, store) = temp_store();
    let tree = json!({"bulk": {"a": 1, "b": [1, 2], "c": {"d": "x", "e": null}}, "z": false});
    store.merge(&tree).unwrap();
    let before = store.snapshot();
    let events = store.subscribe("").unwrap();

    store
        .write(|tx| {
            let deleted = tx.execute("DELETE FROM settings", [])?;
            assert_eq!(deleted, 5);
            Ok(())
        })
        .unwrap();

    let received = changes(&events, 5);
    assert_seqs_increase(&received);
    let keyed = by_key(&received);
    let expected: Vec<&str> = before.keys("").collect();
    assert_eq!(keyed.keys().copied().collect::<Vec<_>>(), expected);
    for (key, change) in keyed {
        assert_eq!(change.new_value().cloned(), None, "{key}");
        assert_eq!(change.old_value(), before.get_json(key), "{key}");
    }
    assert!(store.snapshot().is_empty());
    assert_eq!(store.stats().full_reloads, 0);
}

// 6. An UPDATE of the key column is a removal and an insertion.
#[test]
fn renaming_a_key_is_a_removal_and_an_insertion() {
    let (_db, store) = temp_store();
    store.set("a.old", &"value").unwrap();
    let events = store.subscribe("a").unwrap();

    store
        .write(|tx| {
            tx.execute("UPDATE settings SET key = 'a.new' WHERE key = 'a.old'", [])?;
            Ok(())
        })
        .unwrap();

    let received = changes(&events, 2);
    assert_seqs_increase(&received);
    let keyed = by_key(&received);
    assert_eq!(keyed["a.old"].old_value().cloned(), Some(json!("value")));
    assert_eq!(keyed["a.old"].new_value().cloned(), None);
    assert_eq!(keyed["a.new"].old_value().cloned(), None);
    assert_eq!(keyed["a.new"].new_value().cloned(), Some(json!("value")));
    assert!(!store.contains("a.old"));
    assert_eq!(store.get_json("a.new"), Some(json!("value")));
    assert_eq!(store.stats().full_reloads, 0);
}

// 7. Invalid JSON, invalid keys, oversized values and conflicting trees are
// refused with a clear error, and nothing is written.
#[test]
fn invalid_input_is_refused_and_nothing_is_written() {
    let (db, store) = temp_store();
    let path = &db.path;
    store.set("v.kept", &1).unwrap();
    let events = store.subscribe("").unwrap();
    let db_before = settings_in_db(path);
    let log_before = log_in_db(path);
    let seq_before = store.snapshot().seq();
    let commits_before = store.stats().local_commits;

    // Invalid JSON through raw SQL: the CHECK constraint refuses it and the
    // valid row written before it in the same closure is rolled back too.
    let error = store
        .write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('v.good', '2')",
                [],
            )?;
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('v.bad', '{not json')",
                [],
            )?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        error.to_string().contains("CHECK constraint failed"),
        "unclear error: {error}"
    );
    // A BLOB holding valid JSON is refused as well (an integer would be
    // converted to text by the column's affinity, so it is fine).
    let error = store
        .write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('v.blob', X'31')",
                [],
            )?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        error.to_string().contains("CHECK constraint failed"),
        "{error}"
    );
    // An invalid key through raw SQL.
    let error = store
        .write(|tx| {
            tx.execute("INSERT INTO settings (key, value) VALUES ('a..b', '1')", [])?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        error.to_string().contains("CHECK constraint failed"),
        "{error}"
    );

    // An invalid key through the typed API.
    let error = store.set("a..b", &1).unwrap_err();
    assert!(matches!(error, Error::InvalidKey { .. }), "{error:?}");
    assert!(error.to_string().contains("a..b"), "{error}");
    for bad in ["", ".a", "a.", "a b", "a/b", "é"] {
        assert!(
            matches!(store.set(bad, &1), Err(Error::InvalidKey { .. })),
            "{bad:?} accepted"
        );
    }
    let long_key = "k".repeat(513);
    assert!(matches!(
        store.set(&long_key, &1),
        Err(Error::InvalidKey { .. })
    ));

    // A value over 1 MiB.
    let huge = "x".repeat(livesettings::MAX_VALUE_BYTES + 1);
    let error = store.set("v.huge", &huge).unwrap_err();
    assert!(matches!(error, Error::InvalidValue { .. }), "{error:?}");
    assert!(error.to_string().contains("v.huge"), "{error}");

    // A tree whose key is both a value and a section.
    let error = store
        .merge(&json!({"ok": 1, "a": 1, "a.b": 2}))
        .unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");
    // A tree with one bad key among good ones.
    let error = store.merge(&json!({"ok": 1, "bad key": 2})).unwrap_err();
    assert!(matches!(error, Error::InvalidKey { .. }), "{error:?}");
    // A key under an existing value.
    let error = store.set("v.kept.below", &1).unwrap_err();
    assert!(matches!(error, Error::Conflict { .. }), "{error:?}");

    // Nothing was written anywhere.
    assert_no_more(&events);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.seq(), seq_before);
    assert_eq!(snapshot.keys("").collect::<Vec<_>>(), ["v.kept"]);
    assert_eq!(store.stats().local_commits, commits_before);
    assert_eq!(settings_in_db(path), db_before);
    assert_eq!(log_in_db(path), log_before);
    let fresh = Options::new()
        .with_watch(WatchMode::Off)
        .open(path)
        .unwrap();
    assert_eq!(fresh.subtree("").unwrap(), Some(json!({"v": {"kept": 1}})));
    fresh.close().unwrap();
}

// 8. Ordering and exactly-once per key per commit, and prefix filtering.
#[test]
fn subscribers_get_each_key_once_per_commit_in_seq_order() {
    let (_db, store) = temp_store();
    let all = store.subscribe("").unwrap();

    // One commit writes `ord.k` twice: one change, from absent to the last value.
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('ord.k', '1')",
                [],
            )?;
            tx.execute("UPDATE settings SET value = '2' WHERE key = 'ord.k'", [])?;
            Ok(())
        })
        .unwrap();
    let received = changes(&all, 1);
    assert_eq!(
        (
            received[0].old_value().cloned(),
            received[0].new_value().cloned()
        ),
        (None, Some(json!(2)))
    );

    // Three writes to one existing key in one commit: one change.
    store
        .write(|tx| {
            for value in ["3", "4", "5"] {
                tx.execute(
                    "UPDATE settings SET value = ?1 WHERE key = 'ord.k'",
                    [value],
                )?;
            }
            Ok(())
        })
        .unwrap();
    let received = changes(&all, 1);
    assert_eq!(received[0].old_value(), Some(&json!(2)));
    assert_eq!(received[0].new_value(), Some(&json!(5)));

    // Written then deleted in one commit: the key never existed for readers.
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('ord.tmp', '1')",
                [],
            )?;
            tx.execute("DELETE FROM settings WHERE key = 'ord.tmp'", [])?;
            Ok(())
        })
        .unwrap();
    assert_no_more(&all);
    assert!(!store.contains("ord.tmp"));

    // N commits: seqs strictly increase across them, each key once per commit.
    let mut everything = Vec::new();
    for round in 0..50 {
        let commit = store
            .merge(&json!({"ord": {"a": round, "b": {"c": round}, "k": round + 100}}))
            .unwrap();
        assert_eq!(commit.changes, 3);
        let received = changes(&all, 3);
        by_key(&received);
        assert_eq!(received.last().unwrap().seq, commit.seq);
        everything.extend(received);
    }
    assert_seqs_increase(&everything);

    // Prefix filtering stops at segment boundaries.
    let section = store.subscribe("pf.a").unwrap();
    let exact = store.subscribe("pf.a.y.z").unwrap();
    let unrelated = store.subscribe("elsewhere").unwrap();
    store
        .merge(&json!({"pf": {"a": {"x": 1, "y": {"z": 2}}, "ab": 3, "a-b": 4, "b": 5}}))
        .unwrap();
    let keys = |changes: Vec<Change>| changes.into_iter().map(|c| c.key).collect::<Vec<_>>();
    assert_eq!(keys(changes(&section, 2)), ["pf.a.x", "pf.a.y.z"]);
    assert_eq!(keys(changes(&exact, 1)), ["pf.a.y.z"]);
    assert_no_more(&unrelated);
    assert_eq!(changes(&all, 5).len(), 5);
}

// 9. A subscriber that never reads does not block the writer; it is told
// what it missed.
#[test]
fn a_stalled_subscriber_does_not_block_the_writer() {
    let db = TempDb::new();
    let store = Options::new()
        .with_channel_capacity(4)
        .open(&db.path)
        .unwrap();
    let store = Arc::new(store);
    let stalled = store.subscribe("").unwrap();

    const WRITES: i64 = 1000;
    let (done, finished) = crossbeam_channel::bounded(1);
    {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let mut last = None;
            for value in 0..WRITES {
                last = Some(store.set("lag.k", &value).expect("set"));
            }
            done.send(last.unwrap()).unwrap();
        });
    }
    // Generous: 1000 small commits take well under a second here.
    let last_commit = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the writer was blocked by a subscriber that never reads");
    assert_eq!(store.get::<i64>("lag.k").unwrap(), Some(WRITES - 1));

    // The four that fit, then the lag notice at once (in its spare slot).
    let held: Vec<Event> = stalled.try_iter().collect();
    assert_eq!(held.len(), 5, "{held:?}");
    let values: Vec<Value> = held[..4]
        .iter()
        .map(|event| {
            event
                .as_change()
                .expect("a change")
                .new_value()
                .cloned()
                .unwrap()
        })
        .collect();
    assert_eq!(values, [json!(0), json!(1), json!(2), json!(3)]);
    assert_eq!(
        held[4],
        Event::Lagged {
            missed: 1,
            seq: held[3].seq() + 1
        },
        "the notice names the first dropped commit"
    );

    let stats = store.stats();
    assert_eq!(stats.events_dropped, (WRITES - 4) as u64, "{stats:?}");
    assert!(last_commit.seq > held[3].seq());

    // Drained: the next write is delivered again.
    let commit = store.set("lag.k", &WRITES).unwrap();
    let change = next_change(&stalled, "the write after the lag");
    assert_eq!(change.new_value(), Some(&json!(WRITES)));
    assert_eq!(change.seq, commit.seq);
    assert_no_more(&stalled);
}

// 10. The VisionFlow fixture round-trips through merge / subtree.
#[test]
fn the_visionflow_fixture_round_trips() {
    let fixture = fixture();
    let (db, store) = temp_store();
    let commit = store.merge(&fixture).unwrap();
    assert_eq!(commit.changes, 435);
    assert_eq!(store.stats().keys, 435);
    assert_eq!(store.subtree("").unwrap(), Some(fixture.clone()));
    assert_eq!(
        store.get_json("visualisation.graphs.logseq.physics.damping"),
        Some(fixture["visualisation"]["graphs"]["logseq"]["physics"]["damping"].clone())
    );
    // Merging it again changes nothing.
    assert_eq!(store.merge(&fixture).unwrap().changes, 0);
    store.close().unwrap();

    // And a fresh store loads the same tree from the file.
    let fresh = Store::open(&db.path).unwrap();
    assert_eq!(fresh.subtree("").unwrap(), Some(fixture));
    fresh.close().unwrap();
}

// 11. A live section is rebuilt for changes under its prefix only.
#[test]
fn a_live_section_follows_its_prefix_only() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Physics {
        damping: f64,
        iterations: u32,
    }

    let (_db, store) = temp_store();
    store
        .merge(&json!({
            "live": {"physics": {"damping": 0.5, "iterations": 10}},
            "other": {"x": 1}
        }))
        .unwrap();
    let live = store.live::<Physics>("live.physics").unwrap();
    assert_eq!(
        *live.get(),
        Physics {
            damping: 0.5,
            iterations: 10
        }
    );

    let before = live.get();
    store.set("other.x", &2).unwrap();
    store.set("live.physics-extra", &true).unwrap();
    store.set("live.physicsx", &true).unwrap();
    assert!(
        Arc::ptr_eq(&before, &live.get()),
        "rebuilt for a change outside its prefix"
    );

    store.set("live.physics.damping", &0.9).unwrap();
    let after = live.get();
    assert!(!Arc::ptr_eq(&before, &after), "not rebuilt for its own key");
    assert_eq!(
        *after,
        Physics {
            damping: 0.9,
            iterations: 10
        }
    );
    assert_eq!(live.load().damping, 0.9);

    // Raw SQL under the prefix rebuilds it too.
    store
        .write(|tx| {
            tx.execute(
                "UPDATE settings SET value = '20' WHERE key = 'live.physics.iterations'",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(live.get().iterations, 20);

    // A change that no longer fits keeps the last good value.
    store.set("live.physics.iterations", &"many").unwrap();
    assert_eq!(live.get().iterations, 20);
    assert!(live.last_error().is_some());
    store.set("live.physics.iterations", &30).unwrap();
    assert_eq!(live.get().iterations, 30);
    assert!(live.last_error().is_none());
}

// 12. seed inserts only missing keys; unset_section removes one
// section only.
#[test]
fn defaults_fill_gaps_and_unset_prefix_removes_one_section() {
    let (_db, store) = temp_store();
    store.merge(&json!({"d": {"kept": "mine"}})).unwrap();
    let events = store.subscribe("").unwrap();

    let commit = store
        .seed(&json!({"d": {"kept": "default", "added": 1, "deep": {"x": [1, 2]}}}))
        .unwrap();
    assert_eq!(commit.changes, 2);
    let received = changes(&events, 2);
    let keyed = by_key(&received);
    assert_eq!(
        keyed.keys().copied().collect::<Vec<_>>(),
        ["d.added", "d.deep.x"]
    );
    assert_eq!(
        store.subtree("d").unwrap(),
        Some(json!({"kept": "mine", "added": 1, "deep": {"x": [1, 2]}}))
    );
    // Defaults again: nothing missing, nothing written.
    assert_eq!(
        store
            .seed(&json!({"d": {"kept": 0, "added": 0}}))
            .unwrap()
            .changes,
        0
    );
    assert_no_more(&events);

    store
        .merge(&json!({"a": {"b": {"c": 1, "d": {"e": 2}}, "bc": 3, "b-x": 4, "b_y": 5}}))
        .unwrap();
    changes(&events, 5);
    let commit = store.unset_section("a.b").unwrap();
    assert_eq!(commit.changes, 2);
    let received = changes(&events, 2);
    let keyed = by_key(&received);
    assert_eq!(
        keyed.keys().copied().collect::<Vec<_>>(),
        ["a.b.c", "a.b.d.e"]
    );
    assert!(received.iter().all(|change| change.new.is_none()));
    assert_eq!(store.keys("a"), ["a.b-x", "a.b_y", "a.bc"]);

    // A prefix that is itself a key goes too; its neighbours stay.
    store.unset_section("a.bc").unwrap();
    assert_eq!(store.keys("a"), ["a.b-x", "a.b_y"]);
    assert_eq!(changes(&events, 1)[0].key, "a.bc");
    assert_eq!(store.stats().full_reloads, 0);
}

// Local writes must be reported as local, even while the watcher checks the
// database all the time: it may notice the writer's commit before the writer
// applies it, and must not then report the rows as a foreign change.
#[test]
fn local_writes_are_reported_as_local_while_the_watcher_polls() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Poll {
            interval: Duration::from_millis(1),
        })
        .with_channel_capacity(4096)
        .open(&db.path)
        .unwrap();
    let events = store.subscribe("").unwrap();
    const WRITES: i64 = 2000;
    for value in 0..WRITES {
        if value % 2 == 0 {
            store.set("src.k", &value).unwrap();
        } else {
            store
                .write(|tx| {
                    tx.execute(
                        "UPDATE settings SET value = ?1 WHERE key = 'src.k'",
                        [value.to_string()],
                    )?;
                    Ok(())
                })
                .unwrap();
        }
    }
    let received = changes(&events, WRITES as usize);
    let external: Vec<&Change> = received
        .iter()
        .filter(|change| change.source != Source::Local)
        .collect();
    let stats = store.stats();
    assert!(
        external.is_empty(),
        "{} of {WRITES} local writes were reported as external; first: {:?}; stats: {stats:?}",
        external.len(),
        external.first(),
    );
    assert_eq!(stats.external_changes, 0, "{stats:?}");
    assert_eq!(stats.external_applies, 0, "{stats:?}");
}

/// `Durability::Full` syncs every commit (`synchronous=FULL` on the writer
/// connection); the default is `NORMAL`.
#[test]
fn durability_sets_how_the_writer_syncs_commits() {
    use livesettings::Durability;
    let synchronous = |store: &livesettings::Store| -> i64 {
        store
            .write(|tx| Ok(tx.query_row("PRAGMA synchronous", [], |row| row.get(0))?))
            .unwrap()
    };
    let db = TempDb::new();
    let normal = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert_eq!(synchronous(&normal), 1, "NORMAL");
    normal.close().unwrap();
    let full = Options::new()
        .with_watch(WatchMode::Off)
        .with_durability(Durability::Full)
        .open(&db.path)
        .unwrap();
    assert_eq!(synchronous(&full), 2, "FULL");
    full.set("a.b", &1).unwrap();
    assert_eq!(full.get::<i64>("a.b").unwrap(), Some(1));
}
