//! The watcher thread: notices commits made outside this store.
//!
//! File events are hints, never truth. Each hint (or poll tick) runs a check
//! — a `stat` of the path and `PRAGMA data_version` on the read connection —
//! and only a check that finds something runs a pass over the change log
//! (see [`schedule`] for when it checks again).

mod folder_events;
pub(crate) mod schedule;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::engine::{CheckOutcome, Core};
use crate::error::{Error, Result};
use crate::options::WatchMode;
use crate::stats::Counters;
use folder_events::FolderEvents;
use schedule::{AFTER_LOCAL_WRITES, LOCAL_WRITES_POLL, OWN_EVENTS_WINDOW, backoff_delay};

/// The store's handle on its watcher thread.
pub(crate) struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the thread, or nothing for [`WatchMode::Off`].
    pub(crate) fn start(core: Arc<Core>, mode: WatchMode) -> Result<Option<Watcher>> {
        let (slow, events) = match mode {
            WatchMode::Off => return Ok(None),
            WatchMode::Events { safety_poll } => (safety_poll, true),
            WatchMode::Poll { interval } => (interval, false),
        };
        let (stop, stopped) = crossbeam_channel::bounded(0);
        // Arm before returning, so a commit right after `open` raises a hint.
        let folder = events.then(|| FolderEvents::arm(&core)).flatten();
        let thread = std::thread::Builder::new()
            .name("livesettings-watcher".to_owned())
            .spawn(move || run(&core, slow, events, folder, &stopped))
            .map_err(|source| Error::Io {
                context: "cannot start the watcher thread".to_owned(),
                source,
            })?;
        Ok(Some(Watcher {
            stop: Some(stop),
            thread: Some(thread),
        }))
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<()> {
        // Dropping the sender disconnects the channel the thread selects on.
        self.stop.take();
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| Error::Io {
                context: "the watcher thread panicked".to_owned(),
                source: std::io::Error::other("watcher panic"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            log::error!("{error}");
        }
    }
}

fn run(
    core: &Arc<Core>,
    slow: Duration,
    use_events: bool,
    mut folder: Option<FolderEvents>,
    stopped: &Receiver<()>,
) {
    let hints = core.hints.1.clone();
    // Check at once: a commit may have landed between the load and arming.
    let mut backoff: Option<usize> = Some(0);
    let mut last_error = String::new();
    // This store's consumer record; dropped (removed) when the thread ends.
    let mut record = crate::consumers::registry::Recorder::new(core, slow);
    loop {
        if let Some(record) = record.as_mut() {
            record.tick(core); // After a pass that moved the seq; a heartbeat.
        }
        let deferred = core.activity.deferred.load(Ordering::Acquire);
        let timeout = if deferred {
            core.activity
                .quiet_in(OWN_EVENTS_WINDOW)
                .map_or(Duration::ZERO, |quiet| quiet.max(LOCAL_WRITES_POLL))
        } else {
            backoff.and_then(backoff_delay).unwrap_or(slow)
        };
        // A temporary override coming due wakes the watcher on time.
        let timeout = core
            .override_due_in()
            .map_or(timeout, |due| timeout.min(due));
        let timeout = record
            .as_ref()
            .map_or(timeout, |r| timeout.min(r.due_in(core)));
        let mut hinted = select! {
            recv(stopped) -> _ => {
                drop(folder);
                return;
            }
            recv(hints) -> _ => true,
            default(timeout) => false,
        };
        if core.activity.deferred.load(Ordering::Acquire) {
            if core.activity.quiet_in(OWN_EVENTS_WINDOW).is_some() {
                continue; // Local writes go on; each applies foreign commits.
            }
            // The writes paused: look once, then the sparse tail in case a
            // foreign commit was pending behind them.
            core.activity.deferred.store(false, Ordering::Release);
            if let Some(folder) = &folder {
                folder.resume();
            }
            backoff = Some(AFTER_LOCAL_WRITES);
            hinted = false;
        } else if hinted {
            backoff = Some(0);
        }
        // A panic in a user callback (a validator, a `Live` type's
        // `Deserialize`) must not end hot reloading.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.check()))
            .unwrap_or_else(|_| {
                core.recover_after_panic();
                Err(Error::Io {
                    context: "a watcher pass panicked; the next pass reloads everything".to_owned(),
                    source: std::io::Error::other("panic in a callback"),
                })
            });
        // Restore overrides that came due, and learn of overrides another
        // process set (they arrive as commits).
        let applied = matches!(checked, Ok(CheckOutcome::Applied));
        if applied || core.override_due_in() == Some(Duration::ZERO) {
            if let Err(error) = core.restore_due_overrides() {
                log::warn!("cannot restore the expired temporary overrides (will retry): {error}");
                core.retry_overrides_later();
            }
        }
        let next = |step: usize| Some(step + 1).filter(|step| backoff_delay(*step).is_some());
        match checked {
            Ok(CheckOutcome::Applied) => backoff = Some(0),
            // A commit with nothing to apply right after a hint is this
            // store's own (or a checkpoint): nothing else is pending.
            Ok(CheckOutcome::NothingNew) if hinted => backoff = None,
            Ok(CheckOutcome::NothingNew | CheckOutcome::Unchanged) => {
                backoff = backoff.and_then(next);
            }
            Ok(CheckOutcome::Missing) => backoff = None,
            Err(error) => {
                Counters::bump(&core.counters.watcher_errors, 1);
                let message = error.to_string();
                if message != last_error {
                    log::warn!("watcher check failed (will retry): {message}");
                    last_error = message;
                }
                backoff = None;
            }
        }
        if use_events && !hinted && backoff.is_none() {
            // On slow ticks, re-arm when a folder was removed or replaced, or
            // the path now resolves elsewhere.
            if folder.as_ref().is_none_or(|armed| !armed.is_current(core)) {
                drop(folder.take());
                folder = FolderEvents::arm(core);
            }
        }
    }
}
