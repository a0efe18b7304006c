//! The past: the settings as of a change-log seq or a time, the
//! difference between two points, and named checkpoints. Everything is
//! computed from the current rows and the change log (each key's value as
//! of a seq is the `old` of its first later row), so it reaches back as
//! far as the log does: after [`Store::prune`], points before the oldest
//! row kept are refused with [`Error::UnknownSeq`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use imbl::OrdMap;
use rusqlite::Transaction;
use serde_json::Value;

use crate::db::change_log::{newest_seq, read_section};
use crate::db::checkpoints::{self, Checkpoint, validate_checkpoint_name};
use crate::db::history::{log_time, newest_seq_at, oldest_seq, values_as_of};
use crate::error::{Error, Result};
use crate::key::validate_key;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::store::plan::{PlannedChange, decode};

/// Every setting as of `seq` (the state after that commit), read in `tx`.
fn state_in(tx: &Transaction<'_>, path: &Path, seq: i64) -> Result<Snapshot> {
    let newest = newest_seq(tx, path)?;
    if seq < 0 || seq > newest {
        return Err(Error::UnknownSeq {
            seq,
            oldest: oldest_seq(tx, path)?,
        });
    }
    let mut entries: OrdMap<Arc<str>, Arc<Value>> =
        read_section(tx, path, "")?.into_iter().collect();
    for (key, old) in values_as_of(tx, path, seq)? {
        if validate_key(&key).is_err() {
            continue;
        }
        let key: Arc<str> = Arc::from(key.as_str());
        match old {
            Some(text) => {
                let value = decode(&key, text);
                entries.insert(key, Arc::new(value));
            }
            None => {
                entries.remove(&key);
            }
        }
    }
    Ok(Snapshot::new(seq, entries))
}

/// The per-key difference from `before` to `after`, by key.
fn difference(before: &Snapshot, after: &Snapshot) -> Vec<PlannedChange> {
    let mut keys: BTreeMap<&str, ()> = BTreeMap::new();
    for key in before.keys("").chain(after.keys("")) {
        keys.insert(key, ());
    }
    keys.into_keys()
        .filter_map(|key| {
            let old = before.get_json(key);
            let new = after.get_json(key);
            (old != new).then(|| PlannedChange {
                key: key.to_owned(),
                old: old.cloned(),
                new: new.cloned(),
            })
        })
        .collect()
}

/// The seq of the state at `time`, read in `tx` (see [`Store::seq_at`]).
fn seq_at_in(tx: &Transaction<'_>, path: &Path, time: &str) -> Result<i64> {
    let Some(at) = log_time(tx, path, time)? else {
        return Err(Error::InvalidValue {
            key: crate::error::shorten(time),
            reason: "not a time: give RFC 3339 (2026-12-02T03:50:00Z, \
                     2026-12-02T05:50:00.250+02:00) or the log's YYYY-MM-DDTHH:MM:SS.sssZ"
                .to_owned(),
        });
    };
    if let Some(seq) = newest_seq_at(tx, path, &at)? {
        return Ok(seq);
    }
    // Nothing logged at or before `time`: the empty state, if the log
    // still starts at the first change ever made.
    let oldest = oldest_seq(tx, path)?;
    let newest = newest_seq(tx, path)?;
    match oldest {
        Some(1) => Ok(0),
        None if newest == 0 => Ok(0),
        Some(oldest) => Err(Error::UnknownSeq {
            seq: oldest - 1,
            oldest: Some(oldest),
        }),
        None => Err(Error::UnknownSeq {
            seq: newest,
            oldest: None,
        }),
    }
}

impl Store {
    /// Every setting as it was right after the commit that wrote `seq` (0:
    /// before the first change), as a snapshot whose [`Snapshot::seq`] is
    /// `seq`. Values are the stored ones, before any validator or layer.
    ///
    /// # Errors
    /// [`Error::UnknownSeq`] when `seq` is beyond the newest change, or the
    /// log no longer reaches back to it (pruned; the error names the oldest
    /// seq kept).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// let first = store.set("app.port", &80)?;
    /// store.set("app.port", &8080)?;
    /// let then = store.state_at(first.seq)?;
    /// assert_eq!(then.get::<i64>("app.port")?, Some(80));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state_at(&self, seq: i64) -> Result<Snapshot> {
        self.core
            .read("state_at", |tx, path| state_in(tx, path, seq))
    }

    /// The per-key difference between the states at `from` and at `to`
    /// (`None`: now), sorted by key: keys added (`old` is `None`), removed
    /// (`new` is `None`) and changed.
    ///
    /// # Errors
    /// As [`Store::state_at`], for either point.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// let before = store.set("app.port", &80)?;
    /// store.set("app.host", &"example.org")?;
    /// let diff = store.diff(before.seq, None)?;
    /// assert_eq!(diff.len(), 1);
    /// assert!(diff[0].is_addition());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn diff(&self, from: i64, to: Option<i64>) -> Result<Vec<PlannedChange>> {
        self.core.read("diff", |tx, path| {
            let to = match to {
                Some(to) => to,
                None => newest_seq(tx, path)?,
            };
            let before = state_in(tx, path, from)?;
            let after = state_in(tx, path, to)?;
            Ok(difference(&before, &after))
        })
    }

    /// The seq whose state was current at `time` (RFC 3339, or the log's
    /// `YYYY-MM-DDTHH:MM:SS.sssZ`): the newest change logged at or before
    /// it, 0 when nothing was logged yet. Log rows are timed one by one, so
    /// a time that falls inside a long transaction can split it.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `time` is not a time;
    /// [`Error::UnknownSeq`] (its `seq` the newest pruned one, its `oldest`
    /// the oldest kept) when the log no longer reaches back to `time`.
    pub fn seq_at(&self, time: &str) -> Result<i64> {
        self.core
            .read("seq_at", |tx, path| seq_at_in(tx, path, time))
    }

    /// Reads a point in the change log: a seq (`42`), a checkpoint name
    /// (`before-deploy`) or a time (as [`Store::seq_at`]); returns its seq.
    /// A name that is both a checkpoint and a time (`2026-12-02`) is the
    /// checkpoint.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `point` is none of those (no such
    /// checkpoint), and the errors of [`Store::seq_at`].
    pub fn resolve_point(&self, point: &str) -> Result<i64> {
        if !point.is_empty() && point.bytes().all(|b| b.is_ascii_digit()) {
            return point.parse().map_err(|_| Error::InvalidValue {
                key: crate::error::shorten(point),
                reason: "not a seq (too large)".to_owned(),
            });
        }
        self.core.read("resolve_point", |tx, path| {
            if validate_checkpoint_name(point).is_ok() {
                if let Some(found) = checkpoints::get(tx, path, point)? {
                    return Ok(found.seq);
                }
            }
            if log_time(tx, path, point)?.is_some() {
                return seq_at_in(tx, path, point);
            }
            Err(Error::InvalidValue {
                key: crate::error::shorten(point),
                reason: "not a seq, a checkpoint (`livesettings checkpoint --list`) or a time"
                    .to_owned(),
            })
        })
    }

    /// Records the current position of the change log under `name`, for
    /// every process using the database. A name already in use is moved;
    /// returns the checkpoint and the seq the name held before, if any.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a bad name (1 to 64 bytes of
    /// `[A-Za-z0-9_.-]`, not all digits), and the errors of a write.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("app.port", &80)?;
    /// let (checkpoint, moved_from) = store.checkpoint("before-deploy")?;
    /// store.set("app.port", &8080)?;
    /// assert_eq!(moved_from, None);
    /// assert_eq!(store.resolve_point("before-deploy")?, checkpoint.seq);
    /// assert_eq!(store.state_at(checkpoint.seq)?.get::<i64>("app.port")?, Some(80));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self, name: &str) -> Result<(Checkpoint, Option<i64>)> {
        validate_checkpoint_name(name)?;
        let path = self.core.path.clone();
        let (recorded, _) = self.core.write("checkpoint", true, |tx, _| {
            let seq = newest_seq(tx, &path)?;
            let before = checkpoints::put(tx, &path, name, seq)?;
            let now = checkpoints::get(tx, &path, name)?;
            Ok(now.map(|now| (now, before)))
        })?;
        recorded.ok_or_else(|| Error::Unusable {
            path: self.core.path.clone(),
            reason: format!("the checkpoint '{name}' was not recorded"),
        })
    }

    /// Every checkpoint, oldest seq first.
    ///
    /// # Errors
    /// An error reading the database.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.core
            .read("checkpoints", |tx, path| checkpoints::list(tx, path))
    }

    /// Deletes the checkpoint `name`; returns whether there was one.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a bad name, and the errors of a write.
    pub fn delete_checkpoint(&self, name: &str) -> Result<bool> {
        validate_checkpoint_name(name)?;
        let path = self.core.path.clone();
        let (deleted, _) = self.core.write("delete_checkpoint", true, |tx, _| {
            checkpoints::delete(tx, &path, name)
        })?;
        Ok(deleted)
    }
}
