//! Writing a store's own record, and removing expired ones.

use std::io::Write;
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

/// How often a record is rewritten when nothing changed.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The shortest gap between two writes of a changed record (a burst of
/// passes writes a few records, not one per pass).
pub(crate) const MIN_GAP: Duration = Duration::from_millis(50);

/// A heartbeat this close to due is written now rather than a whole
/// watcher period later.
const EARLY: Duration = Duration::from_millis(50);

/// A temporary file older than this belongs to a writer that died midway.
const TEMP_EXPIRES: Duration = Duration::from_secs(60);

/// The environment variable that turns recording off for a process.
const SWITCH: &str = "LIVESETTINGS_CONSUMER_RECORDS";

/// What a record reports that can change.
type State = (i64, Vec<RecordedRejection>);

/// A store's own record, kept by its watcher thread; dropping it removes
/// the file.
pub(crate) struct Recorder {
    folder: PathBuf,
    file: PathBuf,
    temp: PathBuf,
    record: Record,
    written: Option<State>,
    last_write: Option<Instant>,
    last_sweep: Option<Instant>,
    dir_mode: u32,
    file_mode: u32,
    /// A write failed (logged once until one succeeds again).
    failing: bool,
}

impl Recorder {
    /// The recorder of `core`'s store, or `None` when it must not write
    /// (read-only) or recording is switched off.
    pub(crate) fn new(core: &Core) -> Option<Recorder> {
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
            temp: folder.join(format!(".{session}.tmp")),
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
            },
            written: None,
            last_write: None,
            last_sweep: None,
            dir_mode: mode | ((mode & 0o444) >> 2) | 0o700,
            file_mode: mode | 0o600,
            failing: false,
        })
    }

    /// How long the watcher may sleep before the record is due.
    pub(crate) fn due_in(&self, core: &Core) -> Duration {
        let Some(last) = self.last_write else {
            return Duration::ZERO;
        };
        let wait = if self.written.as_ref() == Some(&state(core)) {
            HEARTBEAT
        } else {
            MIN_GAP
        };
        wait.saturating_sub(last.elapsed())
    }

    /// Writes the record when it changed (and the gap has passed) or a
    /// heartbeat is due; now and then removes expired records of others.
    pub(crate) fn tick(&mut self, core: &Core) {
        let state = state(core);
        let due = self.last_write.is_none_or(|last| {
            let since = last.elapsed();
            if self.written.as_ref() == Some(&state) {
                since + EARLY >= HEARTBEAT
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
            .and_then(|bytes| self.replace(&bytes));
        match written {
            Ok(()) => {
                self.failing = false;
                self.written = Some(state);
            }
            Err(error) => {
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

    /// Writes `bytes` to the temporary file and renames it over the record.
    fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self.write_temp(bytes) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(self.dir_mode)
                    .create(&self.folder)
                    .or_else(|error| match error.kind() {
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(error),
                    })?;
                self.write_temp(bytes)?;
            }
            other => other?,
        }
        std::fs::rename(&self.temp, &self.file)
    }

    fn write_temp(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.file_mode)
            .open(&self.temp)?;
        file.write_all(bytes)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for path in [&self.file, &self.temp] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => log::debug!("cannot remove {}: {error}", path.display()),
            }
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
/// `grace`, and temporary files older than a minute; returns how many
/// records went.
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
    remove_old_temps(folder, now);
    Ok(removed)
}

fn remove_old_temps(folder: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with('.') && name.ends_with(".tmp"));
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age >= TEMP_EXPIRES));
        if is_temp && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
