//! What subscribers receive, and delivering it.

pub(crate) mod subscribers;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A write through this store.
    Local,
    /// Any other writer: another store, another process, the `sqlite3`
    /// shell, or a replaced database file.
    External,
}

impl Source {
    /// `"local"` or `"external"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::External => "external",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key's change, applied to the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// A change-log position at which the key held `new`: the seq of the
    /// last write to this key in the commit (or batch of foreign commits);
    /// for a full reload, or a section a validator accepted again after a
    /// rejection, the position the pass reflects.
    pub seq: i64,
    /// The dotted key.
    pub key: String,
    /// The value before, `None` when the key was created. Shared: every
    /// subscriber's copy of the event points at the snapshot's value.
    pub old: Option<Arc<Value>>,
    /// The value after, `None` when the key was removed (shared like
    /// `old`).
    pub new: Option<Arc<Value>>,
    /// Who wrote it.
    pub source: Source,
}

impl Change {
    /// The value before, `None` when the key was created.
    pub fn old_value(&self) -> Option<&Value> {
        self.old.as_deref()
    }

    /// The value after, `None` when the key was removed.
    pub fn new_value(&self) -> Option<&Value> {
        self.new.as_deref()
    }
}

/// Why the store reloaded every key instead of applying the change log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ReloadReason {
    /// Log rows after the applied position are missing (pruned or deleted).
    LogGap,
    /// The log restarted below the applied position (table wiped or recreated).
    LogReset,
    /// The change-log triggers were missing; they were recreated.
    TriggersMissing,
    /// The database schema changed (DDL by someone else).
    SchemaChanged,
    /// The schema version in the meta table changed.
    SchemaVersionChanged,
    /// A different file is at the path (replaced by rename, or recreated).
    FileReplaced,
    /// An earlier pass failed midway (an I/O error, a panicking callback);
    /// everything is reloaded to be sure nothing was skipped.
    Recovery,
}

/// Every reason, in a stable order (the order of
/// [`Stats::reloads_by_reason`](crate::Stats::reloads_by_reason)). Not
/// public: the enum is `#[non_exhaustive]`, so a list of "all" reasons
/// would change with every new one.
pub(crate) const RELOAD_REASONS: [ReloadReason; 7] = [
    ReloadReason::LogGap,
    ReloadReason::LogReset,
    ReloadReason::TriggersMissing,
    ReloadReason::SchemaChanged,
    ReloadReason::SchemaVersionChanged,
    ReloadReason::FileReplaced,
    ReloadReason::Recovery,
];

impl ReloadReason {
    /// A stable snake_case name, as printed by `watch --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadReason::LogGap => "log_gap",
            ReloadReason::LogReset => "log_reset",
            ReloadReason::TriggersMissing => "triggers_missing",
            ReloadReason::SchemaChanged => "schema_changed",
            ReloadReason::SchemaVersionChanged => "schema_version_changed",
            ReloadReason::FileReplaced => "file_replaced",
            ReloadReason::Recovery => "recovery",
        }
    }
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value in the database that the store refused to apply; the snapshot
/// keeps the last good value of the key.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The change-log position of the refused write; for a validator
    /// registered over stored values it refuses, the store's position then.
    pub seq: i64,
    /// The keys left at their last good value (or served from the
    /// fallback a registration chose).
    pub keys: Vec<String>,
    /// Why.
    pub reason: String,
}

/// The changes of one commit, delivered together to a commit subscriber
/// ([`Store::subscribe_commits`](crate::Store::subscribe_commits)): never
/// split, never merged with another source's.
///
/// A local commit is one `ChangeSet`. Foreign commits that a watcher pass
/// applies together (several can land between two passes) are coalesced
/// into one; a foreign commit is never split, since a pass reads every row
/// of it or none.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ChangeSet {
    /// The first and last change-log seq of the commit (or batch).
    pub seqs: (i64, i64),
    /// Who wrote it.
    pub source: Source,
    /// Its changes under the subscribed prefix, in seq order.
    pub changes: Vec<Change>,
}

/// One item of a subscription.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A key under the subscribed prefix changed.
    Change(Change),
    /// A commit's changes under the subscribed prefix, for a commit
    /// subscriber (which gets no [`Event::Change`]).
    Commit(ChangeSet),
    /// The store reloaded every key; the `Change` events of the reload follow.
    Reloaded {
        /// Why.
        reason: ReloadReason,
        /// The log position the reload reflects.
        seq: i64,
    },
    /// A foreign write was refused.
    Rejected(Rejection),
    /// The subscriber fell behind: its channel was full and events were
    /// dropped. Sent at once, as the last item in the channel. Read
    /// [`Store::snapshot`](crate::Store::snapshot) now to resynchronize (it
    /// reflects at least `seq`, and every event dropped until this notice was
    /// read), then keep reading: later events with a seq the snapshot
    /// already reflects can be skipped.
    Lagged {
        /// How many events were dropped before the notice was sent (more may
        /// have been dropped until it was read; the snapshot covers them).
        missed: u64,
        /// The position of the last event dropped before the notice.
        seq: i64,
    },
}

impl Event {
    /// The change-log position the event refers to.
    pub fn seq(&self) -> i64 {
        match self {
            Event::Change(change) => change.seq,
            Event::Commit(set) => set.seqs.1,
            Event::Reloaded { seq, .. } | Event::Lagged { seq, .. } => *seq,
            Event::Rejected(rejection) => rejection.seq,
        }
    }

    /// The change, when this is a [`Event::Change`].
    pub fn as_change(&self) -> Option<&Change> {
        match self {
            Event::Change(change) => Some(change),
            _ => None,
        }
    }
}

/// `events` (one publish, in seq order) with each run of changes from one
/// source made one [`Event::Commit`]. Other events keep their place by seq:
/// one that falls inside a run goes just before it (a commit's `seq()` is
/// its last seq), one after it closes the run.
pub(crate) fn group_by_commit(events: &[Event]) -> Vec<Event> {
    let mut grouped = Vec::new();
    let mut open: Option<ChangeSet> = None;
    for event in events {
        match event {
            Event::Change(change) => {
                if let Some(set) = open.as_mut().filter(|set| set.source == change.source) {
                    set.seqs.1 = change.seq;
                    set.changes.push(change.clone());
                    continue;
                }
                if let Some(set) = open.take() {
                    grouped.push(Event::Commit(set));
                }
                open = Some(ChangeSet {
                    seqs: (change.seq, change.seq),
                    source: change.source,
                    changes: vec![change.clone()],
                });
            }
            other => {
                if open.as_ref().is_some_and(|set| other.seq() > set.seqs.1) {
                    if let Some(set) = open.take() {
                        grouped.push(Event::Commit(set));
                    }
                }
                grouped.push(other.clone());
            }
        }
    }
    if let Some(set) = open {
        grouped.push(Event::Commit(set));
    }
    grouped
}
