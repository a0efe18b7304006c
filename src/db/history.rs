//! The change log as history: the SQL behind `history`, `revert`,
//! `subscribe_after` and `prune`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Transaction};
use serde_json::Value;

use crate::db::change_log::{UNDER_PREFIX, newest_seq};
use crate::error::{Error, Result, SqliteContext};
use crate::events::{Change, Event, Source};

/// One row of the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    /// The change-log sequence number.
    pub seq: i64,
    /// The key.
    pub key: String,
    /// The value before (`None`: the key was created).
    pub old: Option<Value>,
    /// The value after (`None`: the key was removed).
    pub new: Option<Value>,
    /// When, as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub at: String,
    /// Who: a store's origin name, or `external` for any other writer.
    pub origin: String,
}

impl HistoryEntry {
    /// The value before (`None`: the key was created).
    pub fn old_value(&self) -> Option<&Value> {
        self.old.as_ref()
    }

    /// The value after (`None`: the key was removed).
    pub fn new_value(&self) -> Option<&Value> {
        self.new.as_ref()
    }
}

/// How much of the change log to keep; see [`Store::prune`](crate::Store::prune).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of the newest rows.
    pub keep_last: Option<u64>,
    /// Remove rows older than this.
    pub max_age: Option<Duration>,
}

/// Rows deleted per pruning transaction, so a writer waits briefly at most.
pub(crate) const PRUNE_BATCH: i64 = 500;

const COLUMNS: &str = "seq, key, old, new, at, origin";

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let parse = |text: Option<String>| {
        text.map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)))
    };
    Ok(HistoryEntry {
        seq: row.get(0)?,
        key: row.get(1)?,
        old: parse(row.get(2)?),
        new: parse(row.get(3)?),
        at: row.get(4)?,
        origin: row.get(5)?,
    })
}

/// The newest `limit` rows for keys at or below `prefix` (exactly `key` when
/// `exact`), oldest first.
pub(crate) fn read_history(
    conn: &Connection,
    path: &Path,
    prefix: &str,
    exact: bool,
    limit: usize,
) -> Result<Vec<HistoryEntry>> {
    let filter = if exact { "key = ?1" } else { UNDER_PREFIX };
    let sql =
        format!("SELECT {COLUMNS} FROM settings_log WHERE {filter} ORDER BY seq DESC LIMIT ?2");
    let mut statement = conn
        .prepare_cached(&sql)
        .context(path, "cannot read the history")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement
        .query_map((prefix, limit), entry)
        .context(path, "cannot read the history")?;
    let mut entries = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .context(path, "cannot read the history")?;
    entries.reverse();
    Ok(entries)
}

/// One row by seq.
pub(crate) fn read_entry(conn: &Connection, path: &Path, seq: i64) -> Result<HistoryEntry> {
    let sql = format!("SELECT {COLUMNS} FROM settings_log WHERE seq = ?1");
    let found = conn
        .prepare_cached(&sql)
        .and_then(|mut statement| statement.query_map([seq], entry)?.next().transpose())
        .context(path, "cannot read the change log")?;
    match found {
        Some(entry) => Ok(entry),
        None => Err(Error::UnknownSeq {
            seq,
            oldest: oldest_seq(conn, path)?,
        }),
    }
}

/// The oldest seq still in the log.
pub(crate) fn oldest_seq(conn: &Connection, path: &Path) -> Result<Option<i64>> {
    conn.query_row("SELECT min(seq) FROM settings_log", [], |row| row.get(0))
        .context(path, "cannot read the change log")
}

/// For each key changed after `seq`, its value as of `seq` (the `old` of its
/// first later row; `None` when it did not exist then).
pub(crate) fn values_as_of(
    tx: &Transaction<'_>,
    path: &Path,
    seq: i64,
) -> Result<Vec<(String, Option<String>)>> {
    let oldest = oldest_seq(tx, path)?;
    let newest = newest_seq(tx, path)?;
    if seq < newest && oldest.is_none_or(|oldest| seq + 1 < oldest) {
        return Err(Error::UnknownSeq { seq, oldest });
    }
    let mut statement = tx
        .prepare_cached(
            "SELECT key, old FROM settings_log WHERE seq IN \
             (SELECT min(seq) FROM settings_log WHERE seq > ?1 GROUP BY key) ORDER BY seq",
        )
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map([seq], |row| Ok((row.get(0)?, row.get(1)?)))
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}

/// The logged changes after `after` up to `upto` under `prefix`, as events.
pub(crate) fn replay(
    conn: &Connection,
    path: &Path,
    prefix: &str,
    after: i64,
    upto: i64,
    own_session: &str,
) -> Result<Vec<Event>> {
    let sql = format!(
        "SELECT {COLUMNS}, session FROM settings_log WHERE seq > ?2 AND seq <= ?3 \
         AND {UNDER_PREFIX} ORDER BY seq"
    );
    let mut statement = conn
        .prepare_cached(&sql)
        .context(path, "cannot replay the change log")?;
    let rows = statement
        .query_map((prefix, after, upto), |row| {
            Ok((entry(row)?, row.get::<_, Option<String>>(6)?))
        })
        .context(path, "cannot replay the change log")?;
    rows.map(|row| {
        row.map(|(entry, session)| {
            Event::Change(Change {
                seq: entry.seq,
                source: if session.as_deref() == Some(own_session) {
                    Source::Local
                } else {
                    Source::External
                },
                key: entry.key,
                old: entry.old.map(std::sync::Arc::new),
                new: entry.new.map(std::sync::Arc::new),
            })
        })
    })
    .collect::<rusqlite::Result<_>>()
    .context(path, "cannot replay the change log")
}

/// Deletes one batch of rows outside `retention`; returns how many.
pub(crate) fn prune_batch(
    tx: &Transaction<'_>,
    path: &Path,
    retention: Retention,
) -> Result<usize> {
    let keep_last = retention
        .keep_last
        .map_or(-1, |keep| i64::try_from(keep).unwrap_or(i64::MAX));
    let max_age = retention.max_age.map_or(-1.0, |age| age.as_secs_f64());
    tx.prepare_cached(
        "DELETE FROM settings_log WHERE seq IN (SELECT seq FROM settings_log WHERE \
           (?1 >= 0 AND seq <= (SELECT max(seq) FROM settings_log) - ?1) \
           OR (?2 >= 0 AND at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?2 || ' seconds')) \
         ORDER BY seq LIMIT ?3)",
    )
    .and_then(|mut statement| statement.execute((keep_last, max_age, PRUNE_BATCH)))
    .context(path, "cannot prune the change log")
}

/// A log row's key, old and new value as stored text.
pub(crate) type RowText = (String, Option<String>, Option<String>);

/// The log rows from `first` on as `(key, old, new)` text, in seq order:
/// what the current write transaction wrote (it holds the write lock).
pub(crate) fn rows_from(tx: &Transaction<'_>, path: &Path, first: i64) -> Result<Vec<RowText>> {
    let mut statement = tx
        .prepare_cached("SELECT key, old, new FROM settings_log WHERE seq >= ?1 ORDER BY seq")
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map([first], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}

/// `time` (RFC 3339, or the log's own `YYYY-MM-DDTHH:MM:SS.sssZ`) in the
/// log's format, UTC; `None` when SQLite cannot read it as a time.
pub(crate) fn log_time(conn: &Connection, path: &Path, time: &str) -> Result<Option<String>> {
    conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1)", [time], |row| {
        row.get(0)
    })
    .context(path, "cannot read a time")
}

/// The newest seq logged at or before `at` (a time in the log's format).
pub(crate) fn newest_seq_at(conn: &Connection, path: &Path, at: &str) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT max(seq) FROM settings_log WHERE at <= ?1",
        [at],
        |row| row.get(0),
    )
    .context(path, "cannot read the change log")
}
