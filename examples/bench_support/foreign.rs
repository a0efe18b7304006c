//! Foreign commit → change event.
//!
//! A separate Python process commits single-key updates 20 ms apart through
//! its own `sqlite3` module (SQLite 3.40, `synchronous=FULL` as shipped) and
//! notes `time.time_ns()` (CLOCK_REALTIME) right after each commit returns;
//! it prints the notes when done, so its output does not disturb the run.
//! The receiving side notes `SystemTime::now()` (the same clock) when the
//! value reaches it. The delay of commit *i* is the first arrival of a value
//! ≥ *i* minus the commit time (a coalesced commit counts as seen with the
//! later one).
//!
//! Receivers: a store subscriber (`Store::subscribe(key)`, default options:
//! file events + `data_version`), and the baseline reloader: its own
//! connection polls `PRAGMA data_version` every 1 ms and, on a change,
//! re-reads every row (`SELECT key, value FROM settings`), parses the values
//! and diffs them against its `HashMap`, the design this crate replaces
//! (with the WAL blind spot fixed and no debounce).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use livesettings::Event;
use serde_json::Value;

use super::{Config, Golden, Row, Samples, faster, fresh_copy, ns, progress, realtime_ns, target};
use crate::support;

const WRITER: &str = r#"
import sqlite3, sys, time
db, key, count, interval, mode, first = sys.argv[1:7]
count, interval, first = int(count), float(interval), int(first)
kept = sqlite3.connect(db, isolation_level=None, timeout=5) if mode == "open" else None
print("ready", flush=True)
sys.stdin.readline()
notes = []
began = time.monotonic()
for i in range(count):
    pause = began + i * interval - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    conn = kept or sqlite3.connect(db, isolation_level=None, timeout=5)
    conn.execute("UPDATE settings SET value = ? WHERE key = ?", (str(first + i), key))
    notes.append((first + i, time.time_ns()))
    if kept is None:
        conn.close()
if kept is not None:
    kept.close()
for value, at in notes:
    print(value, at)
print("done", flush=True)
"#;

/// How the foreign writer connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// A new connection per commit.
    PerCommit,
    /// One connection kept open.
    KeptOpen,
}

impl Writer {
    fn arg(self) -> &'static str {
        match self {
            Writer::PerCommit => "per-commit",
            Writer::KeptOpen => "open",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Writer::PerCommit => "writer opens a connection per commit",
            Writer::KeptOpen => "writer keeps its connection open",
        }
    }
}

/// Commit → receive delays in ns, and how many commits were never seen.
pub struct Delays {
    pub samples: Samples,
    pub missed: usize,
    /// Watcher checks (a `stat` + `PRAGMA data_version` each) per commit,
    /// for the store.
    pub checks_per_commit: Option<f64>,
}

const FIRST: i64 = 1_000_000;

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn(cfg: &Config, db: &Path, key: &str, writer: Writer) -> Process {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(WRITER)
        .arg(db)
        .arg(key)
        .arg(cfg.commits.to_string())
        .arg(cfg.commit_interval.as_secs_f64().to_string())
        .arg(writer.arg())
        .arg(FIRST.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with its sqlite3 module is needed for the foreign writer");
    let stdin = child.stdin.take().expect("writer stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("writer stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("writer ready line");
    assert_eq!(line.trim(), "ready", "the writer did not start");
    Process {
        child,
        stdin,
        stdout,
    }
}

impl Process {
    fn go(&mut self) {
        self.stdin.write_all(b"go\n").expect("start the writer");
        self.stdin.flush().expect("start the writer");
    }

    /// Waits for the writer and returns its (value, commit time) notes.
    fn finish(mut self) -> Vec<(i64, i128)> {
        let mut notes = Vec::new();
        for line in (&mut self.stdout).lines() {
            let line = line.expect("writer output");
            if line == "done" {
                break;
            }
            let mut fields = line.split_whitespace();
            let value = fields.next().and_then(|v| v.parse().ok());
            let at = fields.next().and_then(|v| v.parse().ok());
            if let (Some(value), Some(at)) = (value, at) {
                notes.push((value, at));
            }
        }
        let status = self.child.wait().expect("writer exit");
        assert!(status.success(), "the writer failed: {status}");
        notes
    }
}

fn delays(commits: &[(i64, i128)], arrivals: &[(i64, i128)]) -> Delays {
    let mut next = 0;
    let mut samples = Vec::with_capacity(commits.len());
    let mut missed = 0;
    for &(value, committed) in commits {
        while next < arrivals.len() && arrivals[next].0 < value {
            next += 1;
        }
        match arrivals.get(next) {
            Some(&(_, arrived)) => samples.push((arrived - committed) as f64),
            None => missed += 1,
        }
    }
    Delays {
        samples: Samples::new(samples),
        missed,
        checks_per_commit: None,
    }
}

fn last_value(cfg: &Config) -> i64 {
    FIRST + cfg.commits as i64 - 1
}

pub fn through_store(cfg: &Config, db: &Path, key: &str, writer: Writer) -> Delays {
    let store = support::open_store(db);
    let events = store.subscribe(key).expect("subscribe");
    let mut process = spawn(cfg, db, key, writer);
    let checks_before = store.stats().watcher_checks;
    let last = last_value(cfg);
    let receiver = std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        while let Ok(event) = events.recv_timeout(Duration::from_secs(5)) {
            let Event::Change(change) = event else {
                continue;
            };
            let arrived = realtime_ns();
            if let Some(value) = change.new_value().and_then(Value::as_i64) {
                arrivals.push((value, arrived));
                if value >= last {
                    break;
                }
            }
        }
        arrivals
    });
    process.go();
    let commits = process.finish();
    let arrivals = receiver.join().expect("receiver thread");
    let checks = store.stats().watcher_checks - checks_before;
    store.close().expect("close");
    let mut delays = delays(&commits, &arrivals);
    delays.checks_per_commit = Some(checks as f64 / commits.len().max(1) as f64);
    delays
}

fn load_all(conn: &rusqlite::Connection) -> HashMap<String, Value> {
    let mut statement = conn
        .prepare_cached("SELECT key, value FROM settings")
        .expect("prepare");
    let rows = statement
        .query_map([], |row| {
            let key: String = row.get(0)?;
            let text = row.get_ref(1)?.as_str()?;
            Ok((key, serde_json::from_str(text).unwrap_or(Value::Null)))
        })
        .expect("query");
    rows.map(|row| row.expect("row")).collect()
}

fn through_reloader(cfg: &Config, db: &Path, key: &str, writer: Writer) -> Delays {
    let stop = AtomicBool::new(false);
    let (ready, started) = mpsc::channel();
    let last = last_value(cfg);
    std::thread::scope(|scope| {
        let reloader = scope.spawn(|| {
            let conn = rusqlite::Connection::open(db).expect("reloader connection");
            let version = |conn: &rusqlite::Connection| -> i64 {
                conn.query_row("PRAGMA data_version", [], |row| row.get(0))
                    .expect("data_version")
            };
            let mut map = load_all(&conn);
            let mut seen = version(&conn);
            ready.send(()).expect("ready");
            let mut arrivals = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                let now = version(&conn);
                if now == seen {
                    continue;
                }
                seen = now;
                let fresh = load_all(&conn);
                let mut changed = Vec::new();
                for (name, value) in &fresh {
                    if map.get(name) != Some(value) {
                        changed.push(name.as_str());
                    }
                }
                changed.extend(
                    map.keys()
                        .filter(|name| !fresh.contains_key(*name))
                        .map(String::as_str),
                );
                let target = changed
                    .contains(&key)
                    .then(|| fresh.get(key).and_then(Value::as_i64))
                    .flatten();
                drop(changed);
                map = fresh;
                if let Some(value) = target {
                    arrivals.push((value, realtime_ns()));
                    if value >= last {
                        break;
                    }
                }
            }
            arrivals
        });
        started.recv().expect("reloader started");
        let mut process = spawn(cfg, db, key, writer);
        process.go();
        let commits = process.finish();
        // Give the reloader time for its last pass, then stop it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !reloader.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let arrivals = reloader.join().expect("reloader thread");
        delays(&commits, &arrivals)
    })
}

fn key_for(golden: &Golden) -> String {
    let names = support::graph_names(&golden.leaves);
    let name = if golden.keys <= 1_000 {
        "logseq"
    } else {
        &names[names.len() / 2]
    };
    format!("visualisation.graphs.{name}.physics.damping")
}

pub fn rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    for writer in [Writer::PerCommit, Writer::KeptOpen] {
        let mut small_median = f64::NAN;
        for golden in [small, large] {
            let key = key_for(golden);
            progress(format!(
                "foreign commits at {} keys, {}: store",
                golden.keys,
                writer.describe()
            ));
            let db = fresh_copy(&golden.path, &cfg.workdir, "foreign-store");
            let ours = through_store(cfg, &db, &key, writer);
            progress("… baseline reloader");
            let db = fresh_copy(&golden.path, &cfg.workdir, "foreign-reloader");
            let base = through_reloader(cfg, &db, &key, writer);

            let median = ours.samples.median();
            let p99 = ours.samples.p99();
            let mut goal = "median ≤ 0.5 ms, p99 ≤ 2 ms".to_owned();
            let mut met = median <= 0.5e6 && p99 <= 2e6 && ours.missed == 0;
            if golden.keys == small.keys {
                small_median = median;
            } else {
                let allowed = (small_median * 1.5).max(small_median + 0.3e6);
                goal.push_str(&format!(
                    ", ≤ {} (1.5× or +0.3 ms of the {}-key median)",
                    ns(allowed),
                    small.keys
                ));
                met &= median <= allowed;
            }
            let missed = |delays: &Delays| {
                if delays.missed > 0 {
                    format!(", {} never seen", delays.missed)
                } else {
                    String::new()
                }
            };
            rows.push(
                Row::new(
                    "foreign commit → event",
                    format!(
                        "{} keys, {} ({} commits {} ms apart{}; {:.1} watcher checks per commit)",
                        golden.keys,
                        writer.describe(),
                        ours.samples.len() + ours.missed,
                        cfg.commit_interval.as_millis(),
                        missed(&ours),
                        ours.checks_per_commit.unwrap_or(f64::NAN)
                    ),
                )
                .ours(ns(median), ns(p99))
                .baseline(
                    format!(
                        "reloader: `data_version` poll every 1 ms, re-read all rows + diff{}",
                        missed(&base)
                    ),
                    ns(base.samples.median()),
                    ns(base.samples.p99()),
                )
                .ratio(faster(median, base.samples.median()))
                .target(target(goal, met)),
            );
        }
    }
}
