//! Foreign writers in other processes — the `sqlite3` shell, Python's
//! `sqlite3` module, the CLI — while a store is open: every commit reaches
//! the snapshot and the subscribers key by key, from the change log.

mod support;

use std::process::Command;
use std::time::Duration;

use livesettings::{Event, Options, Source, Store, WatchMode};
use serde_json::{Value, json};

use support::*;

/// File events on, and a safety-net poll so slow that a change seen within
/// the test's timeout cannot have come from it.
fn events_only() -> WatchMode {
    WatchMode::Events {
        safety_poll: Duration::from_secs(600),
    }
}

fn open_store(path: &std::path::Path, watch: WatchMode) -> Store {
    Options::new()
        .with_watch(watch)
        .open(path)
        .expect("open the store")
}

/// (a) UPDATE, INSERT and DELETE by the `sqlite3` shell, one process each,
/// arrive as granular changes with the right old and new values.
#[test]
fn sqlite3_shell_update_insert_delete_arrive_granularly() {
    let db = TempDb::new();
    let store = open_store(&db.path, WatchMode::default());
    store.set("physics.damping", &0.6).unwrap();
    store.set("physics.iterations", &100).unwrap();
    store.set("render.title", "graph").unwrap();
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.95' WHERE key = 'physics.damping'",
    );
    let change = next_change(&events, "the shell's UPDATE");
    assert_eq!(change.key, "physics.damping");
    assert_eq!(change.old_value(), Some(&json!(0.6)));
    assert_eq!(change.new_value(), Some(&json!(0.95)));
    assert_eq!(change.source, Source::External);
    assert_eq!(store.get::<f64>("physics.damping").unwrap(), Some(0.95));

    sqlite3(
        &db.path,
        r##"INSERT INTO settings (key, value) VALUES ('render.colour', '"#ff0000"')"##,
    );
    let change = next_change(&events, "the shell's INSERT");
    assert_eq!(change.key, "render.colour");
    assert_eq!(change.old_value(), None);
    assert_eq!(change.new_value(), Some(&json!("#ff0000")));
    assert_eq!(change.source, Source::External);

    sqlite3(
        &db.path,
        "DELETE FROM settings WHERE key = 'physics.iterations'",
    );
    let change = next_change(&events, "the shell's DELETE");
    assert_eq!(change.key, "physics.iterations");
    assert_eq!(change.old_value(), Some(&json!(100)));
    assert_eq!(change.new_value(), None);
    assert_eq!(change.source, Source::External);
    assert!(!store.contains("physics.iterations"));

    // The seq of each change is the log's, so the store is exactly at the
    // log's end.
    let log_max = db_scalar(&db.path, "SELECT max(seq) FROM settings_log").unwrap();
    assert_eq!(change.seq.to_string(), log_max);

    wait_converged(&store, "after the shell's writes");
    assert!(drain(&events).is_empty(), "one event per change");
    wait_stats(&store, "the external changes counted", |stats| {
        stats.external_changes >= 3
    });
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.external_applies, 3, "{stats:?}");
    assert_eq!(stats.external_changes, 3, "{stats:?}");
}

/// (a) The same through a small writer process (Python), one process and
/// one transaction per statement, plus a transaction touching several keys.
#[test]
fn python_writer_update_insert_delete_arrive_granularly() {
    let db = TempDb::new();
    let store = open_store(&db.path, WatchMode::default());
    store.set("a.x", &1).unwrap();
    store.set("a.y", &2).unwrap();
    let events = store.subscribe("a").unwrap();
    let script = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30)
with conn:
    conn.execute(sys.argv[2])
conn.close()
"#;
    let dir = db.dir.path();
    let db_arg = db.path.to_str().unwrap();

    python(
        dir,
        "one.py",
        script,
        &[
            db_arg,
            "UPDATE settings SET value = '[1,2,3]' WHERE key = 'a.x'",
        ],
    );
    let change = next_change(&events, "python's UPDATE");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        (
            "a.x",
            Some(json!(1)),
            Some(json!([1, 2, 3])),
            Source::External
        )
    );

    python(
        dir,
        "one.py",
        script,
        &[
            db_arg,
            "INSERT INTO settings (key, value) VALUES ('a.z', 'true')",
        ],
    );
    let change = next_change(&events, "python's INSERT");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        ("a.z", None, Some(json!(true)), Source::External)
    );

    python(
        dir,
        "one.py",
        script,
        &[db_arg, "DELETE FROM settings WHERE key = 'a.y'"],
    );
    let change = next_change(&events, "python's DELETE");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        ("a.y", Some(json!(2)), None, Source::External)
    );

    // Several keys in one foreign transaction: one event per key, together.
    let mut writer = PythonWriter::open(&db.path);
    writer.transaction(&[
        ("UPDATE settings SET value = '10' WHERE key = 'a.z'", vec![]),
        (
            "INSERT INTO settings (key, value) VALUES ('a.w', '\"w\"')",
            vec![],
        ),
    ]);
    writer.finish();
    let first = next_change(&events, "the first key of a two-key transaction");
    let second = next_change(&events, "the second key of a two-key transaction");
    let mut got: Vec<_> = [first, second]
        .into_iter()
        .map(|change| {
            (
                change.key.clone(),
                change.old_value().cloned(),
                change.new_value().cloned(),
                change.source,
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("a.w".to_owned(), None, Some(json!("w")), Source::External),
            (
                "a.z".to_owned(),
                Some(json!(true)),
                Some(json!(10)),
                Source::External
            ),
        ]
    );

    wait_converged(&store, "after python's writes");
    wait_stats(&store, "the external changes counted", |stats| {
        stats.external_changes >= 5
    });
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.external_changes, 5, "{stats:?}");
}

/// (b) An interactive `sqlite3` session keeps its connection open: after
/// its write to the `-wal` it raises no further file event, and the commit
/// becomes visible only later, through the mmapped `-shm`. With a 600 s
/// safety poll, each change can only arrive through a file event and the
/// re-check backoff.
#[test]
fn open_sqlite3_session_changes_arrive_without_the_safety_poll() {
    let db = TempDb::new();
    let store = open_store(&db.path, events_only());
    store.set("session.value", &0).unwrap();
    let events = store.subscribe("session").unwrap();

    let mut session = Sqlite3Session::open(&db.path);
    for value in 1..=5 {
        session.send(&format!(
            "UPDATE settings SET value = '{value}' WHERE key = 'session.value';"
        ));
        let change = next_change(&events, &format!("the session's UPDATE to {value}"));
        assert_eq!(change.key, "session.value");
        assert_eq!(change.old_value(), Some(&json!(value - 1)));
        assert_eq!(change.new_value(), Some(&json!(value)));
        assert_eq!(change.source, Source::External);
    }
    // An insert and a delete from the same open session.
    session.send("INSERT INTO settings (key, value) VALUES ('session.extra', '\"x\"');");
    let change = next_change(&events, "the session's INSERT");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned()
        ),
        ("session.extra", None, Some(json!("x")))
    );
    session.send("DELETE FROM settings WHERE key = 'session.extra';");
    let change = next_change(&events, "the session's DELETE");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned()
        ),
        ("session.extra", Some(json!("x")), None)
    );
    session.finish();

    wait_converged(&store, "after the sqlite3 session");
    wait_stats(&store, "the external changes counted", |stats| {
        stats.external_changes >= 7
    });
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.external_changes, 7, "{stats:?}");
}

/// (b) A long-lived writer process (Python, `synchronous=FULL`, one
/// connection for its whole life) commits one change at a time; each is
/// reported although the safety-net poll would not fire for 600 s.
#[test]
fn long_lived_python_writer_changes_arrive_without_the_safety_poll() {
    let db = TempDb::new();
    let store = open_store(&db.path, events_only());
    store.set("worker.count", &0).unwrap();
    let events = store.subscribe("worker").unwrap();

    let mut writer = PythonWriter::open(&db.path);
    for value in 1..=10 {
        writer.execute(
            "UPDATE settings SET value = ?1 WHERE key = 'worker.count'",
            vec![json!(value.to_string())],
        );
        let change = next_change(&events, &format!("the writer's commit of {value}"));
        assert_eq!(change.key, "worker.count");
        assert_eq!(change.old_value(), Some(&json!(value - 1)));
        assert_eq!(change.new_value(), Some(&json!(value)));
        assert_eq!(change.source, Source::External);
    }
    writer.execute(
        "INSERT INTO settings (key, value) VALUES ('worker.name', ?1)",
        vec![json!("\"w1\"")],
    );
    let change = next_change(&events, "the writer's INSERT");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned()
        ),
        ("worker.name", None, Some(json!("w1")))
    );
    writer.execute("DELETE FROM settings WHERE key = 'worker.name'", vec![]);
    let change = next_change(&events, "the writer's DELETE");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned()
        ),
        ("worker.name", Some(json!("w1")), None)
    );
    writer.finish();

    wait_converged(&store, "after the long-lived writer");
    wait_stats(&store, "the external changes counted", |stats| {
        stats.external_changes >= 12
    });
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.external_changes, 12, "{stats:?}");
}

/// (c) A burst of 20 foreign commits in quick succession (one `sqlite3`
/// process, 20 transactions) ends with the last value applied: nothing is
/// debounced away.
#[test]
fn burst_of_twenty_shell_commits_ends_at_the_last_value() {
    let db = TempDb::new();
    let store = open_store(&db.path, WatchMode::default());
    store.set("burst.value", &0).unwrap();
    let events = store.subscribe("burst").unwrap();

    let script: String = (1..=20)
        .map(|value| format!("UPDATE settings SET value = '{value}' WHERE key = 'burst.value';\n"))
        .collect();
    sqlite3(&db.path, &script);

    wait_until("the burst's last value", || {
        store.get_json("burst.value") == Some(json!(20))
    });
    // The events, however coalesced, are in order and end at 20.
    let mut last = 0;
    let mut seq = 0;
    while last != 20 {
        let change = next_change(&events, "the burst's changes");
        assert_eq!(change.key, "burst.value");
        assert_eq!(
            change.old_value(),
            Some(&json!(last)),
            "events chain old → new"
        );
        let new = change.new_value().and_then(Value::as_i64).unwrap();
        assert!(new > last, "values only go up: {last} then {new}");
        assert!(change.seq > seq, "seqs increase");
        (last, seq) = (new, change.seq);
    }
    wait_converged(&store, "after the burst");
    let stats = store.stats();
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
}

/// (c) The same burst from a Python process that commits 20 times as fast
/// as it can on one connection, to two keys.
#[test]
fn burst_of_twenty_python_commits_ends_at_the_last_value() {
    let db = TempDb::new();
    let store = open_store(&db.path, events_only());
    store.set("burst.a", &0).unwrap();
    store.set("burst.b", &0).unwrap();
    let script = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for value in range(1, 21):
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE settings SET value = ? WHERE key = 'burst.a'", (str(value),))
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE settings SET value = ? WHERE key = 'burst.b'", (str(value * 10),))
    conn.execute("COMMIT")
conn.close()
"#;
    python(
        db.dir.path(),
        "burst.py",
        script,
        &[db.path.to_str().unwrap()],
    );
    wait_until("the burst's last values", || {
        store.get_json("burst.a") == Some(json!(20))
            && store.get_json("burst.b") == Some(json!(200))
    });
    wait_converged(&store, "after the python burst");
    assert_eq!(store.stats().full_reloads, 0, "{:?}", store.stats());
}

/// (d) The store's own writes cost no granular re-apply and no reload:
/// after 50 local sets and one foreign write, exactly one external apply
/// with one external change has run.
#[test]
fn own_writes_cause_no_reapply_and_no_reload() {
    let db = TempDb::new();
    let store = open_store(&db.path, WatchMode::default());
    let events = store.subscribe("").unwrap();
    for at in 0..50 {
        store.set(&format!("own.k{}", at % 10), &at).unwrap();
    }
    let local: Vec<Event> = drain(&events);
    assert_eq!(local.len(), 50, "one local event per set: {local:?}");
    assert!(
        local
            .iter()
            .all(|event| event.as_change().is_some_and(|c| c.source == Source::Local)),
        "{local:?}"
    );

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '\"foreign\"' WHERE key = 'own.k3'",
    );
    let change = next_change(&events, "the foreign write");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        (
            "own.k3",
            Some(json!(43)),
            Some(json!("foreign")),
            Source::External
        )
    );

    // More local writes after the foreign one change nothing either.
    for at in 0..5 {
        store.set("own.after", &at).unwrap();
    }
    wait_converged(&store, "after local and foreign writes");
    let stats = store.stats();
    assert_eq!(stats.local_commits, 55, "{stats:?}");
    assert_eq!(stats.external_applies, 1, "{stats:?}");
    assert_eq!(stats.external_changes, 1, "{stats:?}");
    assert_eq!(stats.full_reloads, 0, "{stats:?}");
    assert_eq!(stats.rejected_values, 0, "{stats:?}");
    // Every event after the foreign one is local.
    assert!(
        drain(&events)
            .iter()
            .all(|event| event.as_change().is_some_and(|c| c.source == Source::Local))
    );
}

/// (e) Three Python writer processes and the CLI write random keys
/// concurrently while two stores (file events, and a 50 ms poll) are open;
/// once they stop, both snapshots equal the database exactly.
#[test]
fn several_writer_processes_and_the_cli_converge() {
    let db = TempDb::new();
    let with_events = open_store(&db.path, WatchMode::default());
    let polling = open_store(
        &db.path,
        WatchMode::Poll {
            interval: Duration::from_millis(50),
        },
    );
    with_events.set("conv.k0", &"start").unwrap();

    // Each writer: 60 transactions of 1–3 random upserts or deletes over 16
    // flat keys, committing on one long-lived connection.
    let writer_script = r#"
import json, random, sqlite3, sys
db, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
conn = sqlite3.connect(db, timeout=60, isolation_level=None)
for n in range(60):
    conn.execute("BEGIN IMMEDIATE")
    for _ in range(rng.randint(1, 3)):
        key = "conv.k%d" % rng.randrange(16)
        if rng.random() < 0.2:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            value = rng.choice([rng.randint(-1000, 1000), rng.random(), "w%d-%d" % (seed, n), [seed, n], True, None])
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
    conn.execute("COMMIT")
conn.close()
"#;
    let script = write_script(db.dir.path(), "converge.py", writer_script);
    let writers: Vec<_> = (1..=3)
        .map(|seed| {
            Command::new("python3")
                .arg(&script)
                .arg(&db.path)
                .arg(seed.to_string())
                .spawn()
                .expect("spawn a python writer")
        })
        .collect();
    // The CLI, meanwhile: 15 sets and unsets, each its own process.
    let mut cli_seqs = Vec::new();
    for n in 0..15 {
        let key = format!("conv.k{}", (n * 7) % 16);
        if n % 5 == 4 {
            let output = cli(&db.path, &["unset", &key]);
            // Exit 1 when another writer already removed the key.
            assert!(
                matches!(output.status.code(), Some(0 | 1)),
                "unset failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        } else {
            let stdout = cli_ok(&db.path, &["set", &key, &n.to_string()]);
            cli_seqs.push(stdout.trim().parse::<i64>().expect("set prints the seq"));
        }
    }
    for mut writer in writers {
        let status = writer.wait().expect("wait for a python writer");
        assert!(status.success(), "a python writer failed: {status}");
    }

    // Every seq the CLI reported is reached by both stores.
    let last_cli_seq = *cli_seqs.iter().max().unwrap();
    for store in [&with_events, &polling] {
        store
            .wait_for_seq(last_cli_seq, TIMEOUT)
            .expect("the CLI's last commit is applied");
    }
    let in_db = wait_converged(&with_events, "the events-mode store");
    assert_eq!(
        wait_converged(&polling, "the polling store"),
        in_db,
        "both stores hold the same"
    );
    let log_max: i64 = db_scalar(&db.path, "SELECT max(seq) FROM settings_log")
        .unwrap()
        .parse()
        .unwrap();
    for store in [&with_events, &polling] {
        store
            .wait_for_seq(log_max, TIMEOUT)
            .expect("the whole log is applied");
        let stats = store.stats();
        assert_eq!(stats.applied_seq, log_max, "{stats:?}");
        assert_eq!(stats.full_reloads, 0, "{stats:?}");
        assert_eq!(stats.rejected_values, 0, "{stats:?}");
    }
    // Sanity: the writers really wrote.
    assert!(log_max > 100, "the writers committed: log at {log_max}");
}
