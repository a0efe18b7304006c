//! File events on the database's folder, turned into hints for the watcher.
//!
//! Linux only, through inotify on a thread of our own that is joined when
//! the events are dropped: removing a watch makes the kernel queue an
//! `IN_IGNORED` event, which wakes the blocked read. The database's folder
//! is the one of the path with symlinks resolved (SQLite keeps `-wal` beside
//! the target); when the path is a symlink, its own folder is watched too,
//! for the link being retargeted. Elsewhere the store polls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use crate::db::file_id::FileId;
use crate::engine::Core;
use crate::watch::schedule::OWN_EVENTS_WINDOW;

/// An armed watch; dropping it stops and joins its thread.
pub(crate) struct FolderEvents {
    /// The database path with symlinks resolved, when armed.
    resolved: PathBuf,
    folders: Vec<(PathBuf, Option<FileId>)>,
    #[cfg(target_os = "linux")]
    linux: linux::Armed,
}

impl FolderEvents {
    /// Arms the watch for `core`'s database. `None` (poll only) when file
    /// events are unavailable.
    pub(crate) fn arm(core: &Arc<Core>) -> Option<FolderEvents> {
        let mut targets: Vec<(PathBuf, Vec<String>)> = Vec::new();
        let resolved = core.resolved_path();
        let (folder, name) = folder_and_name(&resolved)?;
        targets.push((
            folder,
            vec![
                name.clone(),
                format!("{name}-wal"),
                format!("{name}-journal"),
            ],
        ));
        if resolved != core.path {
            let (folder, name) = folder_and_name(&core.path)?;
            match targets.iter_mut().find(|(known, _)| *known == folder) {
                Some((_, names)) => names.push(name),
                None => targets.push((folder, vec![name])),
            }
        }
        let folders = targets
            .iter()
            .map(|(folder, _)| (folder.clone(), FileId::of(folder).ok().flatten()))
            .collect();
        #[cfg(target_os = "linux")]
        {
            let linux = linux::Armed::start(Arc::clone(core), targets)?;
            Some(FolderEvents {
                resolved,
                folders,
                linux,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (resolved, folders, targets);
            log::info!("file events are implemented for Linux only; polling");
            None
        }
    }

    /// Lets the event thread read again after a burst of local writes.
    pub(crate) fn resume(&self) {
        #[cfg(target_os = "linux")]
        self.linux.resume();
    }

    /// Whether every watched folder is still the one at its path, and the
    /// database still resolves to the same place (a symlink retargeted
    /// elsewhere needs the other folder watched).
    pub(crate) fn is_current(&self, core: &Core) -> bool {
        #[cfg(target_os = "linux")]
        if !self.linux.is_running() {
            return false;
        }
        if core.resolved_path() != self.resolved {
            return false;
        }
        self.folders
            .iter()
            .all(|(folder, id)| FileId::of(folder).ok().flatten() == *id)
    }
}

fn folder_and_name(path: &Path) -> Option<(PathBuf, String)> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some((folder, name))
}

/// Passes a relevant event on: held back (with one wake-up per burst) while
/// the store's own write is in flight or just committed, else a hint. A
/// full channel already holds a pending hint: coalesced. Returns whether it
/// was held back.
fn deliver(core: &Core) -> bool {
    let activity = &core.activity;
    if activity.is_recent(OWN_EVENTS_WINDOW) {
        if !activity.deferred.swap(true, Ordering::AcqRel) {
            let _ = core.hints.0.try_send(());
        }
        true
    } else {
        let _ = core.hints.0.try_send(());
        false
    }
}

/// While the store's own writes go on, the event thread stops reading: the
/// kernel then merges the writes' identical events into one queued event
/// and wakes nobody, instead of waking this thread for every commit. The
/// watcher, which looks when the writes pause, resumes it (so only one
/// thread keeps time during a burst); dropping the events resumes it too.
fn hold_while_writing(resume: &Receiver<()>) {
    let _ = resume.recv();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crossbeam_channel::{Receiver, Sender};
    use std::thread::JoinHandle;

    use nix::errno::Errno;
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

    use super::{deliver, hold_while_writing};
    use crate::engine::Core;

    pub(super) struct Armed {
        inotify: Arc<Inotify>,
        watches: Vec<WatchDescriptor>,
        stop: Arc<AtomicBool>,
        running: Arc<AtomicBool>,
        /// Resumes reading after a burst of local writes (dropped first on
        /// drop, which resumes it too).
        resume: Option<Sender<()>>,
        thread: Option<JoinHandle<()>>,
    }

    impl Armed {
        pub(super) fn resume(&self) {
            if let Some(resume) = &self.resume {
                let _ = resume.try_send(());
            }
        }

        pub(super) fn start(
            core: Arc<Core>,
            targets: Vec<(PathBuf, Vec<String>)>,
        ) -> Option<Armed> {
            let inotify = match Inotify::init(InitFlags::IN_CLOEXEC) {
                Ok(inotify) => Arc::new(inotify),
                Err(error) => {
                    log::warn!("file events unavailable, polling only: {error}");
                    return None;
                }
            };
            let mask = AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ATTRIB;
            let mut watches = Vec::new();
            let mut names: Vec<(WatchDescriptor, Vec<OsString>)> = Vec::new();
            for (folder, files) in targets {
                match inotify.add_watch(&folder, mask) {
                    Ok(wd) => {
                        watches.push(wd);
                        names.push((wd, files.into_iter().map(OsString::from).collect()));
                    }
                    Err(error) => {
                        log::warn!(
                            "cannot watch {} for file events, polling only: {error}",
                            folder.display()
                        );
                        return None;
                    }
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let running = Arc::new(AtomicBool::new(true));
            let reader = Arc::clone(&inotify);
            let (stopping, still_running) = (Arc::clone(&stop), Arc::clone(&running));
            let (resume, resumed) = crossbeam_channel::bounded(1);
            let thread = std::thread::Builder::new()
                .name("livesettings-events".to_owned())
                .spawn(move || {
                    read_loop(&core, &reader, &names, &stopping, &resumed);
                    still_running.store(false, Ordering::Release);
                    // Whatever ended the loop, the watcher must look.
                    let _ = core.hints.0.try_send(());
                })
                .map_err(|error| log::warn!("cannot start the file-event thread: {error}"))
                .ok()?;
            Some(Armed {
                inotify,
                watches,
                stop,
                running,
                resume: Some(resume),
                thread: Some(thread),
            })
        }

        pub(super) fn is_running(&self) -> bool {
            self.running.load(Ordering::Acquire)
        }
    }

    fn read_loop(
        core: &Core,
        inotify: &Inotify,
        names: &[(WatchDescriptor, Vec<OsString>)],
        stop: &AtomicBool,
        resumed: &Receiver<()>,
    ) {
        let mut live = names.len();
        loop {
            let events = match inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    log::warn!("reading file events failed, polling only: {error}");
                    return;
                }
            };
            if stop.load(Ordering::Acquire) {
                return;
            }
            let mut relevant = false;
            for event in &events {
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    live = live.saturating_sub(1);
                    relevant = true;
                    continue;
                }
                if event.mask.intersects(
                    AddWatchFlags::IN_Q_OVERFLOW
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                ) {
                    relevant = true;
                    continue;
                }
                let watched =
                    names
                        .iter()
                        .find(|(wd, _)| *wd == event.wd)
                        .is_some_and(|(_, files)| {
                            event
                                .name
                                .as_ref()
                                .is_some_and(|name| files.iter().any(|file| file == name))
                        });
                relevant |= watched;
            }
            if relevant && deliver(core) {
                hold_while_writing(resumed);
            }
            if live == 0 {
                return; // Every watched folder is gone: nothing more can come.
            }
        }
    }

    impl Drop for Armed {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            drop(self.resume.take());
            for wd in &self.watches {
                // Queues IN_IGNORED, which wakes the blocked read. Fails when
                // the folder is gone (the kernel removed the watch already).
                let _ = self.inotify.rm_watch(*wd);
            }
            if let Some(thread) = self.thread.take() {
                if thread.join().is_err() {
                    log::error!("the file-event thread panicked");
                }
            }
        }
    }
}
