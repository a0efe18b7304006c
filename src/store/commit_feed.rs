//! A commit subscription that can start from a past position, as an async
//! stream: what `livesettings serve`'s event stream reads. The replay of
//! the log and the live subscription are set up inside the engine, so they
//! meet with no gap and no duplicate (as [`Store::subscribe_after`]).

use std::sync::Arc;

use crate::async_api::EventStream;
use crate::db::change_log::newest_seq;
use crate::db::history::{oldest_seq, replay};
use crate::error::Result;
use crate::events::{Event, group_by_commit};
use crate::key::validate_prefix;
use crate::snapshot::Snapshot;
use crate::store::Store;

/// Where a [`CommitFeed`] starts.
#[derive(Debug)]
pub(crate) enum FeedStart {
    /// From the snapshot: the reader has nothing yet, or the log no longer
    /// holds the rows after its position (pruned), or its position is not
    /// this database's (beyond the newest seq).
    Snapshot {
        snapshot: Arc<Snapshot>,
        /// Why the reader must take a snapshot.
        reason: SnapshotReason,
    },
    /// From a past position: `backlog` holds the logged commits after it
    /// (grouped by runs of one source, as a pass groups foreign commits).
    Replay { backlog: Vec<Event> },
}

/// Why a feed starts from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotReason {
    /// The reader asked for no past position.
    Initial,
    /// The log was pruned past the reader's position.
    Compacted,
    /// The reader's position is beyond the newest seq of this database.
    UnknownSeq,
}

/// A commit subscription and where it starts.
#[derive(Debug)]
pub(crate) struct CommitFeed {
    pub(crate) start: FeedStart,
    /// Live commits after the start (skip those at or below `floor`).
    pub(crate) live: EventStream,
    /// Events at or below this seq are already covered by the start.
    pub(crate) floor: i64,
}

impl Store {
    /// Subscribes to commits at or below `prefix`, starting after `after`
    /// (replayed from the log) or from the current snapshot.
    pub(crate) fn commit_feed(&self, prefix: &str, after: Option<i64>) -> Result<CommitFeed> {
        validate_prefix(prefix)?;
        let core = &self.core;
        let subscribe =
            || EventStream::new(|waker| core.subscribers.add_waking(prefix, true, waker));
        // Inside the engine no pass publishes, so the snapshot (or the
        // replay, which ends at its seq) is exactly where live events begin.
        core.read("commit_feed", |tx, path| {
            let snapshot = core.view().load_full();
            let upto = snapshot.seq();
            let from_snapshot = |reason| {
                Ok(CommitFeed {
                    floor: upto,
                    live: subscribe(),
                    start: FeedStart::Snapshot {
                        snapshot: Arc::clone(&snapshot),
                        reason,
                    },
                })
            };
            let Some(after) = after else {
                return from_snapshot(SnapshotReason::Initial);
            };
            if after > newest_seq(tx, path)?.max(upto) {
                return from_snapshot(SnapshotReason::UnknownSeq);
            }
            let oldest = oldest_seq(tx, path)?;
            if after < upto && oldest.is_none_or(|oldest| after + 1 < oldest) {
                return from_snapshot(SnapshotReason::Compacted);
            }
            let rows = replay(tx, path, prefix, after, upto, &core.session)?;
            Ok(CommitFeed {
                floor: after.max(upto),
                live: subscribe(),
                start: FeedStart::Replay {
                    backlog: group_by_commit(&rows),
                },
            })
        })
    }
}
