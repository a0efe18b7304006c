//! Who follows a database, and what each has applied.
//!
//! Every store with a watcher ([`WatchMode::Events`](crate::WatchMode) or
//! [`WatchMode::Poll`](crate::WatchMode)) that can write keeps a small
//! record in a folder beside the database, `<db>-livesettings-consumers/`,
//! one JSON file per store named `<session>.json` (the store's random
//! session id). Nothing is written to the settings database itself: a write
//! there would take its write lock and wake every other store's watcher,
//! while the watchers' file events on the database's folder are not
//! recursive, so writes inside the subfolder wake nobody.
//!
//! The watcher thread writes the record (overwritten in place, padded,
//! with a checksum "seal" that readers verify, reading again when they
//! caught a write midway), never the write path: soon after the applied seq or the
//! pending rejections change (at most every 50 ms), and as a heartbeat
//! when the watcher wakes by itself (its safety poll or poll interval),
//! at most once a second: a heartbeat never wakes the watcher. The store removes its record when it is closed or
//! dropped. Stores that never write ([`Options::read_only`](crate::Options::read_only),
//! or a process that cannot write beside the database) do not record, and
//! a failed write is logged at debug level and never fails the store. Set
//! `LIVESETTINGS_CONSUMER_RECORDS=off` in a process's environment to turn
//! recording off for it.
//!
//! A record is **stale** when its process is gone: on the same host (same
//! host name, boot and pid namespace) when no process has its pid with the
//! start time it recorded (pids are reused); on another host when its
//! heartbeat is older than [`REMOTE_STALE_AFTER`]. A stopped process
//! (SIGSTOP) is alive: it shows a late heartbeat and a lag, not stale.
//! [`expire_consumers`] removes stale records whose last heartbeat is older
//! than a grace period ([`STALE_GRACE`] by default; running stores sweep
//! with it every [`SWEEP_EVERY`], and so does `livesettings status`).

pub(crate) mod identity;
pub(crate) mod registry;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::events::Rejection;
use identity::Identity;

/// The record format's version (the `version` field of each file).
pub const CONSUMER_RECORD_VERSION: u32 = 1;

/// How long a stale record stays listed (marked stale) before
/// [`expire_consumers`] removes it by default, counted from its last
/// heartbeat.
pub const STALE_GRACE: Duration = Duration::from_secs(30);

/// A record of a process on another host is stale when its heartbeat is
/// older than this, or three of its heartbeat intervals if longer (its pid
/// cannot be checked from here).
pub const REMOTE_STALE_AFTER: Duration = Duration::from_secs(120);

/// How often a running store removes expired records of others.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

const FOLDER_SUFFIX: &str = "-livesettings-consumers";

/// One store following the database, as its record says.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Consumer {
    /// The store's random session id (also the record's file name).
    pub session: String,
    /// The store's origin name ([`Options::with_origin`](crate::Options::with_origin)).
    pub origin: String,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// The change-log position the store's snapshot reflects.
    pub applied_seq: i64,
    /// The store's pending rejections ([`Store::rejected`](crate::Store::rejected)).
    pub rejected: Vec<Rejection>,
    /// When the store last wrote its record.
    pub heartbeat: SystemTime,
    /// When the store started recording.
    pub started: SystemTime,
    /// How often the store rewrites its record when nothing changes (its
    /// watcher's safety poll or poll interval, at least a second).
    pub heartbeat_every: Duration,
    /// Whether the process is gone.
    pub state: ConsumerState,
}

/// Whether a consumer's process is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerState {
    /// The process runs (or is stopped, which still counts as alive).
    Live,
    /// The process is gone; the record expires after the grace period.
    Stale,
}

impl ConsumerState {
    /// `live` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerState::Live => "live",
            ConsumerState::Stale => "stale",
        }
    }
}

impl Consumer {
    /// How long ago the last heartbeat was (zero if its clock is ahead).
    pub fn heartbeat_age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.heartbeat)
            .unwrap_or_default()
    }
}

/// The file format of one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) version: u32,
    pub(crate) session: String,
    pub(crate) origin: String,
    #[serde(flatten)]
    pub(crate) identity: Identity,
    pub(crate) applied_seq: i64,
    #[serde(default)]
    pub(crate) rejected: Vec<RecordedRejection>,
    /// Unix time in milliseconds.
    pub(crate) heartbeat_ms: u64,
    /// Unix time in milliseconds.
    pub(crate) started_ms: u64,
    /// How often the store rewrites the record when nothing changes.
    #[serde(default)]
    pub(crate) heartbeat_every_ms: u64,
}

/// A pending rejection as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecordedRejection {
    pub(crate) seq: i64,
    pub(crate) keys: Vec<String>,
    pub(crate) reason: String,
}

impl From<&Rejection> for RecordedRejection {
    fn from(rejection: &Rejection) -> Self {
        RecordedRejection {
            seq: rejection.seq,
            keys: rejection.keys.clone(),
            reason: rejection.reason.clone(),
        }
    }
}

/// The folder beside the database (symlinks resolved) that holds the
/// consumers' records: `<db>-livesettings-consumers`.
pub fn consumers_folder(db: &Path) -> PathBuf {
    let resolved = crate::db::file_id::resolved(db);
    let mut name = resolved
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(FOLDER_SUFFIX);
    resolved.with_file_name(name)
}

/// The consumers of the database at `db`, by session id, each marked live
/// or stale; an empty list when nobody records (no folder). Unreadable or
/// foreign files in the folder are skipped. Removes nothing.
///
/// # Errors
/// [`Error::Io`] when the folder exists but cannot be listed.
pub fn consumers(db: &Path) -> Result<Vec<Consumer>> {
    let here = Identity::current();
    let now = SystemTime::now();
    let mut listed: Vec<Consumer> = read_records(&consumers_folder(db))?
        .into_iter()
        .map(|(_, record)| {
            let state = if identity::is_gone(&record, &here, now) {
                ConsumerState::Stale
            } else {
                ConsumerState::Live
            };
            consumer_of(record, state)
        })
        .collect();
    listed.sort_by(|a, b| a.session.cmp(&b.session));
    Ok(listed)
}

/// Removes the records of stale consumers whose last heartbeat is older
/// than `grace`, and returns how many it removed. A record that cannot be removed
/// (no write access) is left, logged at debug level.
///
/// # Errors
/// [`Error::Io`] when the folder exists but cannot be listed.
pub fn expire_consumers(db: &Path, grace: Duration) -> Result<usize> {
    registry::sweep(&consumers_folder(db), &Identity::current(), grace)
}

fn consumer_of(record: Record, state: ConsumerState) -> Consumer {
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    Consumer {
        heartbeat: at(record.heartbeat_ms),
        started: at(record.started_ms),
        heartbeat_every: Duration::from_millis(record.heartbeat_every_ms),
        session: record.session,
        origin: record.origin,
        pid: record.identity.pid,
        host: record.identity.host,
        applied_seq: record.applied_seq,
        rejected: record
            .rejected
            .into_iter()
            .map(|rejection| Rejection {
                seq: rejection.seq,
                keys: rejection.keys,
                reason: rejection.reason,
            })
            .collect(),
        state,
    }
}

/// The parsable records in `folder`, with their paths.
pub(crate) fn read_records(folder: &Path) -> Result<Vec<(PathBuf, Record)>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("cannot list {}", folder.display()),
                source,
            });
        }
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_record = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| !name.starts_with('.') && name.ends_with(".json"));
        if !is_record {
            continue;
        }
        match read_record(&path) {
            Ok(Some(record)) => records.push((path, record)),
            Ok(None) => {} // Removed meanwhile: its store closed.
            Err(error) => log::debug!("skipping {}: {error}", path.display()),
        }
    }
    Ok(records)
}

/// How often a record caught midway through a rewrite is read again.
const READ_ATTEMPTS: usize = 20;

/// Reads one record, again while its seal is broken (caught midway
/// through an in-place rewrite); `None` when the file is gone.
fn read_record(path: &Path) -> std::result::Result<Option<Record>, String> {
    let mut last = String::new();
    for attempt in 0..READ_ATTEMPTS {
        if attempt > 0 {
            std::thread::yield_now();
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.to_string()),
        };
        match unseal(&bytes) {
            Some(body) => {
                return serde_json::from_slice::<Record>(body)
                    .map(Some)
                    .map_err(|error| error.to_string());
            }
            None => last = "the record's seal does not match (a write midway?)".to_owned(),
        }
    }
    Err(last)
}

const SEAL: &[u8] = b",\"seal\":\"";

/// `body` (a JSON object) with a seal added: `,"seal":"<FNV-1a of body>"`
/// before its closing brace.
pub(crate) fn sealed(body: &[u8]) -> Vec<u8> {
    let open = body.strip_suffix(b"}").unwrap_or(body);
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(open);
    out.extend_from_slice(SEAL);
    out.extend_from_slice(format!("{:016x}", fnv1a(body)).as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// The text of a sealed record (trailing padding trimmed; the `seal`
/// field is ignored when parsed) when its seal matches, else `None`.
fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let text = bytes.trim_ascii_end();
    let at = text
        .windows(SEAL.len())
        .rposition(|window| window == SEAL)?;
    let hex = text.get(at + SEAL.len()..)?.strip_suffix(b"\"}")?;
    let seal = u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    let mut body = text.get(..at)?.to_vec();
    body.push(b'}');
    (fnv1a(&body) == seal).then_some(text)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_reads_back_and_a_torn_one_is_refused() {
        let old = sealed(br#"{"applied_seq":199,"heartbeat_ms":1000}"#);
        let new = sealed(br#"{"applied_seq":200,"heartbeat_ms":2000}"#);
        let mut padded = new.clone();
        padded.extend_from_slice(b"    ");
        assert_eq!(unseal(&padded), Some(new.as_slice()));
        // The new record's first bytes over the old one's last ones.
        let mut torn = new[..17].to_vec();
        torn.extend_from_slice(&old[17..]);
        assert_eq!(unseal(&torn), None);
        assert_eq!(unseal(b""), None);
        assert_eq!(unseal(br#"{"applied_seq":1}"#), None);
    }
}
