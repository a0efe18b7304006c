//! Helpers for the validation and history tests (issue 4): a temporary
//! database, the `sqlite3` shell as a foreign writer, reading the file with
//! a fresh connection, and bounded waits on subscription channels.
//!
//! Every wait is bounded by a deadline and returns as soon as the awaited
//! state is reached; nothing sleeps a fixed time to "let things settle".

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use livesettings::Event;
use serde_json::Value;

/// How long a test waits for something that should take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A temporary folder holding `settings.db`.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let path = dir.path().join("settings.db");
        TempDb { dir, path }
    }
}

/// Runs `sql` with the `sqlite3` shell in its own process (its own
/// connection, closed when it exits) and returns its stdout. Panics when the
/// shell reports an error.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg("-bail")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run the sqlite3 shell (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "sqlite3 {sql:?} failed ({}): {stderr}",
        output.status
    );
    stdout
}

/// A fresh connection on the file, independent of any store.
pub fn connect(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("open the database with rusqlite");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("set a busy timeout");
    conn
}

/// Every row of `settings`, as the file holds it, values parsed as JSON.
pub fn db_settings(db: &Path) -> BTreeMap<String, Value> {
    let conn = connect(db);
    let mut statement = conn
        .prepare("SELECT key, value FROM settings ORDER BY key")
        .expect("prepare");
    statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .expect("query settings")
        .map(|row| {
            let (key, text) = row.expect("read a settings row");
            let value = serde_json::from_str(&text).expect("stored values are JSON");
            (key, value)
        })
        .collect()
}

/// How many rows `settings_log` holds.
pub fn log_rows(db: &Path) -> i64 {
    connect(db)
        .query_row("SELECT count(*) FROM settings_log", [], |row| row.get(0))
        .expect("count the change log")
}

/// The stored value of `key` as the file holds it (fresh connection).
pub fn db_value(db: &Path, key: &str) -> Option<Value> {
    db_settings(db).remove(key)
}

/// Receives events until `pred` returns true for one (returned) or the
/// deadline passes (panic, listing what arrived). The events seen before it
/// are pushed to `seen`.
pub fn recv_until(
    events: &Receiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(event) => seen.push(event),
            Err(RecvTimeoutError::Timeout) => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; got {seen:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("channel closed while waiting for {what}; got {seen:#?}")
            }
        }
    }
}

/// Receives the next event, panicking after [`TIMEOUT`].
pub fn recv(events: &Receiver<Event>, what: &str) -> Event {
    events
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|error| panic!("no event for {what} within {TIMEOUT:?}: {error}"))
}

/// Polls `cond` (cheap, in-memory) until it holds or the deadline passes.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The VisionFlow fixture: `../shared/fixtures/visionflow-settings.json`
/// relative to the crate, else the copy in `examples/`.
pub fn fixture() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/fixtures/visionflow-settings.json");
    let path = if shared.exists() {
        shared
    } else {
        root.join("examples/visionflow-settings.json")
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("the fixture is JSON")
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
