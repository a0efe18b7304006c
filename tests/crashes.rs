//! A writer process killed with SIGKILL at random points of its write loop,
//! at least 50 times: the file stays intact, every write the process
//! reported as committed is there, each transaction is all-or-nothing, a
//! store that stayed open throughout converges, and a store reopened on the
//! file equals what it holds.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livesettings::{Options, WatchMode};
use serde_json::{Value, json};
use support::{Rng, TempDb, db_contents, integrity, store_map, wait_converged};

/// Keys each transaction of the writer sets to the same counter value.
const KEYS: usize = 20;

/// Commits `UPDATE settings SET value = ?` for every `crash.kN` in one
/// transaction per counter value, printing the value after each commit.
const WRITER: &str = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
keys = ["crash.k%d" % i for i in range(int(sys.argv[3]))]
i = int(sys.argv[2])
print("ready", flush=True)
while True:
    i += 1
    conn.execute("BEGIN IMMEDIATE")
    for k in keys:
        conn.execute("UPDATE settings SET value = ? WHERE key = ?", (str(i), k))
    conn.execute("COMMIT")
    print(i, flush=True)
"#;

fn kills() -> usize {
    std::env::var("LIVESETTINGS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

#[test]
fn a_writer_killed_at_random_points_loses_nothing_it_reported() {
    let db = TempDb::new();
    let watched = Options::new().open(&db.path).unwrap();
    let mut seed = Value::Object(Default::default());
    for i in 0..KEYS {
        seed[format!("crash.k{i}")] = json!(0);
    }
    // flat keys with dots: merge splits them into sections.
    watched.merge(&seed).unwrap();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash seed {seed}");
    let mut rng = Rng::new(seed);
    let mut counter = 0i64;
    let mut total_reported = 0usize;
    let mut killed_mid_run = 0usize;
    let runs = kills();
    for run in 0..runs {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(WRITER)
            .arg(&db.path)
            .arg(counter.to_string())
            .arg(KEYS.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).unwrap(),
            "ready",
            "run {run}"
        );
        // The random kill point inside the write loop: this delay is the
        // experiment itself, not a wait for something to happen.
        let delay = Duration::from_millis(5 + rng.next() % 46);
        std::thread::sleep(delay);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let reported: Vec<i64> = rx.try_iter().map(|l| l.parse().unwrap()).collect();
        if status.code().is_none() {
            killed_mid_run += 1;
        }
        total_reported += reported.len();
        let last_reported = reported.last().copied().unwrap_or(counter);

        assert_eq!(integrity(&db.path), "ok", "run {run}");
        let contents = db_contents(&db.path);
        let values: Vec<i64> = (0..KEYS)
            .map(|i| contents[&format!("crash.k{i}")].as_i64().unwrap())
            .collect();
        let stored = values[0];
        assert!(
            values.iter().all(|v| *v == stored),
            "run {run}: a transaction was torn: {values:?}"
        );
        assert!(
            stored >= last_reported,
            "run {run}: reported {last_reported} committed, the file holds {stored}"
        );
        assert!(
            stored <= last_reported + 1,
            "run {run}: the file holds {stored}, only {last_reported} (+1 unreported) was written"
        );
        counter = stored;
        wait_converged(&watched, &format!("run {run}"));

        // A store opened now equals the file.
        if run % 10 == 0 || run + 1 == runs {
            let fresh = Options::new()
                .with_watch(WatchMode::Off)
                .open(&db.path)
                .unwrap();
            assert_eq!(store_map(&fresh), db_contents(&db.path), "run {run}");
            fresh.close().unwrap();
        }
    }
    eprintln!(
        "{runs} runs, {killed_mid_run} killed by SIGKILL, {total_reported} commits reported, final counter {counter}"
    );
    assert!(
        killed_mid_run >= 50.min(runs),
        "only {killed_mid_run} kills"
    );
    assert!(total_reported > 0, "the writer never committed");
    assert_eq!(watched.get::<i64>("crash.k0").unwrap(), Some(counter));
}
