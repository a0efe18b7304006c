//! The commit protocol under concurrency: validators judge inside the
//! pass's transaction, rows are classified by session, a write is
//! acknowledged only when it is in the file at the path, re-entry is
//! refused, lag notices come at once, threads are joined on drop, and a
//! store opened through a symlink follows the real file.
//!
//! Every foreign writer is a real second process: the `sqlite3` shell,
//! Python's `sqlite3` module, or the CLI binary.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use livesettings::{
    Error, Event, Options, ReloadReason, Resumed, Retention, Source, Store, WatchMode,
};
use rusqlite::OptionalExtension;
use serde_json::{Value, json};

use support::*;

// ---------------------------------------------------------------------------
// Helpers of this file

/// A store without a watcher: it applies foreign commits only with its own
/// writes, so a test decides when it catches up.
fn unwatched(db: &TempDb) -> Store {
    Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap()
}

/// `livesettings set KEY VALUE` in another process; returns the seq it
/// printed.
fn cli_set(db: &TempDb, key: &str, value: &str) -> i64 {
    cli_ok(&db.path, &["set", key, value])
        .trim()
        .parse()
        .expect("set prints its seq")
}

/// Runs `body` on a thread of its own and returns its result, or panics
/// when it has not finished within `limit` (what used to deadlock fails
/// instead of hanging the run; the stuck thread is left behind).
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(body());
    });
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {limit:?} (deadlocked?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// The value the change log says `key` held at `seq`: the `new` of its
/// latest row at or before `seq` (`Some(None)`: removed; `None`: no row).
fn logged_value_at(path: &Path, key: &str, seq: i64) -> Option<Option<Value>> {
    connect(path)
        .query_row(
            "SELECT new FROM settings_log WHERE key = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
            (key, seq),
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()
        .expect("read the change log")
        .map(|new| new.map(|text| serde_json::from_str(&text).expect("logged JSON")))
}

/// The newest seq in the change log.
fn newest_logged_seq(path: &Path) -> i64 {
    db_scalar(path, "SELECT coalesce(max(seq), 0) FROM settings_log")
        .expect("a number")
        .parse()
        .expect("an integer")
}

/// Whether another connection holds the write lock of the file at `path`
/// (a fresh connection cannot begin an IMMEDIATE transaction at once).
fn write_lock_held(path: &Path) -> bool {
    let conn = connect(path);
    conn.busy_timeout(Duration::ZERO).expect("busy timeout");
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            conn.execute_batch("ROLLBACK").expect("rollback");
            false
        }
        Err(error) => {
            assert_eq!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy),
                "probing the write lock: {error}"
            );
            true
        }
    }
}

/// The `/proc/self/task` entries of this process: (tid folder, name).
fn tasks() -> Vec<(PathBuf, String)> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((task.path(), name.trim_end().to_owned()))
        })
        .collect()
}

/// The syscall numbers of `nanosleep` and `clock_nanosleep`.
#[cfg(target_arch = "x86_64")]
const SLEEP_SYSCALLS: [&str; 2] = ["35", "230"];
#[cfg(target_arch = "aarch64")]
const SLEEP_SYSCALLS: [&str; 2] = ["101", "115"];

/// Whether the thread named `name` sleeps in a timed sleep: a store write
/// that waits for SQLite's write lock sleeps in SQLite's busy handler
/// (nothing else on the write path sleeps).
fn thread_sleeps(name: &str) -> bool {
    tasks().iter().any(|(task, comm)| {
        comm == name
            && std::fs::read_to_string(task.join("syscall")).is_ok_and(|syscall| {
                SLEEP_SYSCALLS.contains(&syscall.split_whitespace().next().unwrap_or(""))
            })
    })
}

/// A copy of the complete database at `path`, made by the `sqlite3` shell.
fn complete_copy(path: &Path, copy: &Path) {
    sqlite3(path, &format!("VACUUM INTO '{}'", copy.display()));
}

/// A free-running Python writer process: `source` gets the database path
/// and a stop file as arguments and loops until the stop file exists.
struct PythonLoop {
    child: Child,
    stop: PathBuf,
    stdout: BufReader<std::process::ChildStdout>,
}

impl PythonLoop {
    fn start(db: &Path, name: &str, source: &str) -> PythonLoop {
        let dir = db.parent().expect("db has a folder");
        let script = write_script(dir, name, source);
        let stop = dir.join(format!("{name}.stop"));
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(db)
            .arg(&stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read python's ready line");
        assert_eq!(line.trim(), "ready", "python {name} did not start");
        PythonLoop {
            child,
            stop,
            stdout,
        }
    }

    /// Stops the loop, waits for a clean exit and returns how many
    /// transactions it committed (its last line).
    fn stop(mut self) -> u64 {
        std::fs::write(&self.stop, "").expect("create the stop file");
        let mut status = None;
        wait_until("the python writer to exit", || {
            status = self.child.try_wait().expect("poll python");
            status.is_some()
        });
        assert!(status.unwrap().success(), "python writer failed");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read python's count");
        line.trim().parse().expect("python prints its commit count")
    }
}

impl Drop for PythonLoop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

use support::WatchProcess as Watch;

impl Watch {
    /// The next line, parsed as JSON; panics naming `what` after the
    /// deadline.
    fn next_json(&self, what: &str, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("no line for {what} within {TIMEOUT:?}: {error}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("{what}: {line:?} is not one JSON object: {error}"))
    }

    /// Reads lines until one satisfies `matches` (returned); the lines
    /// before it go to `seen`.
    fn until(
        &self,
        what: &str,
        seen: &mut Vec<Value>,
        mut matches: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let line = self.next_json(what, deadline);
            if matches(&line) {
                return line;
            }
            seen.push(line);
        }
    }
}

fn is_event(line: &Value, event: &str) -> bool {
    line["event"] == event
}

fn is_change_of(line: &Value, key: &str) -> bool {
    is_event(line, "change") && line["key"] == key
}

// ---------------------------------------------------------------------------
// 1. Two validators on one prefix each keep their own rejection

#[test]
fn two_validators_on_one_prefix_both_keep_an_invalid_foreign_value_out() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.merge(&json!({"sec": {"x": 1, "y": true}})).unwrap();
    // The first one registered is the one the foreign write breaks; the
    // second one accepts it.
    store
        .add_json_validator("sec", |section| match section["x"].as_i64() {
            Some(x) if x <= 5 => Ok(()),
            _ => Err("x must be an integer <= 5".to_owned()),
        })
        .unwrap();
    store
        .add_json_validator("sec", |section| {
            if section["y"].is_boolean() {
                Ok(())
            } else {
                Err("y must be a boolean".to_owned())
            }
        })
        .unwrap();
    let events = store.subscribe("").unwrap();

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '9' WHERE key = 'sec.x'",
    );
    let mut seen = Vec::new();
    let rejected = recv_until(&events, &mut seen, "the rejection of sec.x = 9", |event| {
        matches!(event, Event::Rejected(_))
    });
    let Event::Rejected(rejection) = rejected else {
        unreachable!()
    };
    assert_eq!(rejection.keys, ["sec.x"], "{rejection:?}");
    assert_eq!(
        store.get::<i64>("sec.x").unwrap(),
        Some(1),
        "the invalid value entered the snapshot"
    );
    assert_eq!(
        store.rejected().len(),
        1,
        "the rejection stays pending: {:?}",
        store.rejected()
    );

    // A later unrelated foreign commit does not let it in either.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('other.marker', '1')",
    );
    recv_until(&events, &mut seen, "the marker's change", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "other.marker")
    });
    let leaked: Vec<&Event> = seen
        .iter()
        .filter(|event| {
            event
                .as_change()
                .is_some_and(|change| change.key == "sec.x")
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "a change published the refused value: {leaked:?}"
    );
    assert_eq!(store.get::<i64>("sec.x").unwrap(), Some(1));
    assert_eq!(store.rejected().len(), 1);

    // A valid value clears the rejection and is applied.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '3' WHERE key = 'sec.x'",
    );
    let change = match recv_until(&events, &mut seen, "the fix of sec.x", |event| {
        event
            .as_change()
            .is_some_and(|change| change.key == "sec.x")
    }) {
        Event::Change(change) => change,
        _ => unreachable!(),
    };
    assert_eq!(
        (change.old_value().cloned(), change.new_value().cloned()),
        (Some(json!(1)), Some(json!(3)))
    );
    assert_eq!(store.rejected(), []);
    wait_converged(&store, "after the fix");
}

#[test]
fn watch_json_with_two_rules_on_one_prefix_prints_a_rejection_and_no_change() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "xr.enabled", "true"]);
    // Both rules have the fixed prefix `xr`; the first one is broken.
    let rules = db.sibling("rules.json");
    std::fs::write(
        &rules,
        json!({"rules": [
            {"keys": "xr.**", "type": "boolean"},
            {"keys": "xr.*.level", "type": "integer", "maximum": 5},
        ]})
        .to_string(),
    )
    .unwrap();
    let watch = Watch::spawn(
        &db.path,
        &[
            "--json",
            "--no-defaults",
            "--schema",
            rules.to_str().unwrap(),
        ],
    );
    let mut seen = Vec::new();
    watch.until("the ready line", &mut seen, |line| is_event(line, "ready"));

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '7' WHERE key = 'xr.enabled'",
    );
    watch.until("the rejected line for xr.enabled", &mut seen, |line| {
        is_event(line, "rejected") && line["key"] == "xr.enabled"
    });
    // Whatever that pass printed is out before a later commit's line.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('other.marker', '1')",
    );
    watch.until("the marker's change line", &mut seen, |line| {
        is_change_of(line, "other.marker")
    });
    let leaked: Vec<&Value> = seen
        .iter()
        .filter(|line| is_change_of(line, "xr.enabled"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the refused value was printed as a change: {leaked:#?}"
    );
}

// ---------------------------------------------------------------------------
// 2. A validator registered while a watcher pass runs binds that pass

const INVALID_IN_A_LOOP: &str = r#"
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
print("ready", flush=True)
k = 0
while not os.path.exists(sys.argv[2]):
    k += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE settings SET value = ? WHERE key = 'slow.tick'", (str(k),))
    conn.execute("UPDATE settings SET value = ? WHERE key GLOB 's[0-9]*.v'", ("-1" if k % 2 else "1",))
    conn.execute("COMMIT")
conn.close()
print(k, flush=True)
"#;

#[test]
fn a_validator_registered_during_a_watcher_pass_keeps_that_pass_invalid_value_out() {
    const SECTIONS: usize = 40;
    let db = TempDb::new();
    let store = Arc::new(Store::open(&db.path).unwrap());
    let mut tree = serde_json::Map::new();
    tree.insert("slow".to_owned(), json!({"tick": 0}));
    for i in 0..SECTIONS {
        tree.insert(format!("s{i}"), json!({"v": 1}));
    }
    store.merge(&Value::Object(tree)).unwrap();
    // Every pass touches `slow`, whose validator takes a while: it widens
    // the time a pass spends between reading its rows and publishing them.
    store
        .add_json_validator("slow", |_| {
            std::thread::sleep(Duration::from_millis(3));
            Ok(())
        })
        .unwrap();

    let writer = PythonLoop::start(&db.path, "invalid_loop.py", INVALID_IN_A_LOOP);
    let registered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, registered, stop) = (
            Arc::clone(&store),
            Arc::clone(&registered),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut seen_invalid = Vec::new();
            while !stop.load(Ordering::Acquire) {
                // Registered before this snapshot was loaded: it must hold.
                let count = registered.load(Ordering::Acquire);
                let snapshot = store.snapshot();
                for i in 0..count {
                    let v = snapshot.get::<i64>(&format!("s{i}.v")).unwrap();
                    if v.is_none_or(|v| v < 0) {
                        seen_invalid.push((format!("s{i}.v"), v, snapshot.seq()));
                    }
                }
            }
            seen_invalid
        })
    };

    let deadline = Instant::now() + TIMEOUT;
    for i in 0..SECTIONS {
        // Register while the loop's commits are being applied.
        let applied = store.snapshot().seq();
        wait_until("a pass applying the loop's commits", || {
            store.snapshot().seq() > applied
        });
        loop {
            let seq = store.snapshot().seq();
            match store.add_json_validator(&format!("s{i}"), |section| {
                match section["v"].as_i64() {
                    Some(v) if v >= 0 => Ok(()),
                    _ => Err("v must be >= 0".to_owned()),
                }
            }) {
                Ok(()) => break,
                // The snapshot holds the loop's invalid value right now:
                // try again after the next pass.
                Err(Error::Rejected { .. }) => {
                    assert!(
                        Instant::now() < deadline,
                        "s{i} never valid at registration"
                    );
                    poll_until(TIMEOUT, || store.snapshot().seq() > seq);
                }
                Err(other) => panic!("registering s{i}: {other}"),
            }
        }
        registered.store(i + 1, Ordering::Release);
    }
    let commits = writer.stop();
    stop.store(true, Ordering::Release);
    let seen_invalid = reader.join().unwrap();
    assert!(commits > 0);
    assert!(
        seen_invalid.is_empty(),
        "a reader saw invalid values after their validator was registered \
         ({} times; first: {:?})",
        seen_invalid.len(),
        &seen_invalid[..seen_invalid.len().min(5)]
    );
    // The last commit is in the snapshot (or refused): everything is valid.
    wait_until("the last commit applied", || {
        store.snapshot().get::<u64>("slow.tick").unwrap() == Some(commits)
    });
    for i in 0..SECTIONS {
        assert_eq!(
            store.get::<i64>(&format!("s{i}.v")).unwrap(),
            Some(1),
            "s{i}.v"
        );
    }
}

// ---------------------------------------------------------------------------
// 3. A pending section is re-read in the pass's own transaction

#[test]
fn a_pending_section_is_reread_in_the_pass_transaction_so_snapshots_and_events_match_the_log() {
    const COMMITS: i64 = 300;
    let db = TempDb::new();
    let store = Arc::new(
        Options::new()
            .with_channel_capacity(1_000_000)
            .open(&db.path)
            .unwrap(),
    );
    store
        .merge(&json!({"a": {"tick": 0}, "sec": {"x": 0, "ok": true}}))
        .unwrap();
    // Registered first and touched by every commit: a slow validator, so
    // commits land while a pass runs.
    store
        .add_json_validator("a", |_| {
            std::thread::sleep(Duration::from_millis(3));
            Ok(())
        })
        .unwrap();
    store
        .add_json_validator("sec", |section| {
            if section["ok"] == json!(true) {
                Ok(())
            } else {
                Err("ok must be true".to_owned())
            }
        })
        .unwrap();
    let start = store.snapshot().seq();
    let Resumed::Replayed(events) = store.subscribe_after("", start).unwrap() else {
        panic!("subscribe_after the current seq replays")
    };

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut samples: BTreeMap<i64, i64> = BTreeMap::new();
            while !stop.load(Ordering::Acquire) {
                let snapshot = store.snapshot();
                let x = snapshot.get::<i64>("sec.x").unwrap().expect("sec.x");
                samples.insert(snapshot.seq(), x);
            }
            samples
        })
    };
    let mut python = PythonWriter::open(&db.path);
    for k in 1..=COMMITS {
        let mut statements = vec![
            (
                "UPDATE settings SET value = ?1 WHERE key = 'a.tick'",
                vec![json!(k.to_string())],
            ),
            (
                "UPDATE settings SET value = ?1 WHERE key = 'sec.x'",
                vec![json!(k.to_string())],
            ),
        ];
        // Refused and pending every third commit, valid again at the next.
        match k % 3 {
            1 if k != COMMITS => statements.push((
                "UPDATE settings SET value = 'false' WHERE key = 'sec.ok'",
                vec![],
            )),
            _ => statements.push((
                "UPDATE settings SET value = 'true' WHERE key = 'sec.ok'",
                vec![],
            )),
        }
        python.transaction(&statements);
    }
    python.finish();
    wait_converged(&store, "after the last commit");
    stop.store(true, Ordering::Release);
    let samples = sampler.join().unwrap();

    // No snapshot holds a value committed after the seq it claims.
    let conn = connect(&db.path);
    for (&seq, &x) in &samples {
        let committed_at: i64 = conn
            .query_row(
                "SELECT seq FROM settings_log WHERE key = 'sec.x' AND new = ?1",
                [x.to_string()],
                |row| row.get(0),
            )
            .unwrap();
        assert!(
            committed_at <= seq,
            "a snapshot at seq {seq} holds sec.x = {x}, committed at seq {committed_at}"
        );
    }
    // Every change delivered says what the log holds at its seq.
    let delivered: Vec<Event> = events.try_iter().collect();
    let mut changes = 0;
    for event in &delivered {
        match event {
            Event::Change(change) => {
                changes += 1;
                assert!(change.seq > start, "{change:?}");
                assert_eq!(
                    logged_value_at(&db.path, &change.key, change.seq),
                    Some(change.new_value().cloned()),
                    "{change:?} does not match the log at its seq"
                );
            }
            Event::Rejected(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(changes > 0);
    let last_x = delivered
        .iter()
        .rev()
        .find_map(|event| event.as_change().filter(|change| change.key == "sec.x"));
    assert_eq!(
        last_x.and_then(|change| change.new_value().cloned()),
        Some(json!(COMMITS))
    );
}

// ---------------------------------------------------------------------------
// 4. Local writes racing watcher passes are Local

const FOREIGN_IN_A_LOOP: &str = r#"
import os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
# Short commits, many of them: every one wakes the store's watcher.
conn.execute("PRAGMA synchronous = OFF")
print("ready", flush=True)
k = 0
while not os.path.exists(sys.argv[2]):
    k += 1
    conn.execute("UPDATE settings SET value = ? WHERE key = ?", (str(k), "f.k%d" % (k % 8)))
    # Leave the write lock free most of the time: the store's writers must
    # not starve (SQLite's busy handler is not fair).
    time.sleep(0.0002)
conn.close()
print(k, flush=True)
"#;

#[test]
fn local_writes_racing_watcher_passes_are_reported_as_local() {
    const WRITES: i64 = 10_000;
    let db = TempDb::new();
    let store = Arc::new(
        Options::new()
            .with_channel_capacity(1_000_000)
            .with_busy_timeout(TIMEOUT)
            .open(&db.path)
            .unwrap(),
    );
    let mut tree = json!({"f": {}, "t0": {}, "t1": {}});
    for k in 0..8 {
        tree["f"][format!("k{k}")] = json!(0);
        tree["t0"][format!("k{k}")] = json!(0);
        tree["t1"][format!("k{k}")] = json!(0);
    }
    store.merge(&tree).unwrap();
    let events = store.subscribe("").unwrap();

    let foreign = PythonLoop::start(&db.path, "foreign_loop.py", FOREIGN_IN_A_LOOP);
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 1..=WRITES {
                    store
                        .set(&format!("t{t}.k{}", i % 8), &(t * 1_000_000 + i))
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let commits = foreign.stop();
    wait_converged(&store, "after the writes");
    assert!(commits > 0);

    let mut local = 0;
    let mut external = 0;
    let mut wrong = Vec::new();
    for event in events.try_iter() {
        let Event::Change(change) = event else {
            panic!("unexpected {event:?}")
        };
        let expected = if change.key.starts_with("t0.") || change.key.starts_with("t1.") {
            local += 1;
            Source::Local
        } else {
            assert!(change.key.starts_with("f."), "{change:?}");
            external += 1;
            Source::External
        };
        if change.source != expected {
            wrong.push(change);
        }
    }
    assert!(
        local > 0 && external > 0,
        "local {local}, external {external}"
    );
    assert!(
        wrong.is_empty(),
        "{} of {} events have the wrong source; first: {:?}",
        wrong.len(),
        local + external,
        &wrong[..wrong.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// 5. subscribe_after a seq the store has not applied yet

#[test]
fn subscribe_from_a_seq_the_store_has_not_applied_delivers_nothing_at_or_before_it() {
    let db = TempDb::new();
    // No watcher: the store applies foreign commits only with its own writes.
    let store = unwatched(&db);
    store.set("b.y", &0).unwrap();
    let first: i64 = cli_set(&db, "a.x", "1");
    let second: i64 = cli_set(&db, "a.y", "2");
    assert!(store.snapshot().seq() < first && first < second);

    let Resumed::Replayed(from_first) = store.subscribe_after("", first).unwrap() else {
        panic!("nothing was pruned")
    };
    let Resumed::Replayed(from_second) = store.subscribe_after("", second).unwrap() else {
        panic!("nothing was pruned")
    };
    let commit = store.set("b.y", &1).unwrap();
    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(1));

    let seqs = |events: &crossbeam_channel::Receiver<Event>| -> Vec<(i64, String)> {
        drain(events)
            .iter()
            .map(|event| match event {
                Event::Change(change) => (change.seq, change.key.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    assert_eq!(
        seqs(&from_first),
        [(second, "a.y".to_owned()), (commit.seq, "b.y".to_owned())],
        "from seq {first}: exactly the changes after it"
    );
    assert_eq!(
        seqs(&from_second),
        [(commit.seq, "b.y".to_owned())],
        "from seq {second}: exactly the changes after it"
    );
}

#[test]
fn subscribe_from_beyond_the_newest_seq_is_unknown() {
    let db = TempDb::new();
    let store = unwatched(&db);
    store.set("b.y", &0).unwrap();
    let newest: i64 = cli_set(&db, "a.x", "1");
    assert_eq!(newest, newest_logged_seq(&db.path));
    assert!(matches!(
        store.subscribe_after("", newest),
        Ok(Resumed::Replayed(_))
    ));
    match store.subscribe_after("", newest + 1) {
        Err(Error::UnknownSeq { seq, .. }) => assert_eq!(seq, newest + 1),
        other => panic!("expected UnknownSeq for seq {}, got {other:?}", newest + 1),
    }
}

// ---------------------------------------------------------------------------
// 6. Writes racing a file renamed over the path

#[test]
fn a_write_whose_closure_runs_while_the_file_is_replaced_is_acknowledged_only_if_in_the_new_file() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("base.k", &1).unwrap();
    let copy = db.sibling("copy.db");
    complete_copy(&db.path, &copy);

    let result = store.write(|tx| {
        std::fs::rename(&copy, &db.path).expect("rename the copy over the path");
        tx.execute("INSERT INTO settings (key, value) VALUES ('w.k', '1')", [])?;
        Ok(())
    });
    let in_snapshot = store.get_json("w.k");
    // Closing lets SQLite settle the side files of whatever file the
    // store's connections have open; then a fresh connection reads exactly
    // what the file at the path holds.
    store.close().unwrap();
    let in_file = db_value(&db.path, "w.k");
    match result {
        Ok(()) => assert_eq!(
            in_file,
            Some(json!(1)),
            "acknowledged, but not in the file at the path"
        ),
        Err(Error::FileReplaced { .. }) => {
            assert_eq!(in_file, None, "refused, but in the file at the path");
            assert_eq!(in_snapshot, None, "refused, but in the snapshot");
        }
        Err(other) => panic!("unexpected error {other}"),
    }
    assert_eq!(db_value(&db.path, "base.k"), Some(json!(1)));
}

/// A sqlite3 session holds the write lock; `op` waits for it on a thread
/// named `name`; the test renames a copy over the path, then the session
/// ends. Returns `op`'s result and what the file at the path holds for
/// `w.k` (read after the store is closed).
fn replaced_while_waiting_for_the_lock(
    name: &str,
    op: impl FnOnce(&Store) -> livesettings::Result<()> + Send + 'static,
) -> (livesettings::Result<()>, Option<Value>) {
    let db = TempDb::new();
    let store = Arc::new(
        Options::new()
            .with_busy_timeout(TIMEOUT)
            .open(&db.path)
            .unwrap(),
    );
    store.set("base.k", &1).unwrap();
    let copy = db.sibling("copy.db");
    complete_copy(&db.path, &copy);

    let mut session = Sqlite3Session::open(&db.path);
    session.send("BEGIN IMMEDIATE;");
    wait_until("the sqlite3 session to hold the write lock", || {
        write_lock_held(&db.path)
    });
    let waiting = {
        let store = Arc::clone(&store);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || op(&store))
            .unwrap()
    };
    wait_until("the store's write to wait for the lock", || {
        thread_sleeps(name)
    });
    std::fs::rename(&copy, &db.path).expect("rename the copy over the path");
    session.send("ROLLBACK;");
    session.finish();
    let result = within("the waiting write", TIMEOUT, move || {
        waiting.join().unwrap()
    });
    let store = Arc::try_unwrap(store).expect("the only handle left");
    store.close().unwrap();
    (result, db_value(&db.path, "w.k"))
}

#[test]
fn a_set_waiting_for_the_write_lock_while_the_file_is_replaced_lands_in_the_new_file() {
    let (result, in_file) = replaced_while_waiting_for_the_lock("lsreg-setter", |store| {
        store.set("w.k", &2).map(|_| ())
    });
    result.expect("set retries on the new file");
    assert_eq!(
        in_file,
        Some(json!(2)),
        "set returned Ok but the write is not in the file at the path"
    );
}

#[test]
fn a_write_waiting_for_the_write_lock_while_the_file_is_replaced_is_not_lost() {
    let (result, in_file) = replaced_while_waiting_for_the_lock("lsreg-writer", |store| {
        store.write(|tx| {
            tx.execute("INSERT INTO settings (key, value) VALUES ('w.k', '3')", [])?;
            Ok(())
        })
    });
    match result {
        Ok(()) => assert_eq!(
            in_file,
            Some(json!(3)),
            "acknowledged, but not in the file at the path"
        ),
        Err(Error::FileReplaced { .. }) => assert_eq!(in_file, None, "refused, but in the file"),
        Err(other) => panic!("unexpected error {other}"),
    }
}

// ---------------------------------------------------------------------------
// 7. INSERT OR REPLACE after the log was pruned

/// The newest log row of `key`: (seq, old as stored text).
fn last_log_row(path: &Path, key: &str) -> (i64, Option<String>) {
    connect(path)
        .query_row(
            "SELECT seq, old FROM settings_log WHERE key = ?1 ORDER BY seq DESC LIMIT 1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("a log row")
}

#[test]
fn insert_or_replace_after_the_log_was_pruned_logs_the_replaced_value_and_revert_restores_it() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("a.k", &1).unwrap();
    store.set("a.k", &2).unwrap();
    store.set("b.k", "x").unwrap();
    store
        .prune(Retention {
            keep_last: Some(0),
            ..Retention::default()
        })
        .unwrap();
    assert_eq!(log_rows(&db.path), 0);

    sqlite3(
        &db.path,
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('a.k', '5')",
    );
    let (seq, old) = last_log_row(&db.path, "a.k");
    assert_eq!(
        old.as_deref(),
        Some("2"),
        "the replaced value is logged as old"
    );
    store.wait_for_seq(seq, TIMEOUT).unwrap();
    assert_eq!(store.get::<i64>("a.k").unwrap(), Some(5));
    store.revert(seq).unwrap();
    assert_eq!(
        store.get::<i64>("a.k").unwrap(),
        Some(2),
        "revert restores the replaced value"
    );
    assert_eq!(db_value(&db.path, "a.k"), Some(json!(2)));

    // The same when an operator deleted the key's log rows.
    sqlite3(&db.path, "DELETE FROM settings_log WHERE key = 'b.k'");
    sqlite3(
        &db.path,
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('b.k', '\"y\"')",
    );
    let (seq, old) = last_log_row(&db.path, "b.k");
    assert_eq!(old.as_deref(), Some("\"x\""));
    store.wait_for_seq(seq, TIMEOUT).unwrap();
    store.revert(seq).unwrap();
    assert_eq!(db_value(&db.path, "b.k"), Some(json!("x")));
    wait_converged(&store, "after the reverts");
}

// ---------------------------------------------------------------------------
// 8. Re-entry from a write closure, and transaction control inside it

#[test]
fn store_methods_called_inside_a_write_closure_are_refused_as_reentrant() {
    let db = TempDb::new();
    let store = Arc::new(Store::open(&db.path).unwrap());
    store.set("a.x", &1).unwrap();
    let next_seq = store.snapshot().seq() + 1;
    let inside = Arc::clone(&store);
    let outcome = within(
        "store calls inside write()",
        Duration::from_secs(10),
        move || {
            let store = &inside;
            store.write(|_tx| {
                let results: Vec<(&'static str, Option<Error>)> = vec![
                    ("set", store.set("a.x", &2).err()),
                    ("history", store.history("a.x", 10).err()),
                    ("subscribe_after", store.subscribe_after("", 0).err()),
                    ("live", store.live::<Value>("a").err()),
                    (
                        "add_json_validator",
                        store.add_json_validator("a", |_| Ok(())).err(),
                    ),
                    ("wait_for_seq", store.wait_for_seq(next_seq, TIMEOUT).err()),
                    ("write", store.write(|_| Ok(())).err()),
                ];
                Ok(results)
            })
        },
    );
    let results = outcome.expect("the write itself succeeds");
    for (operation, error) in &results {
        assert!(
            matches!(error, Some(Error::Reentrant { .. })),
            "{operation} inside write(): expected Reentrant, got {error:?}"
        );
    }
    // Nothing was done, and the store works afterwards.
    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(1));
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(1)));
    store.set("a.x", &3).unwrap();
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(3)));
}

#[test]
fn transaction_control_sql_inside_write_is_refused_while_savepoints_work() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    for statement in ["COMMIT", "END", "ROLLBACK", "BEGIN", "BEGIN IMMEDIATE"] {
        let result = store.write(|tx| {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('sql.k', '1')",
                [],
            )?;
            tx.execute_batch(statement)?;
            Ok(())
        });
        assert!(
            matches!(result, Err(Error::InvalidSql { .. })),
            "{statement} inside write(): expected InvalidSql, got {result:?}"
        );
        assert_eq!(
            db_value(&db.path, "sql.k"),
            None,
            "{statement}: nothing is written"
        );
        assert!(!store.contains("sql.k"), "{statement}: nothing is applied");
    }

    let events = store.subscribe("sp").unwrap();
    store
        .write(|tx| {
            tx.execute("INSERT INTO settings (key, value) VALUES ('sp.a', '1')", [])?;
            tx.execute_batch("SAVEPOINT one")?;
            tx.execute("INSERT INTO settings (key, value) VALUES ('sp.b', '2')", [])?;
            tx.execute_batch("ROLLBACK TO one")?;
            tx.execute_batch("RELEASE one")?;
            tx.execute_batch("SAVEPOINT two")?;
            tx.execute("INSERT INTO settings (key, value) VALUES ('sp.c', '3')", [])?;
            tx.execute_batch("RELEASE two")?;
            Ok(())
        })
        .unwrap();
    let expected: BTreeMap<String, Value> =
        [("sp.a".to_owned(), json!(1)), ("sp.c".to_owned(), json!(3))].into();
    assert_eq!(store_entries(&store, "sp"), expected);
    let in_db: BTreeMap<String, Value> = db_contents(&db.path)
        .into_iter()
        .filter(|(key, _)| key.starts_with("sp."))
        .collect();
    assert_eq!(in_db, expected);
    let changes: Vec<(String, Source)> = drain(&events)
        .into_iter()
        .map(|event| match event {
            Event::Change(change) => (change.key, change.source),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("sp.a".to_owned(), Source::Local),
            ("sp.c".to_owned(), Source::Local)
        ]
    );
}

// ---------------------------------------------------------------------------
// 9. A non-integer sqlite_sequence cell

#[test]
fn a_non_integer_sqlite_sequence_does_not_stop_foreign_changes() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("a.x", &1).unwrap();
    let events = store.subscribe("a").unwrap();

    // The change and the broken cell in one commit: the cell stays broken.
    sqlite3(
        &db.path,
        "BEGIN; UPDATE settings SET value = '2' WHERE key = 'a.x'; \
         UPDATE sqlite_sequence SET seq = 'abc' WHERE name = 'settings_log'; COMMIT;",
    );
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT typeof(seq) FROM sqlite_sequence WHERE name = 'settings_log'"
        )
        .as_deref(),
        Some("text")
    );
    let change = next_change(&events, "the foreign change with a text seq cell");
    assert_eq!(
        (
            change.key.as_str(),
            change.new_value().cloned(),
            change.source
        ),
        ("a.x", Some(json!(2)), Source::External)
    );
    // Local writes and later foreign changes go on too.
    store.set("a.y", &1).unwrap();
    assert_eq!(next_change(&events, "the local write").key, "a.y");
    sqlite3(
        &db.path,
        "UPDATE sqlite_sequence SET seq = 'abc' WHERE name = 'settings_log'",
    );
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '3' WHERE key = 'a.x'",
    );
    let change = next_change(&events, "a later foreign change");
    assert_eq!(
        (change.key.as_str(), change.new_value().cloned()),
        ("a.x", Some(json!(3)))
    );
    wait_converged(&store, "with a text seq cell");
    assert_eq!(store.stats().reloads(ReloadReason::Recovery), 0);
}

// ---------------------------------------------------------------------------
// 10. A database opened through a symlink

#[test]
fn a_database_opened_through_a_symlink_gets_foreign_commits_through_file_events() {
    let db = TempDb::new();
    let real_folder = db.sibling("real");
    let link_folder = db.sibling("links");
    std::fs::create_dir(&real_folder).unwrap();
    std::fs::create_dir(&link_folder).unwrap();
    let real = real_folder.join("settings.db");
    let link = link_folder.join("settings.db");
    let seeding = Store::open(&real).unwrap();
    seeding.set("a.x", &1).unwrap();
    seeding.close().unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    // Only file events can deliver a commit within TIMEOUT: the safety poll
    // is a minute away.
    let store = Options::new()
        .with_watch(WatchMode::Events {
            safety_poll: Duration::from_secs(60),
        })
        .open(&link)
        .unwrap();
    assert_eq!(store.get::<i64>("a.x").unwrap(), Some(1));
    // Let the re-checks after open run out (48 of them: src/watch/schedule.rs).
    wait_until("the watcher's first checks", || {
        store.stats().watcher_checks >= 48
    });
    let events = store.subscribe("a").unwrap();

    for value in [2, 3] {
        sqlite3(
            &link,
            &format!("UPDATE settings SET value = '{value}' WHERE key = 'a.x'"),
        );
        let change = next_change(&events, "a foreign commit through the link");
        assert_eq!(
            (change.new_value().cloned(), change.source),
            (Some(json!(value)), Source::External)
        );
    }
}

// ---------------------------------------------------------------------------
// 12. One UPDATE of many keys: lag notice at once, and the CLI resyncs

const BULK_KEYS: usize = 20_000;

/// A database at `path` holding `bulk.k0` … `bulk.k19999` = 0.
fn bulk_database(path: &Path) {
    Store::open(path).unwrap().close().unwrap();
    sqlite3(
        path,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
             INSERT INTO settings (key, value) SELECT 'bulk.k' || i, '0' FROM n;",
            BULK_KEYS - 1
        ),
    );
}

#[test]
fn one_update_of_many_keys_sends_the_subscriber_a_lag_notice_at_once() {
    let db = TempDb::new();
    bulk_database(&db.path);
    let store = Options::new()
        .with_channel_capacity(1024)
        .open(&db.path)
        .unwrap();
    assert_eq!(store.keys("bulk").len(), BULK_KEYS);
    let events = store.subscribe("bulk").unwrap();

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '1' WHERE key GLOB 'bulk.*'",
    );
    let newest = newest_logged_seq(&db.path);
    // No later commit, and nothing read while the batch is published: the
    // notice must be queued with the batch itself.
    wait_stats(&store, "the update applied", |stats| {
        stats.applied_seq >= newest
    });
    let mut queued = drain(&events);
    let last = queued.pop();
    assert!(
        matches!(last, Some(Event::Lagged { .. })),
        "no lag notice queued with the batch ({} events queued, the last {last:?})",
        queued.len() + 1
    );
    assert_eq!(
        last,
        Some(Event::Lagged {
            missed: (BULK_KEYS - 1024) as u64,
            seq: newest
        })
    );
    assert_eq!(queued.len(), 1024, "the channel was filled first");
    assert!(queued.iter().all(|event| event.as_change().is_some()));
    let snapshot = store.snapshot();
    assert!(snapshot.seq() >= newest);
    assert!(
        snapshot
            .entries("bulk")
            .all(|(_, value)| *value == json!(1))
    );
}

#[test]
fn watch_json_resynchronises_after_a_lag_and_ends_equal_to_the_database() {
    let db = TempDb::new();
    bulk_database(&db.path);
    let mut state = db_contents(&db.path);
    let watch = Watch::spawn(&db.path, &["--json", "--no-defaults"]);
    let mut seen = Vec::new();
    let ready = watch.until("the ready line", &mut seen, |line| is_event(line, "ready"));
    assert_eq!(ready["keys"], json!(BULK_KEYS));

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '1' WHERE key GLOB 'bulk.*'",
    );
    let deadline = Instant::now() + TIMEOUT;
    let mut lagged = false;
    loop {
        let line = watch.next_json("the lagged and resync lines", deadline);
        match line["event"].as_str() {
            Some("change") => {
                let key = line["key"].as_str().unwrap().to_owned();
                match &line["new"] {
                    Value::Null => state.remove(&key),
                    new => state.insert(key, new.clone()),
                };
            }
            Some("lagged") => lagged = true,
            Some("resync") => {
                assert!(lagged, "a resync line without a lagged line before it");
                break;
            }
            other => panic!("unexpected line {line} ({other:?})"),
        }
    }
    assert!(
        state == db_contents(&db.path),
        "the watch's state differs from the database after the resync"
    );

    // And it goes on live.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '2' WHERE key = 'bulk.k7'",
    );
    let change = watch.until("a change after the resync", &mut seen, |line| {
        is_event(line, "change")
    });
    assert_eq!(
        (change["key"].as_str(), &change["new"]),
        (Some("bulk.k7"), &json!(2))
    );
}

// ---------------------------------------------------------------------------
// 13. Transient errors, threads on drop, subscribe_with_snapshot

// (An error after a durable commit: no test. After COMMIT the only
// fallible step is the stat that re-checks the file identity, and it fails
// only when the path no longer leads to the committed file, when the error
// is the point.)

#[test]
fn a_busy_watcher_check_does_not_force_a_recovery_reload() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Poll {
            interval: Duration::from_millis(500),
        })
        .with_busy_timeout(Duration::from_millis(200))
        .open(&db.path)
        .unwrap();
    store.set("a.x", &1).unwrap();
    let trigger = db_scalar(
        &db.path,
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'settings_log_delete'",
    )
    .expect("the delete trigger")
    .replace('\n', " ");

    // A migration tool: drops a trigger, then holds an EXCLUSIVE
    // transaction (recreating it) for a while. The watcher finds the
    // trigger missing and cannot repair it: busy.
    let mut session = Sqlite3Session::open(&db.path);
    session.send(&format!(
        "DROP TRIGGER settings_log_delete; BEGIN EXCLUSIVE; {trigger};"
    ));
    wait_stats(&store, "a watcher check that hit the lock", |stats| {
        stats.watcher_errors >= 1
    });
    session.send("COMMIT;");
    session.finish();

    wait_stats(&store, "the reload after the schema change", |stats| {
        stats.full_reloads >= 1
    });
    wait_converged(&store, "after the lock was released");
    assert_triggers_present(&db.path);
    assert_eq!(
        store.stats().reloads(ReloadReason::Recovery),
        0,
        "a busy check forced a recovery reload: {:?}",
        store.stats()
    );
}

/// Set in the child process of the thread-count test.
const THREADS_CHILD: &str = "LIVESETTINGS_COMMIT_PROTOCOL_THREADS_CHILD";

#[test]
fn dropping_a_store_joins_every_thread_it_started() {
    const NAME: &str = "dropping_a_store_joins_every_thread_it_started";
    if std::env::var_os(THREADS_CHILD).is_some() {
        return count_threads_around_stores();
    }
    // Counting the threads of this process needs a process where no other
    // test runs: this test binary again, running only this test.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(THREADS_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child run failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn count_threads_around_stores() {
    let db = TempDb::new();
    let names = || {
        tasks()
            .into_iter()
            .map(|(_, name)| name)
            .collect::<Vec<_>>()
    };
    let baseline = names();
    for round in 0..40 {
        let (watch, started) = match round % 2 {
            // The watcher and the file-event thread.
            0 => (WatchMode::default(), 2),
            _ => (WatchMode::poll(), 1),
        };
        let store = Options::new().with_watch(watch).open(&db.path).unwrap();
        store.set("round", &round).unwrap();
        wait_until("the store's threads to start", || {
            names().len() >= baseline.len() + started
                && names()
                    .iter()
                    .any(|name| name.starts_with("livesettings-wa"))
        });
        if round % 4 < 2 {
            drop(store);
        } else {
            store.close().unwrap();
        }
        let after = names();
        let ours: Vec<&String> = after
            .iter()
            .filter(|name| name.starts_with("livesettings-"))
            .collect();
        assert!(
            ours.is_empty(),
            "round {round}: threads outlived the store: {ours:?}"
        );
        assert_eq!(
            after.len(),
            baseline.len(),
            "round {round}: threads outlived the store: before {baseline:?}, after {after:?}"
        );
    }
}

#[test]
fn subscribe_with_snapshot_loses_no_event_under_concurrent_foreign_writes() {
    const COMMITS: i64 = 300;
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("c.n", &0).unwrap();
    let writer = {
        let path = db.path.clone();
        std::thread::spawn(move || {
            let mut python = PythonWriter::open(&path);
            for k in 1..=COMMITS {
                python.execute(
                    "UPDATE settings SET value = ?1 WHERE key = 'c.n'",
                    vec![json!(k.to_string())],
                );
            }
            python.finish();
        })
    };
    let mut subscriptions = Vec::new();
    while !writer.is_finished() {
        let (snapshot, events) = store.subscribe_with_snapshot("c").unwrap();
        let seq = snapshot.seq();
        subscriptions.push((snapshot, events));
        poll_until(TIMEOUT, || {
            store.snapshot().seq() > seq || writer.is_finished()
        });
    }
    writer.join().unwrap();
    assert!(
        subscriptions.len() > 2,
        "only {} subscriptions",
        subscriptions.len()
    );

    for (snapshot, events) in &subscriptions {
        let mut value = snapshot.get::<i64>("c.n").unwrap().expect("c.n");
        let mut seq = snapshot.seq();
        while value < COMMITS {
            let change = next_change(events, "the next change of c.n");
            assert_eq!(change.key, "c.n");
            assert!(change.seq > seq, "{change:?} after seq {seq}");
            assert_eq!(
                change.old_value().cloned(),
                Some(json!(value)),
                "a change was lost after the snapshot at seq {}: {change:?}",
                snapshot.seq()
            );
            value = change.new.and_then(|new| new.as_i64()).expect("a number");
            seq = change.seq;
        }
        assert_eq!(drain(events), [], "nothing after the last commit");
    }
}

// ---------------------------------------------------------------------------
// A symlink that is removed or retargeted leaves the real file intact

/// The store opened `link → real.db`, wrote, and then the link went away or
/// was pointed elsewhere: the real file is still where it was, so its WAL
/// must be checkpointed into it, never discarded as an orphan's. Returns
/// what the real file holds once the store has let go of it.
fn real_file_after_the_link_changes(retarget: bool) -> BTreeMap<String, Value> {
    let db = TempDb::new();
    let real = db.sibling("real.db");
    let link = db.sibling("link.db");
    Store::open(&real).unwrap().close().unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = Options::new()
        .with_watch(WatchMode::Poll {
            interval: Duration::from_millis(20),
        })
        .open(&link)
        .unwrap();
    store.set("a.x", &1).unwrap();
    let checks = store.stats().watcher_checks;
    std::fs::remove_file(&link).unwrap();
    if retarget {
        let other = db.sibling("other.db");
        Store::open(&other).unwrap().close().unwrap();
        std::os::unix::fs::symlink(&other, &link).unwrap();
        wait_stats(&store, "the store follows the retargeted link", |stats| {
            stats.reloads(livesettings::ReloadReason::FileReplaced) > 0
        });
    } else {
        wait_stats(&store, "the watcher notices the missing link", |stats| {
            stats.watcher_checks > checks + 2
        });
    }
    store.close().unwrap();
    db_contents(&real)
}

#[test]
fn removing_the_symlink_a_store_opened_keeps_its_writes_in_the_real_file() {
    let contents = real_file_after_the_link_changes(false);
    assert_eq!(contents.get("a.x"), Some(&json!(1)), "{contents:?}");
}

#[test]
fn retargeting_the_symlink_a_store_opened_keeps_its_writes_in_the_real_file() {
    let contents = real_file_after_the_link_changes(true);
    assert_eq!(contents.get("a.x"), Some(&json!(1)), "{contents:?}");
}

// ---------------------------------------------------------------------------
// Placement is checked against the database as the write's transaction sees it

/// Another process created `p.a.deep` and this store has not applied it yet
/// (no watcher): `set("p.a", …)` must still be refused, because the check
/// runs on the snapshot caught up inside the write's own transaction, not on
/// the one loaded before it began.
#[test]
fn a_set_is_placed_against_foreign_keys_the_store_has_not_applied_yet() {
    let db = TempDb::new();
    let store = unwatched(&db);
    store.set("p.other", &1).unwrap();
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('p.a.deep', '1')",
    );
    assert!(!store.contains("p.a.deep"), "the store has not looked yet");
    let refused = store.set("p.a", &2);
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "a key above a foreign key must be refused: {refused:?}"
    );
    let contents = db_contents(&db.path);
    assert!(!contents.contains_key("p.a"), "{contents:?}");
    // And the write's catch-up applied the foreign key.
    store.set("p.other", &3).unwrap();
    assert_eq!(store.get::<i64>("p.a.deep").unwrap(), Some(1));
}
