//! When the watcher checks again.
//!
//! A file event can arrive before the commit it belongs to is visible: a
//! writer with `synchronous=FULL` raises its last event when it writes the
//! `-wal`, then fsyncs (2.5 ms median, 6.5 ms p90 measured here) before the
//! commit is published through the memory-mapped `-shm`, which raises no
//! event, and a writer that keeps its connection open raises nothing after
//! that. So a hint whose check finds nothing is re-checked densely at first
//! (every 0.1 ms for 2 ms, then 0.25, 0.5 and 1 ms, through the usual fsync
//! window), then sparsely (2 … 160 ms) for slow disks: 48 checks, a few
//! microseconds of CPU each. The first 2 ms at 0.1 ms put a commit that
//! raises no event of its own (a writer keeping its connection open) into
//! the snapshot about 0.1 ms sooner on average than 0.25 ms steps did.
//!
//! The store's own commits never start that schedule: their file events are
//! held back while a local write is in flight or just committed (a local
//! write applies every foreign commit before its own, under SQLite's write
//! lock), and the watcher checks once when the writes pause, with the
//! sparse tail only.

use std::time::Duration;

/// How long after a local commit its own file events are expected.
pub(crate) const OWN_EVENTS_WINDOW: Duration = Duration::from_millis(2);

/// How often the watcher looks whether a burst of local writes is over
/// (each local write applies foreign commits itself meanwhile): at most
/// this late, a foreign commit that was pending behind the burst is seen.
pub(crate) const LOCAL_WRITES_POLL: Duration = Duration::from_millis(10);

/// The step of the schedule a check after a burst of local writes starts
/// at: the 1 ms steps and the sparse tail.
pub(crate) const AFTER_LOCAL_WRITES: usize = 36;

/// How many checks the whole schedule runs when nothing new turns up.
#[cfg(test)]
pub(crate) const CHECKS: usize = 48;

/// Re-check delays after a hint whose check found nothing new.
pub(crate) fn backoff_delay(step: usize) -> Option<Duration> {
    match step {
        0..20 => Some(Duration::from_micros(100)),
        20..28 => Some(Duration::from_micros(250)),
        28..36 => Some(Duration::from_micros(500)),
        36..40 => Some(Duration::from_millis(1)),
        40..47 => Some(Duration::from_millis(2 << (step - 40))),
        47 => Some(Duration::from_millis(160)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_dense_first_then_sparse_and_ends() {
        let delays: Vec<Duration> = (0..).map_while(backoff_delay).collect();
        assert_eq!(delays.len(), CHECKS);
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(
            backoff_delay(AFTER_LOCAL_WRITES),
            Some(Duration::from_millis(1))
        );
        let dense: Duration = delays.iter().take(AFTER_LOCAL_WRITES).sum();
        assert!(dense >= Duration::from_millis(8), "{dense:?}");
    }
}
