//! What `livesettings sync status` shows: the running bridge's record
//! beside the database (`<db>.sync.json`: connected or not, which bucket
//! and servers, its last error), and the durable state in the file itself
//! (the last revision applied, the local rows not pushed yet, the
//! reports).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::error::{SyncError, SyncResult};
use super::{lock, outbox, state};
use crate::error::SqliteContext;

/// The record a running bridge keeps beside the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BridgeRecord {
    /// The bridge's process id.
    pub pid: u32,
    /// The bucket.
    pub bucket: String,
    /// The servers it was given.
    pub url: String,
    /// `"fleet-wins"` or `"last-writer-wins"`.
    pub mode: String,
    /// Whether it was connected when it last wrote the record.
    pub connected: bool,
    /// Whether the bucket's stream takes atomic batches.
    pub atomic_batches: bool,
    /// When it last wrote the record (seconds since the Unix epoch).
    pub updated: f64,
    /// The last error it met (a failed push, a lost connection), if any.
    pub last_error: Option<String>,
}

/// One report: a local change that did not become the fleet's, or a bucket
/// entry that is not a livesettings setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// `conflict`, `refused` or `invalid`.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The local change's seq.
    pub local_seq: Option<i64>,
    /// The value the local change wrote (JSON text; `None`: a delete).
    pub local_value: Option<String>,
    /// The bucket revision that won (or was refused).
    pub fleet_revision: Option<u64>,
    /// The value that won (JSON text; `None`: deleted).
    pub fleet_value: Option<String>,
    /// The local log seq at which the fleet's value was put back.
    pub undo_seq: Option<i64>,
    /// Why, in words.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The answer of `sync status`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Whether a bridge holds this database's lock now.
    pub running: bool,
    /// Whether that bridge is connected to NATS (false when none runs).
    pub connected: bool,
    /// The running bridge's record, when there is one.
    pub bridge: Option<BridgeRecord>,
    /// The bucket the file is synchronised with (from the record, else the
    /// file's state), `None` when it never was.
    pub bucket: Option<String>,
    /// The last bucket revision applied.
    pub applied_revision: u64,
    /// The last change-log seq pushed (or otherwise handled).
    pub pushed_seq: i64,
    /// Local change-log rows not pushed yet.
    pub pending_rows: i64,
    /// How many conflicts were reported in all.
    pub conflicts: i64,
    /// How many local values were refused (too large) in all.
    pub refused: i64,
    /// The newest reports, newest first (at most 20).
    pub recent: Vec<Report>,
}

/// The record file of the database at `db`.
pub fn record_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".sync.json");
    PathBuf::from(name)
}

/// Writes the record (a new file renamed over the old one: readers never
/// see half of it).
pub(crate) fn write_record(db: &Path, record: &BridgeRecord) -> SyncResult<()> {
    let path = record_path(db);
    let mut temporary = path.clone().into_os_string();
    temporary.push(".tmp");
    let text = serde_json::to_string(record).unwrap_or_default();
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|error| SyncError::io(format!("cannot write {}", path.display()), error))
}

pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// The synchronisation status of the database at `db`, read without
/// writing anything.
///
/// # Errors
/// [`SyncError::Store`] when the file cannot be read.
pub fn status(db: &Path) -> SyncResult<SyncStatus> {
    let running = lock::is_held(db);
    let bridge: Option<BridgeRecord> = if running {
        std::fs::read_to_string(record_path(db))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
    } else {
        None
    };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .context(db, "cannot open the database")?;
    let mut status = SyncStatus {
        running,
        connected: bridge.as_ref().is_some_and(|record| record.connected),
        bucket: bridge.as_ref().map(|record| record.bucket.clone()),
        bridge,
        applied_revision: 0,
        pushed_seq: 0,
        pending_rows: 0,
        conflicts: 0,
        refused: 0,
        recent: Vec::new(),
    };
    if !state::exists(&conn, db)? {
        return Ok(status);
    }
    let bucket = match status.bucket.clone() {
        Some(bucket) => Some(bucket),
        None => conn
            .query_row("SELECT bucket FROM livesettings_fleet LIMIT 1", [], |row| {
                row.get(0)
            })
            .ok(),
    };
    let Some(bucket) = bucket else {
        return Ok(status);
    };
    let cursor = state::cursor(&conn, db, &bucket)?;
    status.applied_revision = cursor.applied_revision;
    status.pushed_seq = cursor.pushed_seq;
    status.pending_rows = outbox::pending_rows(&conn, db, &bucket)?;
    let count = |kind: &str| -> SyncResult<i64> {
        Ok(conn
            .query_row(
                "SELECT count(*) FROM livesettings_fleet_reports WHERE bucket = ?1 AND kind = ?2",
                (&bucket, kind),
                |row| row.get(0),
            )
            .context(db, "cannot count the sync reports")?)
    };
    status.conflicts = count("conflict")?;
    status.refused = count("refused")?;
    let mut statement = conn
        .prepare(
            "SELECT kind, key, local_seq, local_value, fleet_revision, fleet_value, undo_seq, reason, at \
             FROM livesettings_fleet_reports WHERE bucket = ?1 ORDER BY id DESC LIMIT 20",
        )
        .context(db, "cannot read the sync reports")?;
    status.recent = statement
        .query_map([&bucket], |row| {
            Ok(Report {
                kind: row.get(0)?,
                key: row.get(1)?,
                local_seq: row.get(2)?,
                local_value: row.get(3)?,
                fleet_revision: row
                    .get::<_, Option<i64>>(4)?
                    .map(|revision| revision as u64),
                fleet_value: row.get(5)?,
                undo_seq: row.get(6)?,
                reason: row.get(7)?,
                at: row.get(8)?,
            })
        })
        .and_then(|rows| rows.collect())
        .context(db, "cannot read the sync reports")?;
    status.bucket = Some(bucket);
    Ok(status)
}
