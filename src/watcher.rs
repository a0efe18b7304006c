//! The watcher thread: notices commits made outside this store.
//!
//! File events are hints, never truth. Each hint (or poll tick) runs a check
//! — a `stat` of the path and `PRAGMA data_version` on the read connection —
//! and only a check that finds something runs a pass over the change log.
//! A file event can arrive before the commit it belongs to is visible (the
//! commit is published through the memory-mapped `-shm`, which raises no
//! event), so a hint whose check finds nothing is re-checked on a short
//! backoff (see [`backoff_delay`]) before the watcher returns to its slow poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::{Error, Result};
use crate::file_id::FileId;
use crate::options::WatchMode;
use crate::shared::{CheckOutcome, Shared};
use crate::stats::Counters;

/// Re-check delays after a hint whose check found nothing new.
///
/// Dense at first: a writer with `synchronous=FULL` raises its last file
/// event when it writes the `-wal`, then fsyncs (2.5 ms median, 6.5 ms p90
/// measured here) before the commit becomes visible, and a writer that keeps
/// its connection open raises nothing after that. Checking every 0.25 ms,
/// then every 0.5 and 1 ms, through the usual fsync window keeps the delay
/// from such a commit to its event near the base cost of a pass; the sparse
/// tail covers slow disks. Only hints start this schedule (about 36 checks
/// of a `stat` and a pragma each), so an idle store never runs it.
fn backoff_delay(step: usize) -> Option<Duration> {
    match step {
        0..16 => Some(Duration::from_micros(250)),
        16..24 => Some(Duration::from_micros(500)),
        24..28 => Some(Duration::from_millis(1)),
        28..35 => Some(Duration::from_millis(2 << (step - 28))),
        35 => Some(Duration::from_millis(160)),
        _ => None,
    }
}

/// The store's handle on its watcher thread.
pub(crate) struct Watcher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the thread, or nothing for [`WatchMode::Off`].
    pub(crate) fn start(shared: Arc<Shared>, mode: WatchMode) -> Result<Option<Watcher>> {
        let (slow, events) = match mode {
            WatchMode::Off => return Ok(None),
            WatchMode::Events { safety_poll } => (safety_poll, true),
            WatchMode::Poll { interval } => (interval, false),
        };
        let (stop, stopped) = crossbeam_channel::bounded(0);
        // Arm before returning, so a commit right after `open` raises a hint.
        let (hint, hints) = crossbeam_channel::bounded::<()>(1);
        let folder = events
            .then(|| FolderEvents::arm(&shared.path, &hint))
            .flatten();
        let thread = std::thread::Builder::new()
            .name("livesettings-watcher".to_owned())
            .spawn(move || run(&shared, slow, events, folder, (hint, hints), &stopped))
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
    shared: &Shared,
    slow: Duration,
    use_events: bool,
    mut folder: Option<FolderEvents>,
    (hint, hints): (Sender<()>, Receiver<()>),
    stopped: &Receiver<()>,
) {
    // Check at once: a commit may have landed between the load and arming.
    let mut backoff: Option<usize> = Some(0);
    let mut last_error = String::new();
    loop {
        let timeout = backoff.and_then(backoff_delay).unwrap_or(slow);
        let hinted = select! {
            recv(stopped) -> _ => return,
            recv(hints) -> _ => true,
            default(timeout) => false,
        };
        if hinted {
            backoff = Some(0);
        }
        // A panic in a user callback (a validator, a `Live` type's
        // `Deserialize`) must not end hot reloading.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.check()))
            .unwrap_or_else(|_| {
                shared.recover_after_panic();
                Err(Error::Io {
                    context: "a watcher pass panicked; the next pass reloads everything".to_owned(),
                    source: std::io::Error::other("panic in a callback"),
                })
            });
        match checked {
            Ok(CheckOutcome::Applied) => backoff = Some(0),
            Ok(CheckOutcome::Unchanged) => {
                backoff = backoff
                    .map(|step| step + 1)
                    .filter(|step| backoff_delay(*step).is_some());
            }
            Ok(CheckOutcome::Missing) => backoff = None,
            Err(error) => {
                Counters::bump(&shared.counters.watcher_errors, 1);
                let message = error.to_string();
                if message != last_error {
                    log::warn!("watcher check failed (will retry): {message}");
                    last_error = message;
                }
                backoff = None;
            }
        }
        if use_events && !hinted && backoff.is_none() {
            // On slow ticks, re-arm when the folder was removed or replaced.
            if folder.as_ref().is_none_or(|armed| !armed.is_current()) {
                folder = FolderEvents::arm(&shared.path, &hint);
            }
        }
    }
}

/// A file-system watch on the database's folder that turns relevant events
/// into hints.
struct FolderEvents {
    folder: PathBuf,
    folder_id: Option<FileId>,
    _watcher: RecommendedWatcher,
}

impl FolderEvents {
    fn arm(db: &Path, hint: &Sender<()>) -> Option<FolderEvents> {
        let folder = match db.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let folder_id = FileId::of(&folder).ok().flatten()?;
        let name = db.file_name()?.to_string_lossy().into_owned();
        let watched = [
            name.clone(),
            format!("{name}-wal"),
            format!("{name}-journal"),
        ];
        let hint = hint.clone();
        let handler = move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else {
                // An error (queue overflow, ...) may hide a change.
                let _ = hint.try_send(());
                return;
            };
            let relevant_kind = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            };
            let relevant_file = event.paths.iter().any(|path| {
                path.file_name()
                    .is_some_and(|file| watched.iter().any(|w| file == w.as_str()))
            });
            if relevant_kind && (relevant_file || event.paths.is_empty()) {
                // A full channel already holds a pending hint: coalesced.
                let _ = hint.try_send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => watcher,
            Err(error) => {
                log::warn!("file events unavailable, polling only: {error}");
                return None;
            }
        };
        if let Err(error) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
            log::warn!(
                "cannot watch {} for file events, polling only: {error}",
                folder.display()
            );
            return None;
        }
        Some(FolderEvents {
            folder,
            folder_id: Some(folder_id),
            _watcher: watcher,
        })
    }

    /// Whether the watched folder is still the one at its path.
    fn is_current(&self) -> bool {
        FileId::of(&self.folder).ok().flatten() == self.folder_id
    }
}
