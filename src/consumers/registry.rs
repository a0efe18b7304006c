//! Writing a store's own record, and removing expired ones.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::identity::{Identity, is_gone};
use super::{
    CONSUMER_RECORD_VERSION, Record, RecordedRejection, STALE_GRACE, SWEEP_EVERY, consumers_folder,
    read_records, unix_ms,
};
use crate::engine::Core;
use crate::error::Result;

/// How often, at most, a record is rewritten when nothing changed.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The shortest gap between two writes of a changed record (a burst of
/// passes writes a few records, not one per pass).
pub(crate) const MIN_GAP: Duration = Duration::from_millis(50);

/// A heartbeat this close to due is written now rather than a whole
/// watcher period later.
const EARLY: Duration = Duration::from_millis(50);

/// The environment variable that turns recording off for a process.
const SWITCH: &str = "LIVESETTINGS_CONSUMER_RECORDS";

/// What a record reports that can change.
type State = (i64, Vec<RecordedRejection>);

/// A store's own record, kept by its watcher thread; dropping it removes
/// the file.
pub(crate) struct Recorder {
    folder: PathBuf,
    file: PathBuf,
    /// The record, kept open and rewritten in place (see [`Recorder::put`]).
    open: Option<std::fs::File>,
    /// The longest record written: shorter ones are padded to it.
    length: usize,
    record: Record,
    written: Option<State>,
    last_write: Option<Instant>,
    last_sweep: Option<Instant>,
    dir_mode: u32,
    file_mode: u32,
    /// A write failed (logged once until one succeeds again).
    failing: bool,
}

/// The heartbeat interval of a store whose watcher wakes every `slow` by
/// itself: the heartbeat rides on those wake-ups (a heartbeat never wakes
/// the watcher, whose every wake-up runs a check), at most once a second.
pub(crate) fn heartbeat_every(slow: Duration) -> Duration {
    slow.max(HEARTBEAT)
}

impl Recorder {
    /// The recorder of `core`'s store, or `None` when it must not write
    /// (read-only) or recording is switched off.
    pub(crate) fn new(core: &Core, slow: Duration) -> Option<Recorder> {
        if core.options.is_read_only() {
            log::debug!("a read-only store records no consumer entry");
            return None;
        }
        if std::env::var(SWITCH).is_ok_and(|value| value.eq_ignore_ascii_case("off")) {
            log::debug!("{SWITCH}=off: no consumer entry");
            return None;
        }
        let session = &core.session;
        if session.is_empty() || !session.bytes().all(|b| b.is_ascii_alphanumeric()) {
            log::debug!("session id {session:?} is not a file name: no consumer entry");
            return None;
        }
        let folder = consumers_folder(&core.path);
        // The database's permission bits (a group that may write the
        // database may record), with search bits for the folder.
        let mode = std::fs::metadata(&core.path).map_or(0o600, |meta| meta.mode() & 0o666);
        let now = SystemTime::now();
        Some(Recorder {
            file: folder.join(format!("{session}.json")),
            open: None,
            length: 0,
            folder,
            record: Record {
                version: CONSUMER_RECORD_VERSION,
                session: session.clone(),
                origin: core.options.origin().to_owned(),
                identity: Identity::current(),
                applied_seq: 0,
                rejected: Vec::new(),
                heartbeat_ms: unix_ms(now),
                started_ms: unix_ms(now),
                heartbeat_every_ms: heartbeat_every(slow).as_millis() as u64,
            },
            written: None,
            last_write: None,
            last_sweep: None,
            dir_mode: mode | ((mode & 0o444) >> 2) | 0o700,
            file_mode: mode | 0o600,
            failing: false,
        })
    }

    /// How long the watcher may sleep before a changed record is due
    /// (`Duration::MAX` when it has not changed: heartbeats wait for the
    /// watcher's own wake-ups).
    pub(crate) fn due_in(&self, core: &Core) -> Duration {
        let Some(last) = self.last_write else {
            return Duration::ZERO;
        };
        if self.written.as_ref() == Some(&state(core)) {
            Duration::MAX
        } else {
            MIN_GAP.saturating_sub(last.elapsed())
        }
    }

    /// Writes the record when it changed (and the gap has passed) or a
    /// heartbeat is due; now and then removes expired records of others.
    pub(crate) fn tick(&mut self, core: &Core) {
        let state = state(core);
        let due = self.last_write.is_none_or(|last| {
            let since = last.elapsed();
            if self.written.as_ref() == Some(&state) {
                since + EARLY >= Duration::from_millis(self.record.heartbeat_every_ms)
            } else {
                since >= MIN_GAP
            }
        });
        if !due {
            return;
        }
        self.write(state);
        if self
            .last_sweep
            .is_none_or(|last| last.elapsed() >= SWEEP_EVERY)
        {
            self.last_sweep = Some(Instant::now());
            if let Err(error) = sweep(&self.folder, &self.record.identity, STALE_GRACE) {
                log::debug!("cannot expire consumer entries: {error}");
            }
        }
    }

    fn write(&mut self, state: State) {
        self.last_write = Some(Instant::now());
        self.record.applied_seq = state.0;
        self.record.rejected.clone_from(&state.1);
        self.record.heartbeat_ms = unix_ms(SystemTime::now());
        let written = serde_json::to_vec(&self.record)
            .map_err(std::io::Error::other)
            .and_then(|body| self.put(&super::sealed(&body)));
        match written {
            Ok(()) => {
                self.failing = false;
                self.written = Some(state);
            }
            Err(error) => {
                self.open = None;
                if !self.failing {
                    log::debug!(
                        "cannot record this store as a consumer in {}: {error}",
                        self.folder.display()
                    );
                }
                self.failing = true;
            }
        }
    }

    /// Overwrites the record in place with `bytes`, padded with spaces to
    /// the longest record written so far (so the file never shrinks and
    /// needs no truncation). One `pwrite` of a kept-open file costs ~2 µs
    /// here; a temporary file renamed over the record cost ~150 µs of CPU
    /// (ext4 flushes a file renamed over another). A reader that catches a
    /// write midway sees a broken seal and reads again.
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let reopen = match &self.open {
            // Removed under us (an operator, a mistaken sweep): recreate.
            Some(file) => file.metadata()?.nlink() == 0,
            None => true,
        };
        if reopen {
            self.open = None;
            self.length = 0;
            self.open = Some(self.create()?);
        }
        let mut padded = bytes.to_vec();
        self.length = self.length.max(padded.len());
        padded.resize(self.length, b' ');
        match &self.open {
            Some(file) => file.write_all_at(&padded, 0),
            None => Err(std::io::Error::other("the record is not open")),
        }
    }

    fn create(&self) -> std::io::Result<std::fs::File> {
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(self.file_mode)
                .open(&self.file)
        };
        match open() {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(self.dir_mode)
                    .create(&self.folder)
                    .or_else(|error| match error.kind() {
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(error),
                    })?;
                open()
            }
            other => other,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.open = None;
        match std::fs::remove_file(&self.file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => log::debug!("cannot remove {}: {error}", self.file.display()),
        }
    }
}

fn state(core: &Core) -> State {
    (
        core.counters.applied_seq.load(Ordering::Relaxed),
        core.rejections()
            .iter()
            .map(RecordedRejection::from)
            .collect(),
    )
}

/// Removes the stale records in `folder` whose heartbeat is older than
/// `grace`; returns how many went.
pub(crate) fn sweep(folder: &Path, here: &Identity, grace: Duration) -> Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for (path, record) in read_records(folder)? {
        let heartbeat = SystemTime::UNIX_EPOCH + Duration::from_millis(record.heartbeat_ms);
        let old = now.duration_since(heartbeat).is_ok_and(|age| age >= grace);
        if old && is_gone(&record, here, now) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    log::info!(
                        "removed the entry of consumer {} (pid {} on {}, gone)",
                        record.session,
                        record.identity.pid,
                        record.identity.host
                    );
                }
                Err(error) => log::debug!("cannot remove {}: {error}", path.display()),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::identity::tests::{NO_SUCH_PID, record};

    fn put(folder: &Path, record: &Record) -> PathBuf {
        let path = folder.join(format!("{}.json", record.session));
        let body = serde_json::to_vec(record).expect("serialize");
        std::fs::write(&path, crate::consumers::sealed(&body)).expect("write");
        path
    }

    #[test]
    fn sweeping_removes_only_stale_records_past_the_grace_period() {
        let folder = tempfile::tempdir().expect("a folder");
        let here = Identity::current();
        let dead = Identity {
            pid: NO_SUCH_PID,
            ..here.clone()
        };
        let live = put(
            folder.path(),
            &record(here.clone(), Duration::from_secs(600)),
        );
        let dead_recent = put(folder.path(), &record(dead.clone(), Duration::from_secs(1)));
        let mut dead_old = record(dead, Duration::from_secs(60));
        dead_old.session.push_str("old");
        let dead_old = put(folder.path(), &dead_old);
        let removed = sweep(folder.path(), &here, Duration::from_secs(30)).expect("sweep");
        assert_eq!(removed, 1);
        assert!(live.exists() && dead_recent.exists() && !dead_old.exists());
    }

    #[test]
    fn sweeping_a_missing_folder_removes_nothing() {
        let folder = tempfile::tempdir().expect("a folder");
        let missing = folder.path().join("none");
        assert_eq!(
            sweep(&missing, &Identity::current(), STALE_GRACE).expect("sweep"),
            0
        );
    }
}
