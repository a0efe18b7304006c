//! Consumers report what they applied: every store with a watcher keeps a
//! record beside the database, `livesettings status` lists them with their
//! lag, marks and expires the records of dead processes, and `status
//! --wait SEQ` blocks until every live consumer applied SEQ.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use livesettings::{ConsumerState, Options, Store, WatchMode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use support::{TIMEOUT, TempDb, WatchProcess, cli, cli_ok, poll_until, wait_stats, wait_until};

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `status --json`, parsed.
fn status(db: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(extra);
    let text = cli_ok(db, &args);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("status --json: {error}: {text}"))
}

/// The entries of `status --json` by pid.
fn entry_of(status: &Value, pid: u32) -> Option<Value> {
    status["consumers"]
        .as_array()
        .expect("a consumers array")
        .iter()
        .find(|entry| entry["pid"] == json!(pid))
        .cloned()
}

fn initialised() -> TempDb {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    cli_ok(&db.path, &["set", "a.b", "1"]);
    db
}

fn spawn_watch(db: &Path) -> WatchProcess {
    let watch = WatchProcess::spawn(db, &["--json"]);
    let ready = watch
        .lines
        .recv_timeout(TIMEOUT)
        .expect("watch prints ready");
    assert!(ready.contains("\"ready\""), "{ready}");
    watch
}

fn signal(watch: &WatchProcess, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(watch.child.id()).expect("a pid"));
    kill(pid, signal).expect("signal the watch process");
}

fn set(db: &Path, key: &str, value: &str) -> i64 {
    cli_ok(db, &["set", key, value])
        .trim()
        .parse()
        .expect("set prints the seq")
}

#[test]
fn a_stopped_consumer_shows_as_lagging_and_wait_times_out_until_it_is_resumed() {
    let db = initialised();
    let watches: Vec<WatchProcess> = (0..3).map(|_| spawn_watch(&db.path)).collect();
    let pids: Vec<u32> = watches.iter().map(|watch| watch.child.id()).collect();
    wait_until("three live consumers", || {
        let status = status(&db.path, &[]);
        pids.iter()
            .all(|pid| entry_of(&status, *pid).is_some_and(|entry| entry["state"] == json!("live")))
    });
    let frozen = pids[0];
    signal(&watches[0], Signal::SIGSTOP);
    let seq = set(&db.path, "a.b", "2");
    wait_until("the running consumers apply the write", || {
        let status = status(&db.path, &[]);
        pids[1..].iter().all(|pid| {
            entry_of(&status, *pid).is_some_and(|entry| entry["applied_seq"] == json!(seq))
        })
    });

    let timed_out = cli(
        &db.path,
        &["status", "--wait", &seq.to_string(), "--timeout", "1"],
    );
    assert_eq!(
        timed_out.status.code(),
        Some(1),
        "{}",
        stderr_of(&timed_out)
    );
    let message = stderr_of(&timed_out);
    assert!(message.contains(&format!("pid {frozen} ")), "{message}");
    assert!(message.contains("1 of 3 live consumers lag"), "{message}");
    for running in &pids[1..] {
        assert!(!message.contains(&format!("pid {running} ")), "{message}");
    }

    // Stopped is not dead: listed live, behind, with a late heartbeat.
    let listed = status(&db.path, &[]);
    assert_eq!(listed["seq"], json!(seq));
    let entry = entry_of(&listed, frozen).expect("the stopped consumer is listed");
    assert_eq!(entry["state"], json!("live"), "{entry}");
    assert_eq!(entry["applied_seq"], json!(seq - 1), "{entry}");
    assert_eq!(entry["lag_seqs"], json!(1), "{entry}");
    assert!(
        entry["lag_seconds"].as_f64().expect("lag_seconds") >= 0.9,
        "{entry}"
    );
    assert!(
        entry["heartbeat_age_seconds"].as_f64().expect("age") >= 0.9,
        "{entry}"
    );
    let table = cli_ok(&db.path, &["status"]);
    assert!(table.contains(&frozen.to_string()), "{table}");

    signal(&watches[0], Signal::SIGCONT);
    let waited = cli(
        &db.path,
        &["status", "--wait", &seq.to_string(), "--timeout", "20"],
    );
    assert!(waited.status.success(), "{}", stderr_of(&waited));
    assert!(
        String::from_utf8_lossy(&waited.stdout).contains("all 3 live consumers applied"),
        "{waited:?}"
    );
}

#[test]
fn a_killed_consumer_is_marked_stale_not_waited_for_and_its_record_expires() {
    let db = initialised();
    let mut watch = spawn_watch(&db.path);
    let pid = watch.child.id();
    wait_until("the consumer is listed", || {
        entry_of(&status(&db.path, &[]), pid).is_some()
    });
    watch.child.kill().expect("SIGKILL the watch process");
    watch.child.wait().expect("reap it");

    // Within the grace period: listed, marked stale.
    let listed = status(&db.path, &[]);
    let entry = entry_of(&listed, pid).expect("still listed during the grace period");
    assert_eq!(entry["state"], json!("stale"), "{entry}");
    let session = entry["session"].as_str().expect("a session").to_owned();
    let record = livesettings::consumers_folder(&db.path).join(format!("{session}.json"));
    assert!(record.exists());

    let seq = set(&db.path, "a.b", "3");
    let waited = cli(
        &db.path,
        &["status", "--wait", &seq.to_string(), "--timeout", "5"],
    );
    assert!(waited.status.success(), "{}", stderr_of(&waited));
    assert!(
        String::from_utf8_lossy(&waited.stdout).contains("no live consumers"),
        "{waited:?}"
    );

    // Past the grace period (here: none), the record goes.
    let listed = status(&db.path, &["--expire-after", "0"]);
    assert!(entry_of(&listed, pid).is_none(), "{listed}");
    assert!(!record.exists());
}

#[test]
fn status_wait_with_no_consumers_says_so_and_succeeds() {
    let db = initialised();
    let waited = cli(&db.path, &["status", "--wait", "1", "--timeout", "0"]);
    assert!(waited.status.success(), "{}", stderr_of(&waited));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("no live consumers"));
    assert_eq!(status(&db.path, &[])["consumers"], json!([]));
}

fn own_consumer(db: &Path, origin: &str) -> Option<livesettings::Consumer> {
    livesettings::consumers(db)
        .expect("list consumers")
        .into_iter()
        .find(|consumer| consumer.pid == std::process::id() && consumer.origin == origin)
}

#[test]
fn a_closed_or_dropped_store_removes_its_record() {
    let db = initialised();
    for close in [true, false] {
        let store = Options::new()
            .with_origin("closing")
            .open(&db.path)
            .expect("open");
        wait_until("the store's record", || {
            own_consumer(&db.path, "closing").is_some()
        });
        let consumer = own_consumer(&db.path, "closing").expect("listed");
        assert_eq!(consumer.state, ConsumerState::Live);
        assert_eq!(consumer.applied_seq, store.stats().applied_seq);
        if close {
            store.close().expect("close");
        } else {
            drop(store);
        }
        assert!(own_consumer(&db.path, "closing").is_none(), "close={close}");
    }
    let folder = livesettings::consumers_folder(&db.path);
    let left: Vec<_> = std::fs::read_dir(&folder).expect("the folder").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_store_records_its_applied_seq_soon_after_a_foreign_commit_and_its_rejections() {
    let db = initialised();
    let store = Options::new()
        .with_origin("judging")
        .open(&db.path)
        .expect("open");
    store
        .add_json_validator("limits.max", |value| match value.as_i64() {
            Some(max) if max >= 0 => Ok(()),
            _ => Err("max must be a non-negative integer".to_owned()),
        })
        .expect("add a validator");
    let seq = set(&db.path, "a.b", "5");
    wait_until("the record shows the foreign commit", || {
        own_consumer(&db.path, "judging").is_some_and(|consumer| consumer.applied_seq >= seq)
    });
    let refused = set(&db.path, "limits.max", "-1");
    wait_until("the record shows the rejection", || {
        own_consumer(&db.path, "judging").is_some_and(|consumer| {
            consumer.applied_seq >= refused
                && consumer
                    .rejected
                    .iter()
                    .any(|rejection| rejection.keys == ["limits.max"])
        })
    });
    let listed = status(&db.path, &[]);
    let entry = entry_of(&listed, std::process::id()).expect("listed");
    assert_eq!(
        entry["rejected"][0]["keys"],
        json!(["limits.max"]),
        "{entry}"
    );
    let table = cli_ok(&db.path, &["status"]);
    assert!(table.contains("limits.max"), "{table}");
    store.close().expect("close");
}

#[test]
fn read_only_stores_and_one_shot_commands_record_nothing() {
    let db = initialised();
    let writer = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .expect("open without a watcher");
    writer.set("a.b", &7).expect("set");
    let reader = Options::new()
        .read_only()
        .open(&db.path)
        .expect("open read-only");
    support::wait_for_watcher_checks(&reader, 2);
    cli_ok(&db.path, &["set", "a.b", "8"]);
    cli_ok(&db.path, &["get", "a.b"]);
    assert!(!livesettings::consumers_folder(&db.path).exists());
    assert!(livesettings::consumers(&db.path).expect("list").is_empty());
    drop((writer, reader));
}

/// The watcher check count once the start-up re-check schedule is over
/// (no change across a quarter of a second).
fn settled_checks(store: &Store) -> u64 {
    let mut last = store.stats().watcher_checks;
    let mut settled = None;
    let quiet = poll_until(TIMEOUT, || {
        // The observation window of "no change for a quarter of a second",
        // not a wait for something to happen: the loop ends on the first
        // quiet window, or the timeout.
        std::thread::sleep(Duration::from_millis(250));
        let now = store.stats().watcher_checks;
        let same = now == last;
        last = now;
        settled = Some(now);
        same
    });
    assert!(quiet, "the watcher never went quiet");
    settled.unwrap_or(last)
}

#[test]
fn heartbeats_of_other_stores_do_not_wake_a_watcher() {
    let db = initialised();
    // Keeps -wal and -shm in place, so the observer opens normally.
    let writer = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .expect("open a writer");
    writer.set("a.b", &1).expect("set");
    // Read-only: records nothing itself; a long safety poll, so every
    // check it runs comes from a file event.
    let observer = Options::new()
        .read_only()
        .with_watch(WatchMode::Events {
            safety_poll: Duration::from_secs(3600),
        })
        .open(&db.path)
        .expect("open an observer");
    let before = settled_checks(&observer);

    // Creating the records' folder (what the first consumer does) wakes
    // nobody: its name is none of the database's files.
    let folder = livesettings::consumers_folder(&db.path);
    assert!(!folder.exists());
    std::fs::create_dir(&folder).expect("create the consumers' folder");
    assert_eq!(
        settled_checks(&observer),
        before,
        "creating the folder woke it"
    );

    // Other stores opening touch the database's files (hints, which the
    // observer checks); their heartbeats afterwards touch only their
    // records. The quiet one records itself, but its heartbeats wait for
    // its own (hourly) wake-ups.
    let quiet = Options::new()
        .with_origin("quiet")
        .with_watch(WatchMode::Events {
            safety_poll: Duration::from_secs(3600),
        })
        .open(&db.path)
        .expect("open a quiet consumer");
    let beating = Options::new()
        .with_origin("beating")
        .open(&db.path)
        .expect("open");
    wait_until("the records", || {
        own_consumer(&db.path, "beating").is_some() && own_consumer(&db.path, "quiet").is_some()
    });
    let before = settled_checks(&observer);
    let quiet_before = settled_checks(&quiet);
    let mut heartbeats = Vec::new();
    wait_until("three more heartbeats", || {
        if let Some(consumer) = own_consumer(&db.path, "beating") {
            if heartbeats.last() != Some(&consumer.heartbeat) {
                heartbeats.push(consumer.heartbeat);
            }
        }
        heartbeats.len() >= 4
    });
    assert_eq!(
        observer.stats().watcher_checks,
        before,
        "the observer's watcher woke for another store's heartbeats"
    );
    assert_eq!(
        quiet.stats().watcher_checks,
        quiet_before,
        "a heartbeat woke the quiet store's watcher"
    );
    assert_eq!(
        own_consumer(&db.path, "quiet").map(|c| c.heartbeat_every),
        Some(Duration::from_secs(3600))
    );

    // It is awake: a commit wakes it.
    writer.set("a.b", &2).expect("set");
    wait_stats(&observer, "the observer applies the commit", |stats| {
        stats.applied_seq == writer.stats().applied_seq
    });
    beating.close().expect("close");
    quiet.close().expect("close");
}
