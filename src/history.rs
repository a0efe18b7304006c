//! The change log as history: reading it, reverting to it, resuming a
//! subscription from it, and pruning it: the SQL and the `Store` methods
//! over it.

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use crossbeam_channel::Receiver;
use rusqlite::{Connection, Transaction};
use serde_json::Value;

use crate::error::{Error, Result, SqliteContext};
use crate::events::{Change, Event, Source};
use crate::key::{validate_key, validate_prefix};
use crate::snapshot::Snapshot;
use crate::store::{Commit, Store};
use crate::writes;

/// The outcome of [`Store::subscribe_from`].
#[derive(Debug)]
pub enum Resumed {
    /// The logged changes after the requested seq are queued first, then
    /// live events follow.
    Replayed(Receiver<Event>),
    /// The log was pruned past the requested seq: start from `snapshot`,
    /// then read `events` (live changes after the snapshot).
    Compacted {
        /// The oldest seq the log still holds.
        oldest: i64,
        /// Every setting, as of the moment live events start.
        snapshot: Arc<Snapshot>,
        /// Live events after `snapshot`.
        events: Receiver<Event>,
    },
}

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
    let filter = if exact {
        "key = ?1"
    } else {
        "(?1 = '' OR key = ?1 OR (key >= ?1 || '.' AND key < ?1 || '/'))"
    };
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
    let newest: i64 = tx
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'settings_log'), 0)",
            [],
            |row| row.get(0),
        )
        .context(path, "cannot read the change log")?;
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
         AND (?1 = '' OR key = ?1 OR (key >= ?1 || '.' AND key < ?1 || '/')) ORDER BY seq"
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
                old: entry.old,
                new: entry.new,
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

impl Store {
    /// Subscribes from a past position: first the logged changes after
    /// `seq` under `prefix`, then live events, with no gap and no duplicate
    /// at the seam. When the log no longer holds the rows after `seq`
    /// (pruned), returns [`Resumed::Compacted`]: resynchronize from its
    /// snapshot, then read its live events.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], or an error reading the log.
    ///
    /// ```
    /// use livesettings::Resumed;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// let first = store.set("a.x", &1)?;
    /// store.set("a.x", &2)?;
    /// let Resumed::Replayed(events) = store.subscribe_from("a", first.seq)? else { panic!() };
    /// assert_eq!(events.recv()?.seq(), first.seq + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_from(&self, prefix: &str, seq: i64) -> Result<Resumed> {
        validate_prefix(prefix)?;
        let shared = &self.shared;
        // Under the applier lock no pass publishes, so the replay ends
        // exactly where live events begin.
        shared.with_applier_locked(|conn| {
            let snapshot = shared.snapshot.load_full();
            let upto = snapshot.seq();
            let oldest = oldest_seq(conn, &shared.path)?;
            let pruned = seq < upto && oldest.is_none_or(|oldest| seq + 1 < oldest);
            if pruned {
                return Ok(Resumed::Compacted {
                    oldest: oldest.unwrap_or(upto + 1),
                    snapshot,
                    events: shared.subscribers.add(prefix),
                });
            }
            let backlog = replay(conn, &shared.path, prefix, seq, upto, &shared.session)?;
            Ok(Resumed::Replayed(
                shared.subscribers.add_after(prefix, backlog),
            ))
        })
    }

    /// The change history of `key`: its newest `limit` log rows, oldest
    /// first.
    ///
    /// # Errors
    /// An error reading the log.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("a.x", &1)?;
    /// store.set("a.x", &2)?;
    /// let history = store.history("a.x", 10)?;
    /// assert_eq!(history.len(), 2);
    /// assert_eq!(history[1].old, Some(serde_json::json!(1)));
    /// assert_eq!(history[1].origin, "livesettings");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn history(&self, key: &str, limit: usize) -> Result<Vec<HistoryEntry>> {
        validate_key(key)?;
        self.shared
            .read(|conn, path| read_history(conn, path, key, true, limit))
    }

    /// The newest `limit` log rows for keys at or below `prefix`, oldest
    /// first.
    ///
    /// # Errors
    /// As [`Store::history`].
    pub fn history_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<HistoryEntry>> {
        validate_prefix(prefix)?;
        self.shared
            .read(|conn, path| read_history(conn, path, prefix, false, limit))
    }

    /// Undoes the change logged at `seq`: its key gets back the value it had
    /// before, as a new forward change (history is never rewritten).
    ///
    /// # Errors
    /// [`Error::UnknownSeq`] when `seq` is not in the log, plus the errors of
    /// [`Store::set`].
    pub fn revert(&self, seq: i64) -> Result<Commit> {
        let entry = self.shared.read(|conn, path| read_entry(conn, path, seq))?;
        let old = match &entry.old {
            Some(value) => Some(crate::tree::to_stored_text(&entry.key, value)?),
            None => None,
        };
        self.commit(|tx, snapshot| match &old {
            Some(text) => {
                writes::check_placement(snapshot, std::iter::once(entry.key.as_str()))?;
                writes::upsert(tx, &entry.key, text)
            }
            None => writes::delete_key(tx, &entry.key),
        })
    }

    /// Restores every key to its value as of `seq`, as new forward changes
    /// in one transaction.
    ///
    /// # Errors
    /// [`Error::UnknownSeq`] when the log no longer reaches back to `seq`.
    pub fn revert_to(&self, seq: i64) -> Result<Commit> {
        let path = self.shared.path.clone();
        self.commit(|tx, _| {
            for (key, old) in values_as_of(tx, &path, seq)? {
                match old {
                    Some(text) => writes::upsert(tx, &key, &text)?,
                    None => writes::delete_key(tx, &key)?,
                }
            }
            Ok(())
        })
    }

    /// Deletes change-log rows outside `retention`, in batches of a few
    /// hundred rows per transaction so writers are never blocked for long.
    /// Other stores whose position is older than what remains take the
    /// full-reload path and converge. Returns how many rows were deleted.
    ///
    /// # Errors
    /// [`Error::Busy`], [`Error::DatabaseMissing`].
    pub fn prune(&self, retention: Retention) -> Result<u64> {
        let mut deleted = 0u64;
        loop {
            let path = self.shared.path.clone();
            let (batch, _) = self
                .shared
                .write(|tx, _| prune_batch(tx, &path, retention))?;
            deleted += batch as u64;
            if batch < PRUNE_BATCH as usize {
                return Ok(deleted);
            }
        }
    }
}
