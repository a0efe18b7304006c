//! The bridge's durable state in the settings file (`sql/fleet.sql`): its
//! two cursors, what it knows of each key, and its reports. Every function
//! runs inside the caller's transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Result, SqliteContext};

const FLEET_SQL: &str = include_str!("../../sql/fleet.sql");

/// The origin prefix of every change-log row the bridge writes: such rows
/// are never pushed.
pub(crate) const ORIGIN_PREFIX: &str = "nats:";

/// The bridge's two positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last bucket revision handled.
    pub applied_revision: u64,
    /// The last `settings_log` seq handled.
    pub pushed_seq: i64,
}

/// What this host last knew of a key in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) revision: u64,
    pub(crate) seq: i64,
    pub(crate) value: Option<String>,
}

/// One report row.
#[derive(Clone, Debug)]
pub(crate) struct NewReport<'a> {
    pub(crate) kind: &'a str,
    pub(crate) key: &'a str,
    pub(crate) local_seq: Option<i64>,
    pub(crate) local_value: Option<&'a str>,
    pub(crate) fleet_revision: Option<u64>,
    pub(crate) fleet_value: Option<&'a str>,
    pub(crate) undo_seq: Option<i64>,
    pub(crate) reason: &'a str,
}

/// Creates the bridge's tables and the bucket's row when missing.
pub(crate) fn ensure(conn: &Connection, path: &Path, bucket: &str) -> Result<()> {
    conn.execute_batch(FLEET_SQL)
        .context(path, "cannot create the sync tables")?;
    conn.execute(
        "INSERT OR IGNORE INTO livesettings_fleet (bucket) VALUES (?1)",
        [bucket],
    )
    .context(path, "cannot record the bucket")?;
    Ok(())
}

/// Whether the bridge's tables exist (a file never synchronised has none).
pub(crate) fn exists(conn: &Connection, path: &Path) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'livesettings_fleet'",
        [],
        |row| row.get(0),
    )
    .context(path, "cannot read the schema")
}

pub(crate) fn cursor(conn: &Connection, path: &Path, bucket: &str) -> Result<Cursor> {
    let found: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT applied_revision, pushed_seq FROM livesettings_fleet WHERE bucket = ?1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([bucket], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .context(path, "cannot read the sync cursor")?;
    Ok(
        found.map_or_else(Cursor::default, |(revision, seq)| Cursor {
            applied_revision: u64::try_from(revision).unwrap_or(0),
            pushed_seq: seq,
        }),
    )
}

pub(crate) fn set_applied(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    revision: u64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE livesettings_fleet SET applied_revision = max(applied_revision, ?2) WHERE bucket = ?1",
    )
    .and_then(|mut statement| statement.execute((bucket, revision as i64)))
    .context(path, "cannot record the applied revision")?;
    Ok(())
}

/// Sets the applied revision to exactly `revision` (a resync after the
/// bucket was recreated goes back).
pub(crate) fn reset_applied(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    revision: u64,
) -> Result<()> {
    conn.execute(
        "UPDATE livesettings_fleet SET applied_revision = ?2 WHERE bucket = ?1",
        (bucket, revision as i64),
    )
    .context(path, "cannot record the applied revision")?;
    Ok(())
}

pub(crate) fn set_pushed(conn: &Connection, path: &Path, bucket: &str, seq: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE livesettings_fleet SET pushed_seq = max(pushed_seq, ?2) WHERE bucket = ?1",
    )
    .and_then(|mut statement| statement.execute((bucket, seq)))
    .context(path, "cannot record the pushed seq")?;
    Ok(())
}

pub(crate) fn known(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    key: &str,
) -> Result<Option<Known>> {
    conn.prepare_cached(
        "SELECT revision, seq, value FROM livesettings_fleet_keys WHERE bucket = ?1 AND key = ?2",
    )
    .and_then(|mut statement| {
        statement
            .query_row((bucket, key), |row| {
                Ok(Known {
                    revision: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    seq: row.get(1)?,
                    value: row.get(2)?,
                })
            })
            .optional()
    })
    .context(path, "cannot read a key's revision")
}

/// Every key known in the bucket.
pub(crate) fn all_known(
    conn: &Connection,
    path: &Path,
    bucket: &str,
) -> Result<Vec<(String, Known)>> {
    let mut statement = conn
        .prepare("SELECT key, revision, seq, value FROM livesettings_fleet_keys WHERE bucket = ?1")
        .context(path, "cannot read the keys' revisions")?;
    statement
        .query_map([bucket], |row| {
            Ok((
                row.get(0)?,
                Known {
                    revision: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    seq: row.get(2)?,
                    value: row.get(3)?,
                },
            ))
        })
        .and_then(|rows| rows.collect())
        .context(path, "cannot read the keys' revisions")
}

pub(crate) fn set_known(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    key: &str,
    known: &Known,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO livesettings_fleet_keys (bucket, key, revision, seq, value) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (bucket, key) DO UPDATE SET revision = ?3, seq = ?4, value = ?5",
    )
    .and_then(|mut statement| {
        statement.execute((bucket, key, known.revision as i64, known.seq, known.value.as_deref()))
    })
    .context(path, "cannot record a key's revision")?;
    Ok(())
}

/// Forgets every key's revision (the bucket was recreated: its revisions
/// started again).
pub(crate) fn forget_keys(conn: &Connection, path: &Path, bucket: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM livesettings_fleet_keys WHERE bucket = ?1",
        [bucket],
    )
    .context(path, "cannot reset the keys' revisions")?;
    Ok(())
}

pub(crate) fn report(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    report: &NewReport<'_>,
) -> Result<()> {
    conn.prepare_cached(
        // A pass interrupted before it recorded its position decides again:
        // the same report is not recorded twice.
        "INSERT INTO livesettings_fleet_reports \
         (bucket, kind, key, local_seq, local_value, fleet_revision, fleet_value, undo_seq, reason) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE NOT EXISTS (\
             SELECT 1 FROM livesettings_fleet_reports WHERE bucket = ?1 AND kind = ?2 AND key = ?3 \
             AND local_seq IS ?4 AND fleet_revision IS ?6)",
    )
    .and_then(|mut statement| {
        statement.execute(rusqlite::params![
            bucket,
            report.kind,
            report.key,
            report.local_seq,
            report.local_value,
            report.fleet_revision.map(|revision| revision as i64),
            report.fleet_value,
            report.undo_seq,
            report.reason,
        ])
    })
    .context(path, "cannot record a sync report")?;
    Ok(())
}

/// The change log's position: the last seq handed out (pruning keeps it).
pub(crate) fn log_position(conn: &Connection, path: &Path) -> Result<i64> {
    conn.prepare_cached(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'settings_log'), 0)",
    )
    .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
    .context(path, "cannot read the change-log position")
}

/// Stamps the log rows after `after` with `origin`.
pub(crate) fn stamp(conn: &Connection, path: &Path, after: i64, origin: &str) -> Result<()> {
    conn.prepare_cached("UPDATE settings_log SET origin = ?2, session = NULL WHERE seq > ?1")
        .and_then(|mut statement| statement.execute((after, origin)))
        .context(path, "cannot stamp the change log")?;
    Ok(())
}

/// The local value of `key` (its JSON text), `None` when absent.
pub(crate) fn local_value(conn: &Connection, path: &Path, key: &str) -> Result<Option<String>> {
    crate::db::change_log::stored_text(conn, path, key)
}

/// Whether a change not written by the bridge was logged for `key` after
/// `seq`.
pub(crate) fn local_change_after(
    conn: &Connection,
    path: &Path,
    key: &str,
    seq: i64,
) -> Result<bool> {
    conn.prepare_cached(
        "SELECT count(*) > 0 FROM settings_log WHERE key = ?1 AND seq > ?2 AND origin NOT GLOB 'nats:*'",
    )
    .and_then(|mut statement| statement.query_row((key, seq), |row| row.get(0)))
    .context(path, "cannot read the change log")
}
