//! Issue 4, history: the change log read back (order, origins), revert and
//! revert_to as forward changes, pruning under a lagging store, resumable
//! subscriptions across the replay/live seam, and `wait_for_seq` after a
//! write by another process.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use livesettings::{
    Error, Event, Options, ReloadReason, Resumed, Retention, Source, Store, WatchMode,
};
use serde_json::{Value, json};

use support::{
    Rng, TIMEOUT, TempDb, db_contents, db_value, fixture, log_rows, recv_until, sqlite3,
    store_entries,
};

fn keep_last(rows: u64) -> Retention {
    Retention {
        keep_last: Some(rows),
        max_age: None,
    }
}

#[test]
fn history_is_ordered_and_names_who_wrote() {
    let db = TempDb::new();
    let store = Options::new().with_origin("api").open(&db.path).unwrap();
    let other = Options::new()
        .with_origin("worker")
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let events = store.subscribe("a").unwrap();

    let c1 = store.set("a.x", &1).unwrap();
    let c2 = store.set("a.x", &2).unwrap();
    sqlite3(&db.path, "UPDATE settings SET value='3' WHERE key='a.x'");
    let mut seen = Vec::new();
    recv_until(&events, &mut seen, "the shell's change", |event| {
        event
            .as_change()
            .is_some_and(|change| change.new_value() == Some(&json!(3)))
    });
    let c4 = store.set("a.x", &4).unwrap();
    let cy = store.set("a.y", &true).unwrap();
    let c5 = other.set("a.x", &5).unwrap();
    let c6 = store.unset("a.x").unwrap();

    let history = store.history("a.x", 100).unwrap();
    let summary: Vec<(Option<Value>, Option<Value>, &str)> = history
        .iter()
        .map(|entry| {
            (
                entry.old_value().cloned(),
                entry.new_value().cloned(),
                entry.origin.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (None, Some(json!(1)), "api"),
            (Some(json!(1)), Some(json!(2)), "api"),
            (Some(json!(2)), Some(json!(3)), "external"),
            (Some(json!(3)), Some(json!(4)), "api"),
            (Some(json!(4)), Some(json!(5)), "worker"),
            (Some(json!(5)), None, "api"),
        ]
    );
    assert!(
        history.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "ascending seq: {history:#?}"
    );
    assert!(history.iter().all(|entry| entry.key == "a.x"));
    assert_eq!(history[0].seq, c1.seq);
    assert_eq!(history[1].seq, c2.seq);
    assert!(c2.seq < history[2].seq && history[2].seq < c4.seq);
    assert_eq!(history[3].seq, c4.seq);
    assert_eq!(history[4].seq, c5.seq);
    assert_eq!(history[5].seq, c6.seq);
    assert!(
        history
            .iter()
            .all(|entry| entry.at.len() == "2024-01-01T00:00:00.000Z".len()
                && entry.at.ends_with('Z')),
        "{history:#?}"
    );
    assert!(
        history.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "times do not go backwards: {history:#?}"
    );

    // The newest `limit` rows, oldest first.
    assert_eq!(store.history("a.x", 2).unwrap(), history[4..].to_vec());
    // Another store reads the same history.
    assert_eq!(other.history("a.x", 100).unwrap(), history);

    let prefix = store.section_history("a", 100).unwrap();
    assert_eq!(prefix.len(), 7, "{prefix:#?}");
    assert!(prefix.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let y = prefix.iter().find(|entry| entry.key == "a.y").unwrap();
    assert_eq!(
        (y.seq, y.new_value().cloned(), y.origin.as_str()),
        (cy.seq, Some(json!(true)), "api")
    );
    assert!(store.section_history("b", 100).unwrap().is_empty());
    assert_eq!(store.section_history("", 100).unwrap(), prefix);
}

#[test]
fn revert_restores_the_previous_value_as_a_new_change() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let events = store.subscribe("r").unwrap();
    let created = store.set("r.x", &1).unwrap();
    let changed = store.set("r.x", &2).unwrap();
    let unrelated = store.set("r.y", &"y").unwrap();
    let before = store.section_history("r", 100).unwrap();

    let reverted = store.revert(changed.seq).unwrap();
    assert!(reverted.seq > unrelated.seq, "a new forward change");
    assert_eq!(reverted.changes, 1);
    assert_eq!(store.get::<i64>("r.x").unwrap(), Some(1));
    assert_eq!(db_value(&db.path, "r.x"), Some(json!(1)));
    assert_eq!(store.get::<String>("r.y").unwrap().as_deref(), Some("y"));
    let after = store.section_history("r", 100).unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        after[..before.len()],
        before[..],
        "history is never rewritten"
    );
    let last = after.last().unwrap();
    assert_eq!(
        (
            last.seq,
            last.key.as_str(),
            last.old_value().cloned(),
            last.new_value().cloned()
        ),
        (reverted.seq, "r.x", Some(json!(2)), Some(json!(1)))
    );

    // Reverting the creation removes the key.
    let uncreated = store.revert(created.seq).unwrap();
    assert!(!store.contains("r.x"));
    assert_eq!(db_value(&db.path, "r.x"), None);
    let last = store.history("r.x", 1).unwrap().pop().unwrap();
    assert_eq!(
        (
            last.seq,
            last.old_value().cloned(),
            last.new_value().cloned()
        ),
        (uncreated.seq, Some(json!(1)), None)
    );
    // Reverting the removal brings it back.
    store.revert(uncreated.seq).unwrap();
    assert_eq!(store.get::<i64>("r.x").unwrap(), Some(1));

    // A foreign change can be reverted too.
    sqlite3(
        &db.path,
        "UPDATE settings SET value='\"z\"' WHERE key='r.y'",
    );
    let mut seen = Vec::new();
    let external = recv_until(&events, &mut seen, "the shell's change", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "r.y" && change.new_value() == Some(&json!("z")))
    });
    let external_seq = store.history("r.y", 1).unwrap()[0].seq;
    assert_eq!(external.seq(), external_seq);
    store.revert(external_seq).unwrap();
    assert_eq!(store.get::<String>("r.y").unwrap().as_deref(), Some("y"));

    // Subscribers see reverts as ordinary changes.
    recv_until(&events, &mut seen, "the revert of r.y", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "r.y" && change.new_value() == Some(&json!("y")))
    });

    let unknown = store.revert(999_999);
    assert!(
        matches!(unknown, Err(Error::UnknownSeq { seq: 999_999, .. })),
        "{unknown:?}"
    );
}

#[test]
fn revert_to_round_trips_the_fixture_settings() {
    let db = TempDb::new();
    let store = Options::new().with_origin("api").open(&db.path).unwrap();
    let events = store.subscribe("").unwrap();
    let fixture = fixture();
    let loaded = store.merge(&fixture).unwrap();
    let mark = loaded.seq;
    assert_eq!(store.subtree("").unwrap().as_ref(), Some(&fixture));

    assert!(store.keys("").len() > 400);
    let mut rng = Rng::new(0x5EED_0004);
    let mut added = Vec::new();
    let mut last_seq = mark;
    for step in 0..20 {
        let kind = match step {
            0 => 0,
            1 => 1,
            2 => 4,
            _ => rng.below(5),
        };
        // An existing key (the current keys, so removed ones are not picked).
        let keys = store.keys("");
        let key = keys[rng.below(keys.len())].clone();
        last_seq = match kind {
            // Remove an existing key.
            0 => store.unset(&key).unwrap().seq,
            // A new key.
            1 => {
                let new_key = format!("added.step{step}.value");
                added.push(new_key.clone());
                store.set(&new_key, &step).unwrap().seq
            }
            2 => {
                store
                    .set(&key, &(rng.below(1000) as f64 / 7.0))
                    .unwrap()
                    .seq
            }
            3 => store.set(&key, &format!("changed-{step}")).unwrap().seq,
            // A foreign edit with the sqlite3 shell.
            _ => {
                sqlite3(
                    &db.path,
                    &format!("UPDATE settings SET value='[{step}]' WHERE key='{key}'"),
                );
                let mut seen = Vec::new();
                recv_until(&events, &mut seen, "the shell's change", |event| {
                    event.as_change().is_some_and(|change| {
                        change.key == key && change.new_value() == Some(&json!([step]))
                    })
                })
                .seq()
            }
        };
    }
    assert!(last_seq > mark);
    assert!(store.contains(&added[0]));
    assert_ne!(store.subtree("").unwrap().as_ref(), Some(&fixture));
    let rows_before = store.section_history("", usize::MAX).unwrap();

    let reverted = store.revert_to(mark).unwrap();
    assert!(reverted.seq > last_seq, "a new forward change");
    assert!(reverted.changes > 0);
    assert_eq!(store.subtree("").unwrap().as_ref(), Some(&fixture));
    assert!(!store.contains(&added[0]));
    let flat = livesettings::flatten("", &fixture).unwrap();
    assert_eq!(
        db_contents(&db.path),
        flat,
        "the database holds the fixture"
    );
    let rows_after = store.section_history("", usize::MAX).unwrap();
    assert_eq!(rows_after.len(), rows_before.len() + reverted.changes);
    assert_eq!(rows_after[..rows_before.len()], rows_before[..]);
    assert!(
        rows_after[rows_before.len()..]
            .iter()
            .all(|entry| entry.origin == "api")
    );

    // Already there: nothing to do.
    assert_eq!(store.revert_to(mark).unwrap().changes, 0);
    // A fresh store on the file agrees.
    drop(store);
    let reopened = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert_eq!(reopened.subtree("").unwrap().as_ref(), Some(&fixture));
}

#[test]
fn pruning_under_a_lagging_store_converges() {
    let db = TempDb::new();
    // A never watches: it is certainly behind until its own next write.
    let lagging = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    lagging
        .merge(&json!({"lag": {"keep": 1, "gone": 2, "edit": 3}}))
        .unwrap();
    let a_events = lagging.subscribe("").unwrap();
    // C watches all along.
    let watching = Store::open(&db.path).unwrap();
    let writer = Store::open(&db.path).unwrap();

    for i in 0..50 {
        writer.set(&format!("lag.n{}", i % 10), &i).unwrap();
    }
    writer.unset("lag.gone").unwrap();
    writer.set("lag.edit", &"changed").unwrap();
    // Enough rows that pruning takes several batches.
    let bulk: serde_json::Map<String, Value> =
        (0..1200).map(|i| (format!("k{i}"), json!(i))).collect();
    writer
        .merge(&json!({ "bulk": Value::Object(bulk) }))
        .unwrap();
    let last = writer.set("lag.final", &true).unwrap();
    let deleted = writer.prune(keep_last(5)).unwrap();
    assert!(deleted >= 1250, "deleted {deleted}");
    assert_eq!(log_rows(&db.path), 5);
    assert_eq!(
        writer.section_history("", 100).unwrap().last().unwrap().seq,
        last.seq,
        "pruning keeps the newest rows"
    );

    // A is behind the pruned rows.
    assert_eq!(lagging.get::<i64>("lag.edit").unwrap(), Some(3));
    assert_eq!(lagging.stats().reloads(ReloadReason::LogGap), 0);

    // Its next pass (run by a local write) cannot apply the log: it reloads.
    let own = lagging.set("lag.from_a", &"a").unwrap();
    assert!(own.seq > last.seq);
    assert!(
        lagging.stats().reloads(ReloadReason::LogGap) >= 1,
        "{:?}",
        lagging.stats()
    );
    assert_eq!(
        lagging.get::<String>("lag.edit").unwrap().as_deref(),
        Some("changed")
    );
    assert!(!lagging.contains("lag.gone"));
    assert_eq!(lagging.snapshot().seq(), own.seq);
    let mut seen = Vec::new();
    recv_until(&a_events, &mut seen, "A's reload event", |event| {
        matches!(
            event,
            Event::Reloaded {
                reason: ReloadReason::LogGap,
                ..
            }
        )
    });

    writer.wait_for_seq(own.seq, TIMEOUT).unwrap();
    watching.wait_for_seq(own.seq, TIMEOUT).unwrap();
    let truth = db_contents(&db.path);
    assert_eq!(truth.len(), 1200 + 10 + 4);
    assert_eq!(store_entries(&lagging, ""), truth);
    assert_eq!(store_entries(&writer, ""), truth);
    assert_eq!(store_entries(&watching, ""), truth);
}

#[test]
fn retention_options_and_age_limits() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    for i in 0..20 {
        store.set("t.x", &i).unwrap();
    }
    // Nothing is an hour old yet.
    let by_age = Retention {
        keep_last: None,
        max_age: Some(Duration::from_secs(3600)),
    };
    assert_eq!(store.prune(by_age).unwrap(), 0);
    assert_eq!(store.prune(Retention::default()).unwrap(), 0);
    assert_eq!(log_rows(&db.path), 20);
    drop(store);

    let store = Options::new()
        .with_retention(keep_last(3))
        .open(&db.path)
        .unwrap();
    assert_eq!(log_rows(&db.path), 3, "opening with retention prunes");
    assert_eq!(store.get::<i64>("t.x").unwrap(), Some(19));
    let history = store.history("t.x", 100).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.new_value().cloned())
            .collect::<Vec<_>>(),
        vec![Some(json!(17)), Some(json!(18)), Some(json!(19))]
    );
}

#[test]
fn subscribe_from_has_no_gap_and_no_duplicate_at_the_seam() {
    const MIN_WRITES: usize = 200;
    const MIN_LIVE: usize = 20;
    let db = TempDb::new();
    let store = Arc::new(Store::open(&db.path).unwrap());
    store.set("w.start", &0).unwrap();

    let subscribed = Arc::new(AtomicBool::new(false));
    let (seqs_tx, seqs_rx) = crossbeam_channel::unbounded::<i64>();
    let writer = {
        let (store, subscribed) = (Arc::clone(&store), Arc::clone(&subscribed));
        std::thread::spawn(move || {
            // (seq, value) of every write under `w`, and how many certainly
            // happened after subscribe_after returned.
            let mut written = Vec::new();
            let mut live = 0;
            let mut i: i64 = 0;
            while written.len() < MIN_WRITES || live < MIN_LIVE {
                let after_subscribe = subscribed.load(Ordering::SeqCst);
                let commit = store.set(&format!("w.k{}", i % 7), &i).unwrap();
                assert_eq!(commit.changes, 1);
                written.push((commit.seq, i));
                seqs_tx.send(commit.seq).unwrap();
                if after_subscribe {
                    live += 1;
                }
                if i % 5 == 0 {
                    // Outside the prefix: never delivered.
                    store.set("other.n", &i).unwrap();
                }
                i += 1;
            }
            written
        })
    };

    let early: Vec<i64> = (0..50)
        .map(|_| seqs_rx.recv_timeout(TIMEOUT).expect("the writer runs"))
        .collect();
    let s0 = early[10];
    let resumed = store.subscribe_after("w", s0).unwrap();
    subscribed.store(true, Ordering::SeqCst);
    let Resumed::Replayed(events) = resumed else {
        panic!("nothing was pruned: {resumed:?}");
    };
    let written = writer.join().expect("the writer thread");
    let last = written.last().unwrap().0;

    let mut received = Vec::new();
    while received.last().map(Event::seq) != Some(last) {
        match events.recv_timeout(TIMEOUT) {
            Ok(event) => received.push(event),
            Err(error) => panic!(
                "{error} after {} events; waiting for seq {last}",
                received.len()
            ),
        }
    }
    let expected: Vec<(i64, Value)> = written
        .iter()
        .filter(|(seq, _)| *seq > s0)
        .map(|(seq, value)| (*seq, json!(value)))
        .collect();
    let got: Vec<(i64, Value)> = received
        .iter()
        .map(|event| match event {
            Event::Change(change) => (
                change.seq,
                change.new_value().cloned().unwrap_or(Value::Null),
            ),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "every seq exactly once");
    assert_eq!(got, expected, "in order, with the written values");
    assert!(events.is_empty(), "nothing after the last write");
    assert!(
        received
            .iter()
            .all(|event| event.as_change().is_some_and(|c| c.key.starts_with("w."))),
        "only keys under the prefix"
    );
    let replayed = expected.iter().filter(|(seq, _)| *seq <= early[49]).count();
    assert!(replayed >= 39, "some events came from the log: {replayed}");
}

#[test]
fn subscribe_from_replays_values_and_sources_from_the_log() {
    // (Whether live events of own writes say Local is checked by
    // own_writes_are_local_while_the_watcher_runs.)
    let db = TempDb::new();
    let store = Options::new().with_origin("app").open(&db.path).unwrap();
    let first = store.set("s.a", &1).unwrap();
    store.set("s.a", &2).unwrap();
    store.set("t.other", &0).unwrap();
    let live = store.subscribe("s").unwrap();
    sqlite3(&db.path, "UPDATE settings SET value='3' WHERE key='s.a'");
    let mut seen = Vec::new();
    let shell = recv_until(&live, &mut seen, "the shell's change", |event| {
        event
            .as_change()
            .is_some_and(|c| c.new_value() == Some(&json!(3)))
    });

    let Resumed::Replayed(events) = store.subscribe_after("s", first.seq).unwrap() else {
        panic!("nothing was pruned");
    };
    let got: Vec<(i64, Option<Value>, Option<Value>, Source)> = events
        .try_iter()
        .map(|event| {
            let change = event.as_change().expect("a change").clone();
            (
                change.seq,
                change.old_value().cloned(),
                change.new_value().cloned(),
                change.source,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (first.seq + 1, Some(json!(1)), Some(json!(2)), Source::Local),
            (
                shell.seq(),
                Some(json!(2)),
                Some(json!(3)),
                Source::External
            ),
        ]
    );
    // Live events follow the replay.
    let own = store.set("s.a", &4).unwrap();
    let next = events.recv_timeout(TIMEOUT).expect("the live event");
    assert_eq!(next.seq(), own.seq);
    assert_eq!(
        next.as_change().unwrap().new_value().cloned(),
        Some(json!(4))
    );
    // From the current position: nothing to replay.
    let Resumed::Replayed(empty) = store.subscribe_after("s", own.seq).unwrap() else {
        panic!("nothing was pruned");
    };
    assert!(empty.is_empty());
}

#[test]
fn own_writes_are_local_while_the_watcher_runs() {
    // The same workload as the seam test, checking only the source: every
    // event of this store's own writes says Source::Local, even when the
    // watcher thread (woken by the -wal write) gets to the commit first.
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let events = store.subscribe("w").unwrap();
    let mut last = 0;
    for i in 0..200 {
        last = store.set(&format!("w.k{}", i % 7), &i).unwrap().seq;
    }
    let mut received = Vec::new();
    while received.last().map(Event::seq) != Some(last) {
        received.push(events.recv_timeout(TIMEOUT).expect("an event"));
    }
    let external: Vec<(i64, String)> = received
        .iter()
        .filter_map(Event::as_change)
        .filter(|change| change.source != Source::Local)
        .map(|change| (change.seq, change.key.clone()))
        .collect();
    assert!(
        external.is_empty(),
        "{} of {} own writes were published as Source::External: {external:?}; stats {:?}",
        external.len(),
        received.len(),
        store.stats()
    );
    assert_eq!(store.stats().external_changes, 0, "{:?}", store.stats());
}

#[test]
fn replayed_events_match_the_live_ones() {
    // Another store with the same (default) origin name writes: live, this
    // store reports its changes as external; a replay of the same seqs must
    // say the same, or a client resuming from a seq sees different events
    // than one that was connected.
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let other = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let start = store.snapshot().seq();
    let live = store.subscribe("m").unwrap();
    let mine = store.set("m.mine", &1).unwrap();
    let theirs = other.set("m.theirs", &2).unwrap();
    let shell = {
        sqlite3(
            &db.path,
            "INSERT INTO settings (key, value) VALUES ('m.shell', '3')",
        );
        store.history("m.shell", 1).unwrap()[0].seq
    };
    let mut seen_live = Vec::new();
    while seen_live.last().map(Event::seq) != Some(shell) {
        let event = live.recv_timeout(TIMEOUT).expect("a live event");
        seen_live.push(event);
    }
    let Resumed::Replayed(replay) = store.subscribe_after("m", start).unwrap() else {
        panic!("nothing was pruned");
    };
    let replayed: Vec<Event> = replay.try_iter().collect();
    let sources = |events: &[Event]| -> Vec<(i64, Source)> {
        events
            .iter()
            .filter_map(Event::as_change)
            .map(|change| (change.seq, change.source))
            .collect()
    };
    // (The live source of `mine` is left to
    // own_writes_are_local_while_the_watcher_runs.)
    let live_sources = sources(&seen_live);
    assert!(
        live_sources.contains(&(theirs.seq, Source::External))
            && live_sources.contains(&(shell, Source::External)),
        "live: {live_sources:?}"
    );
    assert_eq!(
        sources(&replayed),
        vec![
            (mine.seq, Source::Local),
            (theirs.seq, Source::External),
            (shell, Source::External),
        ],
        "replay must label the other store's write as live did: {live_sources:?}"
    );
}

#[test]
fn a_pruned_start_reports_compacted_and_offers_a_snapshot() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let first = store.set("c.a", &0).unwrap();
    for i in 1..30 {
        store.set(&format!("c.k{}", i % 4), &i).unwrap();
    }
    store.set("other.x", &1).unwrap();
    store.prune(keep_last(5)).unwrap();
    let kept = store.section_history("", 100).unwrap();
    assert_eq!(kept.len(), 5);
    let oldest_kept = kept[0].seq;

    let Resumed::Compacted {
        oldest,
        snapshot,
        events,
    } = store.subscribe_after("c", first.seq).unwrap()
    else {
        panic!("the start was pruned");
    };
    assert_eq!(oldest, oldest_kept);
    assert_eq!(snapshot.seq(), store.snapshot().seq());

    // Changes after the snapshot arrive as live events.
    let mut later = vec![
        store.set("c.k1", &100).unwrap(),
        store.unset("c.a").unwrap(),
        store.set("c.fresh", &"new").unwrap(),
    ];
    later.push(
        store
            .merge(&json!({"c": {"k2": [1, 2]}, "other": {"y": 2}}))
            .unwrap(),
    );
    later.push(store.set("c.k3", &false).unwrap());
    let last = later.last().unwrap().seq;

    let mut state: BTreeMap<String, Value> = snapshot
        .entries("c")
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect();
    let mut seen = 0;
    while seen != last {
        let event = events.recv_timeout(TIMEOUT).expect("a live event");
        seen = event.seq();
        let Event::Change(change) = event else {
            panic!("unexpected {event:?}");
        };
        match change.new_value().cloned() {
            Some(value) => state.insert(change.key, value),
            None => state.remove(&change.key),
        };
    }
    assert_eq!(
        state,
        store_entries(&store, "c"),
        "snapshot + events = final state"
    );
    assert!(!state.contains_key("c.a"));

    // The boundary: resuming right before the oldest kept row replays it.
    assert!(matches!(
        store.subscribe_after("c", oldest - 2).unwrap(),
        Resumed::Compacted { .. }
    ));
    let Resumed::Replayed(replay) = store.subscribe_after("", oldest - 1).unwrap() else {
        panic!("seq {} is still in the log", oldest);
    };
    let replayed: Vec<i64> = replay.try_iter().map(|event| event.seq()).collect();
    let logged: Vec<i64> = store
        .section_history("", 100)
        .unwrap()
        .iter()
        .map(|entry| entry.seq)
        .collect();
    assert_eq!(replayed, logged);
    assert_eq!(replayed[0], oldest);

    // History before the oldest row is gone for revert too.
    assert!(matches!(
        store.revert(first.seq),
        Err(Error::UnknownSeq { .. })
    ));
    assert!(matches!(
        store.revert_to(first.seq),
        Err(Error::UnknownSeq { .. })
    ));
}

#[test]
fn wait_for_seq_sees_a_write_by_another_process() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_livesettings"))
        .arg("--db")
        .arg(&db.path)
        .args(["set", "k", "5"])
        .output()
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "livesettings set failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seq: i64 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|error| panic!("the CLI prints the seq, not {stdout:?}: {error}"));
    assert!(seq > 0);

    store.wait_for_seq(seq, Duration::from_secs(10)).unwrap();
    assert_eq!(store.get::<i64>("k").unwrap(), Some(5));
    assert!(store.snapshot().seq() >= seq);

    // Already applied: returns at once.
    store.wait_for_seq(seq, Duration::ZERO).unwrap();
    // Never written: times out.
    let never = store.wait_for_seq(seq + 1000, Duration::from_millis(200));
    assert!(matches!(never, Err(Error::Timeout { .. })), "{never:?}");
    assert_eq!(store.get::<i64>("k").unwrap(), Some(5));
}
