//! Events grouped by commit: a commit subscriber gets one `Event::Commit`
//! per local commit and per batch of foreign commits, never split and never
//! merged with another source's, under concurrent local and foreign writes
//! (a Python process). And `watch --json --commits` prints one line per
//! commit.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use livesettings::{Event, Options, Source, Store};
use serde_json::{Value, json};

use support::*;

const LOCAL_COMMITS: i64 = 60;
const FOREIGN_COMMITS: i64 = 60;

#[test]
fn commits_are_never_split_nor_merged_across_sources_under_concurrent_writers() {
    let db = TempDb::new();
    let store = Arc::new(
        Options::new()
            .with_channel_capacity(100_000)
            .open(&db.path)
            .unwrap(),
    );
    let commits = store.subscribe_commits("").unwrap();
    let local = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for value in 1..=LOCAL_COMMITS {
                store
                    .merge(&json!({"l": {"a": value, "b": value}}))
                    .expect("a local commit");
            }
        })
    };
    let mut python = PythonWriter::open(&db.path);
    let upsert = "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    for value in 1..=FOREIGN_COMMITS {
        let text = json!(value.to_string());
        python.transaction(&[
            (upsert, vec![json!("f.a"), text.clone()]),
            (upsert, vec![json!("f.b"), text.clone()]),
            (upsert, vec![json!("f.c"), text]),
        ]);
    }
    python.finish();
    local.join().expect("the local writer");
    support::wait_until("every foreign commit is applied", || {
        store.get::<i64>("f.c").ok().flatten() == Some(FOREIGN_COMMITS)
    });

    // Which commit set delivered each (key, value).
    let mut delivered: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut last_seq = 0;
    for (at, event) in commits.try_iter().enumerate() {
        let Event::Commit(set) = event else {
            panic!("a commit subscriber got {event:?}");
        };
        assert!(set.seqs.0 <= set.seqs.1 && set.seqs.0 > last_seq, "{set:?}");
        last_seq = set.seqs.1;
        for change in &set.changes {
            assert_eq!(change.source, set.source, "one source per commit: {set:?}");
            let expected = if change.key.starts_with("l.") {
                Source::Local
            } else {
                Source::External
            };
            assert_eq!(set.source, expected, "{set:?}");
            assert!((set.seqs.0..=set.seqs.1).contains(&change.seq), "{set:?}");
            let value = change.new_value().and_then(Value::as_i64).expect("a value");
            delivered.insert((change.key.clone(), value), at);
        }
        if set.source == Source::Local {
            assert_eq!(
                set.changes.len(),
                2,
                "a local commit is exactly itself: {set:?}"
            );
        }
    }
    for value in 1..=LOCAL_COMMITS {
        let a = delivered[&("l.a".to_owned(), value)];
        assert_eq!(
            delivered[&("l.b".to_owned(), value)],
            a,
            "local commit {value} split"
        );
    }
    for value in 1..=FOREIGN_COMMITS {
        // A batch may hold several foreign commits, but a later commit of
        // the same keys can only replace the value within one batch: each
        // value that was delivered came with its two siblings.
        let Some(&a) = delivered.get(&("f.a".to_owned(), value)) else {
            assert!(
                !delivered.contains_key(&("f.b".to_owned(), value))
                    && !delivered.contains_key(&("f.c".to_owned(), value)),
                "foreign commit {value} split"
            );
            continue;
        };
        for key in ["f.b", "f.c"] {
            assert_eq!(
                delivered.get(&(key.to_owned(), value)),
                Some(&a),
                "foreign commit {value} split"
            );
        }
    }
    assert!(
        delivered.contains_key(&("f.a".to_owned(), FOREIGN_COMMITS)),
        "the last foreign commit was delivered"
    );
}

#[test]
fn a_commit_subscriber_gets_only_its_prefix_and_typed_live_values_move_once_per_commit() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"range": {"min": 0, "max": 1}, "other": 0}))
        .unwrap();
    #[derive(serde::Deserialize)]
    struct Range {
        min: i64,
        max: i64,
    }
    let live = store.live::<Range>("range").unwrap();
    let commits = store.subscribe_commits("range").unwrap();
    sqlite3(
        &db.path,
        "BEGIN; UPDATE settings SET value = '10' WHERE key = 'range.min'; \
         UPDATE settings SET value = '20' WHERE key = 'range.max'; \
         UPDATE settings SET value = '5' WHERE key = 'other'; COMMIT;",
    );
    let Event::Commit(set) = next_event(&commits, "the shell's commit") else {
        panic!("expected a commit");
    };
    let keys: Vec<&str> = set.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["range.min", "range.max"], "in seq order");
    assert_eq!(set.source, Source::External);
    let range = live.load();
    assert_eq!((range.min, range.max), (10, 20), "both, not half");
    store.set("other", &6).unwrap();
    assert!(commits.try_recv().is_err(), "nothing outside the prefix");
}

#[test]
fn watch_json_commits_prints_one_line_per_commit() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let watch = WatchProcess::spawn(&db.path, &["--json", "--commits"]);
    let ready: Value = serde_json::from_str(&watch.lines.recv_timeout(TIMEOUT).unwrap()).unwrap();
    assert_eq!(ready["event"], "ready");
    sqlite3(
        &db.path,
        "BEGIN; INSERT INTO settings (key, value) VALUES ('a.x', '1'), ('a.y', '2'); \
         DELETE FROM settings WHERE key = 'nothing'; COMMIT;",
    );
    let line: Value = serde_json::from_str(&watch.lines.recv_timeout(TIMEOUT).unwrap()).unwrap();
    assert_eq!(line["event"], "commit", "{line}");
    assert_eq!(line["source"], "external", "{line}");
    let seqs = line["seqs"].as_array().expect("seqs");
    assert_eq!(seqs.len(), 2);
    let changes = line["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2, "{line}");
    assert_eq!(changes[0]["key"], "a.x");
    assert_eq!(changes[0]["new"], 1);
    assert_eq!(changes[1]["seq"], seqs[1]);
    cli_ok(&db.path, &["unset", "a.x"]);
    let line: Value = serde_json::from_str(&watch.lines.recv_timeout(TIMEOUT).unwrap()).unwrap();
    assert_eq!(line["changes"][0]["deleted"], true, "{line}");
}
