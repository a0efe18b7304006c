//! Counters that say what the store has been doing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::events::{RELOAD_REASONS, ReloadReason};

/// A copy of the store's counters, from [`Store::stats`](crate::Store::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The change-log position the snapshot reflects.
    pub applied_seq: i64,
    /// Keys in the snapshot.
    pub keys: usize,
    /// Write transactions committed through this store.
    pub local_commits: u64,
    /// Passes that applied foreign changes from the change log.
    pub external_applies: u64,
    /// Keys changed by foreign writers (granular and reload).
    pub external_changes: u64,
    /// Full reloads, in total.
    pub full_reloads: u64,
    /// Full reloads by reason, in a stable order (every reason, also those never seen).
    pub reloads_by_reason: Vec<(ReloadReason, u64)>,
    /// Foreign values refused (undecodable or failing validation).
    pub rejected_values: u64,
    /// Watcher checks that failed (locked, missing or corrupt file).
    pub watcher_errors: u64,
    /// Watcher checks run (a `stat` and a `PRAGMA data_version` each).
    pub watcher_checks: u64,
    /// Events dropped because a subscriber's channel was full.
    pub events_dropped: u64,
    /// How long the last apply (granular or full) took.
    pub last_apply: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) local_commits: AtomicU64,
    pub(crate) external_applies: AtomicU64,
    pub(crate) external_changes: AtomicU64,
    pub(crate) reloads: [AtomicU64; RELOAD_REASONS.len()],
    pub(crate) rejected_values: AtomicU64,
    pub(crate) watcher_errors: AtomicU64,
    pub(crate) watcher_checks: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) last_apply_nanos: AtomicU64,
    pub(crate) applied_seq: AtomicI64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn count_reload(&self, reason: ReloadReason) {
        let at = RELOAD_REASONS
            .iter()
            .position(|known| *known == reason)
            .unwrap_or(0);
        Self::bump(&self.reloads[at], 1);
    }

    pub(crate) fn snapshot(&self, keys: usize) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let reloads_by_reason: Vec<(ReloadReason, u64)> = RELOAD_REASONS
            .iter()
            .zip(&self.reloads)
            .map(|(reason, count)| (*reason, load(count)))
            .collect();
        Stats {
            applied_seq: self.applied_seq.load(Ordering::Relaxed),
            keys,
            local_commits: load(&self.local_commits),
            external_applies: load(&self.external_applies),
            external_changes: load(&self.external_changes),
            full_reloads: reloads_by_reason.iter().map(|(_, count)| count).sum(),
            reloads_by_reason,
            rejected_values: load(&self.rejected_values),
            watcher_errors: load(&self.watcher_errors),
            watcher_checks: load(&self.watcher_checks),
            events_dropped: load(&self.events_dropped),
            last_apply: Duration::from_nanos(load(&self.last_apply_nanos)),
        }
    }
}

impl Stats {
    /// How many full reloads ran for `reason`.
    pub fn reloads(&self, reason: ReloadReason) -> u64 {
        self.reloads_by_reason
            .iter()
            .find(|(known, _)| *known == reason)
            .map_or(0, |(_, count)| *count)
    }
}
