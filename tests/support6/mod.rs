//! Helpers shared by the reliability suite (`convergence`, `crashes`,
//! `faults`, `hostile_input`): what the database file really holds, read
//! through a fresh connection, and bounded waits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use livesettings::Store;
use rusqlite::{Connection, OpenFlags};
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

    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Every `key → value` the `settings` table holds, read through a fresh
/// read-only connection (values parsed as JSON; unparsable text kept as a
/// JSON string so a comparison fails loudly).
pub fn db_contents(path: &Path) -> BTreeMap<String, Value> {
    try_db_contents(path).expect("read the settings table")
}

pub fn try_db_contents(path: &Path) -> rusqlite::Result<BTreeMap<String, Value>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut statement = conn.prepare("SELECT key, value FROM settings")?;
    let rows = statement.query_map([], |row| {
        let key: String = row.get(0)?;
        let text: String = row.get(1)?;
        Ok((key, text))
    })?;
    let mut map = BTreeMap::new();
    for row in rows {
        let (key, text) = row?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        map.insert(key, value);
    }
    Ok(map)
}

/// The store's snapshot as a plain ordered map.
pub fn store_map(store: &Store) -> BTreeMap<String, Value> {
    store
        .snapshot()
        .entries("")
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect()
}

/// Waits until `done` returns true, polling every few milliseconds; returns
/// false at the deadline.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Waits until the store's snapshot equals what the file holds; panics with
/// both maps when it does not within [`TIMEOUT`].
pub fn assert_converges(store: &Store, path: &Path, what: &str) {
    let mut last = (BTreeMap::new(), BTreeMap::new());
    let ok = wait_until(TIMEOUT, || {
        let Ok(db) = try_db_contents(path) else {
            return false;
        };
        let mine = store_map(store);
        let equal = db == mine;
        last = (db, mine);
        equal
    });
    assert!(
        ok,
        "{what}: the store did not converge to the database\n  db:    {:?}\n  store: {:?}",
        last.0, last.1
    );
}

/// `PRAGMA integrity_check` through a fresh connection.
pub fn integrity(path: &Path) -> String {
    let conn = Connection::open(path).expect("open for integrity_check");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

/// Whether the `settings` table still exists.
pub fn table_exists(path: &Path, table: &str) -> bool {
    let conn = Connection::open(path).expect("open");
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get::<_, i64>(0),
    )
    .expect("query sqlite_master")
        == 1
}

/// A full fingerprint of the database's interesting state: settings rows
/// and the number of change-log rows.
pub fn fingerprint(path: &Path) -> (BTreeMap<String, Value>, i64, bool) {
    let conn = Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let log: i64 = conn
        .query_row("SELECT count(*) FROM settings_log", [], |row| row.get(0))
        .expect("count log");
    (db_contents(path), log, table_exists(path, "settings"))
}
