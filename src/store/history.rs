//! The change log as history: reading it, reverting to it, resuming a
//! subscription from it, and pruning it (the SQL is in `db/history.rs`).

use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::db::change_log::newest_seq;
use crate::db::history::{
    HistoryEntry, PRUNE_BATCH, Retention, oldest_seq, prune_batch, read_entry, read_history,
    replay, values_as_of,
};
use crate::db::writes;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::key::{validate_key, validate_prefix};
use crate::snapshot::Snapshot;
use crate::store::{Commit, Store};

/// The outcome of [`Store::subscribe_after`].
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

impl Store {
    /// Subscribes from a past position: first the logged changes after
    /// `seq` under `prefix`, then live events, with no gap and no duplicate
    /// at the seam. When the log no longer holds the rows after `seq`
    /// (pruned), returns [`Resumed::Compacted`]: resynchronize from its
    /// snapshot, then read its live events. Events after the seam have a
    /// greater seq, except an [`Event::Rejected`] of a validator registered
    /// meanwhile, which carries the position it was registered at (see
    /// [`Store::add_validator`]).
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
    /// let Resumed::Replayed(events) = store.subscribe_after("a", first.seq)? else { panic!() };
    /// assert_eq!(events.recv()?.seq(), first.seq + 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_after(&self, prefix: &str, seq: i64) -> Result<Resumed> {
        validate_prefix(prefix)?;
        let core = &self.core;
        // Inside the engine no pass publishes, so the replay ends exactly
        // where live events begin.
        core.read("subscribe_after", |tx, path| {
            let snapshot = core.view().load_full();
            let upto = snapshot.seq();
            let newest = newest_seq(tx, path)?;
            let oldest = oldest_seq(tx, path)?;
            if seq > newest.max(upto) {
                return Err(Error::UnknownSeq { seq, oldest });
            }
            let pruned = seq < upto && oldest.is_none_or(|oldest| seq + 1 < oldest);
            if pruned {
                return Ok(Resumed::Compacted {
                    oldest: oldest.unwrap_or(upto + 1),
                    snapshot,
                    events: core.subscribers.add(prefix),
                });
            }
            // Ahead of the snapshot (a seq another process reported): no
            // replay, and nothing at or before `seq` from the live events.
            let backlog = replay(tx, path, prefix, seq, upto, &core.session)?;
            Ok(Resumed::Replayed(
                core.subscribers.add_after(prefix, backlog, seq),
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
        self.core.read("history", |tx, path| {
            read_history(tx, path, key, true, limit)
        })
    }

    /// The newest `limit` log rows for keys at or below `prefix`, oldest
    /// first.
    ///
    /// # Errors
    /// As [`Store::history`].
    pub fn section_history(&self, prefix: &str, limit: usize) -> Result<Vec<HistoryEntry>> {
        validate_prefix(prefix)?;
        self.core.read("section_history", |tx, path| {
            read_history(tx, path, prefix, false, limit)
        })
    }

    /// Undoes the change logged at `seq`: its key gets back the value it had
    /// before, as a new forward change (history is never rewritten).
    ///
    /// # Errors
    /// [`Error::UnknownSeq`] when `seq` is not in the log, plus the errors of
    /// [`Store::set`].
    pub fn revert(&self, seq: i64) -> Result<Commit> {
        let entry = self
            .core
            .read("revert", |tx, path| read_entry(tx, path, seq))?;
        let old = match &entry.old {
            Some(value) => Some(crate::value::to_stored_text(&entry.key, value)?),
            None => None,
        };
        self.commit("revert", |tx, snapshot| match &old {
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
        let path = self.core.path.clone();
        self.commit("revert_to", |tx, _| {
            writes::restore(tx, &values_as_of(tx, &path, seq)?)
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
            let path = self.core.path.clone();
            let (batch, _) = self
                .core
                .write("prune", true, |tx, _| prune_batch(tx, &path, retention))?;
            deleted += batch as u64;
            if batch < PRUNE_BATCH as usize {
                return Ok(deleted);
            }
        }
    }
}
