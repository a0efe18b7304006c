//! Bringing the snapshot up to date with the database: granularly from the
//! change log, or by a full reload and diff when the log cannot be trusted.
//!
//! One `Applier` exists per store, behind a mutex: at most one apply is in
//! flight, and both the in-process write path and the watcher go through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::change_log::{apply_rows, read_log, text_cell};
use crate::error::{Result, SqliteContext};
use crate::events::{Event, ReloadReason};
use crate::file_id::FileId;
use crate::reload::full_reload;
use crate::schema;
use crate::snapshot::Snapshot;

/// The read connection and what it last saw.
struct ReadLink {
    conn: Connection,
    file: FileId,
    data_version: i64,
    schema_cookie: i64,
    schema_version: Option<String>,
}

/// What a cheap check (one `stat`, one pragma) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Nothing committed since the last pass.
    Unchanged,
    /// Another connection committed: run a pass.
    Changed,
    /// A different file is at the path: reopen, then reload.
    FileChanged,
    /// No file at the path.
    FileMissing,
    /// The connections are closed (a reopen failed): try again.
    Detached,
}

/// The result of a pass that changed the snapshot (or found a rejection).
pub(crate) struct Applied {
    pub(crate) snapshot: Snapshot,
    pub(crate) events: Vec<Event>,
    /// The keys of every log row in a granular pass, changed or not
    /// (empty for a reload, which touches everything).
    pub(crate) touched: Vec<String>,
    pub(crate) reload: Option<ReloadReason>,
    pub(crate) external_changes: usize,
    pub(crate) rejected: usize,
}

pub(crate) struct Applier {
    path: PathBuf,
    link: Option<ReadLink>,
    applied_seq: i64,
    /// The log row at `applied_seq` as it was applied, to recognise a log
    /// that was rewritten underneath.
    applied_row: Option<RowPrint>,
    /// Whether the first (initial) load is done: it publishes no events.
    loaded: bool,
    /// A full reload the next pass must run (an earlier pass failed).
    force_next: Option<ReloadReason>,
}

/// What identifies one log row: key, new value and timestamp.
type RowPrint = (String, Option<String>, String);

fn row_print(conn: &Connection, path: &Path, seq: i64) -> Result<Option<RowPrint>> {
    conn.prepare_cached("SELECT key, new, at FROM settings_log WHERE seq = ?1")
        .and_then(|mut statement| {
            statement
                .query_map([seq], |row| {
                    let cell = |at| -> rusqlite::Result<Option<String>> {
                        Ok(text_cell(row.get_ref(at)?).unwrap_or_else(Some))
                    };
                    Ok((
                        cell(0)?.unwrap_or_default(),
                        cell(1)?,
                        cell(2)?.unwrap_or_default(),
                    ))
                })?
                .next()
                .transpose()
        })
        .context(path, "cannot read the change log")
}

impl Applier {
    /// Opens the read connection on the file identified by `file`.
    pub(crate) fn open(path: &Path, busy_timeout: Duration, file: FileId) -> Result<Applier> {
        let mut applier = Applier {
            path: path.to_owned(),
            link: None,
            applied_seq: 0,
            applied_row: None,
            loaded: false,
            force_next: None,
        };
        applier.attach(busy_timeout, file)?;
        Ok(applier)
    }

    /// Opens a new read connection (after a reopen of the database).
    pub(crate) fn attach(&mut self, busy_timeout: Duration, file: FileId) -> Result<()> {
        let conn = schema::open_connection(&self.path, busy_timeout, 256)?;
        let data_version = schema::data_version(&conn, &self.path)?;
        let schema_cookie = schema::schema_cookie(&conn, &self.path)?;
        self.link = Some(ReadLink {
            conn,
            file,
            data_version,
            schema_cookie,
            schema_version: None,
        });
        Ok(())
    }

    /// Closes the read connection.
    pub(crate) fn detach(&mut self) {
        if let Some(link) = self.link.take() {
            if let Err((_, error)) = link.conn.close() {
                log::warn!("closing the read connection failed: {error}");
            }
        }
    }

    /// Makes the next pass a full reload: an earlier one failed after it
    /// may have moved the applied position or the schema markers.
    pub(crate) fn force_reload(&mut self, reason: ReloadReason) {
        self.force_next.get_or_insert(reason);
    }

    /// The read connection, for queries that are not passes (history,
    /// sections). `None` while detached.
    pub(crate) fn connection(&self) -> Option<&Connection> {
        self.link.as_ref().map(|link| &link.conn)
    }

    /// The database path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file the read connection has open.
    pub(crate) fn file(&self) -> Option<FileId> {
        self.link.as_ref().map(|link| link.file)
    }

    /// Whether a pass could find anything new: a `stat` and a pragma.
    pub(crate) fn probe(&mut self) -> Result<Probe> {
        let at_path = FileId::of(&self.path).map_err(|source| crate::Error::Io {
            context: format!("cannot stat {}", self.path.display()),
            source,
        })?;
        let Some(link) = &self.link else {
            return Ok(if at_path.is_some() {
                Probe::Detached
            } else {
                Probe::FileMissing
            });
        };
        match at_path {
            None => Ok(Probe::FileMissing),
            Some(id) if id != link.file => Ok(Probe::FileChanged),
            Some(_) => {
                let version = schema::data_version(&link.conn, &self.path)?;
                Ok(if version == link.data_version {
                    Probe::Unchanged
                } else {
                    Probe::Changed
                })
            }
        }
    }

    /// Brings `current` up to date. `local` is the range of seqs the caller
    /// just committed itself; `force` demands a full reload. Returns `None`
    /// when nothing changed.
    pub(crate) fn catch_up(
        &mut self,
        current: &Snapshot,
        local: Option<(i64, i64)>,
        force: Option<ReloadReason>,
    ) -> Result<Option<Applied>> {
        let path = self.path.clone();
        let Some(link) = self.link.as_mut() else {
            return Err(crate::Error::DatabaseMissing { path });
        };
        let data_version = schema::data_version(&link.conn, &path)?;
        let mut reload = force.or(self.force_next);
        let cookie = schema::schema_cookie(&link.conn, &path)?;
        if cookie != link.schema_cookie {
            if !schema::triggers_present(&link.conn, &path)? {
                log::warn!(
                    "{}: change-log triggers are missing; recreating them",
                    path.display()
                );
                schema::create_triggers(&link.conn, &path)?;
                reload = Some(ReloadReason::TriggersMissing);
            } else {
                reload.get_or_insert(ReloadReason::SchemaChanged);
            }
            link.schema_cookie = schema::schema_cookie(&link.conn, &path)?;
        }
        let tx = link
            .conn
            .transaction()
            .context(&path, "cannot begin a read transaction")?;
        let (seq_max, version): (Option<i64>, Option<String>) = tx
            .prepare_cached(
                "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'settings_log'), \
                        (SELECT value FROM livesettings_meta WHERE name = 'schema_version')",
            )
            .and_then(|mut statement| statement.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
            .context(&path, "cannot read the change-log position")?;
        let seq_max = seq_max.unwrap_or(0);
        if link.schema_version.is_some() && link.schema_version != version {
            reload.get_or_insert(ReloadReason::SchemaVersionChanged);
        }
        link.schema_version = version;
        if reload.is_none() && seq_max < self.applied_seq {
            reload = Some(ReloadReason::LogReset);
        }
        if reload.is_none() && self.applied_row.is_some() {
            // A log wiped and refilled up to or past the applied position
            // in one transaction keeps `seq_max >= applied_seq`; the row at
            // the applied position then is not the one applied. (A missing
            // row was pruned, which is fine.)
            let found = row_print(&tx, &path, self.applied_seq)?;
            if found.is_some() && found != self.applied_row {
                reload = Some(ReloadReason::LogReset);
            }
        }
        let applied = match reload {
            Some(reason) => Some(full_reload(
                &tx,
                &path,
                current,
                seq_max,
                reason,
                self.loaded,
            )?),
            None if seq_max == self.applied_seq => None,
            None => {
                let rows = read_log(&tx, &path, self.applied_seq)?;
                let contiguous = rows
                    .iter()
                    .enumerate()
                    .all(|(at, row)| row.seq == self.applied_seq + 1 + at as i64)
                    && rows.last().map(|row| row.seq) == Some(seq_max);
                if contiguous {
                    log::debug!(
                        "{}: applying log rows {}..={seq_max} granularly",
                        path.display(),
                        self.applied_seq + 1
                    );
                    Some(apply_rows(current, &rows, local))
                } else {
                    Some(full_reload(
                        &tx,
                        &path,
                        current,
                        seq_max,
                        ReloadReason::LogGap,
                        true,
                    )?)
                }
            }
        };
        let applied_row = match applied {
            Some(_) => Some(row_print(&tx, &path, seq_max)?),
            None => None,
        };
        tx.commit()
            .context(&path, "cannot end the read transaction")?;
        link.data_version = data_version;
        if let Some(print) = applied_row {
            self.applied_seq = seq_max;
            self.applied_row = print;
            self.loaded = true;
            self.force_next = None;
        }
        Ok(applied)
    }
}

/// Loads everything at open.
pub(crate) fn initial_load(applier: &mut Applier) -> Result<Snapshot> {
    let applied = applier.catch_up(&Snapshot::default(), None, Some(ReloadReason::FileReplaced))?;
    Ok(applied.map(|applied| applied.snapshot).unwrap_or_default())
}
