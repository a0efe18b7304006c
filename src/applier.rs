//! Bringing the snapshot up to date with the database: granularly from the
//! change log, or by a full reload and diff when the log cannot be trusted.
//!
//! One `Applier` exists per store, behind a mutex: at most one apply is in
//! flight, and both the in-process write path and the watcher go through it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use imbl::OrdMap;
use imbl::ordmap::DiffItem;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::error::{Result, SqliteContext};
use crate::events::{Change, Event, Rejection, ReloadReason, Source};
use crate::file_id::FileId;
use crate::key::validate_key;
use crate::schema;
use crate::snapshot::Snapshot;
use crate::tree::parse_stored_text;

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

/// One change-log row.
pub(crate) struct LogRow {
    seq: i64,
    pub(crate) key: String,
    new: Option<String>,
    /// Why a cell is unusable (not text), when someone bypassed the CHECK
    /// constraints: the row is refused, never a reason to stop applying.
    unreadable: Option<String>,
}

/// A cell as text: `Ok(None)` for NULL, `Err` describing anything else
/// that is not UTF-8 text.
fn text_cell(cell: ValueRef<'_>) -> Result<Option<String>, String> {
    match cell {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(|text| Some(text.to_owned()))
            .map_err(|_| "text that is not UTF-8".to_owned()),
        ValueRef::Blob(bytes) => Err(format!("a BLOB of {} bytes, not JSON text", bytes.len())),
        ValueRef::Integer(number) => Err(format!("the integer {number}, not JSON text")),
        ValueRef::Real(number) => Err(format!("the real {number}, not JSON text")),
    }
}

fn log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    let key = text_cell(row.get_ref(1)?);
    let new = text_cell(row.get_ref(2)?);
    let unreadable = match (&key, &new) {
        (Err(reason), _) => Some(format!("the key is {reason}")),
        (_, Err(reason)) => Some(format!("the value is {reason}")),
        _ => None,
    };
    Ok(LogRow {
        seq: row.get(0)?,
        key: match key {
            Ok(Some(key)) => key,
            Ok(None) => String::new(),
            Err(reason) => format!("<{reason}>"),
        },
        new: new.unwrap_or(None),
        unreadable,
    })
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

pub(crate) fn read_log(conn: &Connection, path: &Path, after: i64) -> Result<Vec<LogRow>> {
    let mut statement = conn
        .prepare_cached("SELECT seq, key, new FROM settings_log WHERE seq > ?1 ORDER BY seq")
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map([after], log_row)
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}

/// Applies log rows in order. Rows are coalesced per key within each run of
/// one source, so each key yields one event per local commit and one per
/// batch of foreign commits.
pub(crate) fn apply_rows(
    current: &Snapshot,
    rows: &[LogRow],
    local: Option<(i64, i64)>,
) -> Applied {
    let is_local = |seq: i64| local.is_some_and(|(first, last)| (first..=last).contains(&seq));
    let mut next = current.clone();
    let mut events = Vec::new();
    let mut external_changes = 0;
    let mut rejected = 0;
    let mut run_start = 0;
    while run_start < rows.len() {
        let source_local = is_local(rows[run_start].seq);
        let run_end = rows[run_start..]
            .iter()
            .position(|row| is_local(row.seq) != source_local)
            .map_or(rows.len(), |len| run_start + len);
        let run = &rows[run_start..run_end];
        let mut last_write: HashMap<&str, usize> = HashMap::new();
        for (at, row) in run.iter().enumerate() {
            last_write.insert(row.key.as_str(), at);
        }
        let mut order: Vec<usize> = last_write.into_values().collect();
        order.sort_unstable();
        let source = if source_local {
            Source::Local
        } else {
            Source::External
        };
        for at in order {
            let row = &run[at];
            let new = match decode_row(row) {
                Ok(new) => new,
                Err(reason) => {
                    log::warn!("rejected the write at seq {}: {reason}", row.seq);
                    rejected += 1;
                    events.push(Event::Rejected(Rejection {
                        seq: row.seq,
                        keys: vec![row.key.clone()],
                        reason,
                    }));
                    continue;
                }
            };
            let old = next.entry(&row.key).cloned();
            if old == new {
                continue;
            }
            next.put(Arc::from(row.key.as_str()), new.clone());
            if !source_local {
                external_changes += 1;
            }
            events.push(Event::Change(Change {
                seq: row.seq,
                key: row.key.clone(),
                old: old.map(|value| value.as_ref().clone()),
                new: new.map(|value| value.as_ref().clone()),
                source,
            }));
        }
        run_start = run_end;
    }
    let seq = rows.last().map_or(current.seq(), |row| row.seq);
    Applied {
        snapshot: {
            next.set_seq(seq);
            next
        },
        events,
        touched: rows.iter().map(|row| row.key.clone()).collect(),
        reload: None,
        external_changes,
        rejected,
    }
}

/// Reads the current rows of the section at or below `prefix`, skipping
/// undecodable ones.
pub(crate) fn read_section(
    conn: &Connection,
    path: &Path,
    prefix: &str,
) -> Result<Vec<(Arc<str>, Arc<Value>)>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT key, value FROM settings WHERE ?1 = '' OR key = ?1 \
             OR (key >= ?1 || '.' AND key < ?1 || '/') ORDER BY key",
        )
        .context(path, "cannot read a section")?;
    let rows = statement
        .query_map([prefix], |row| {
            Ok((
                text_cell(row.get_ref(0)?).ok().flatten(),
                text_cell(row.get_ref(1)?).ok().flatten(),
            ))
        })
        .context(path, "cannot read a section")?;
    let mut pairs = Vec::new();
    for row in rows {
        let (key, text) = row.context(path, "cannot read a section")?;
        // Unreadable rows are skipped: the section is then checked without
        // them, and a pass has already reported them.
        let Some(key) = key else { continue };
        let row = LogRow {
            seq: 0,
            key,
            new: text,
            unreadable: None,
        };
        if let Ok(Some(value)) = decode_row(&row) {
            pairs.push((Arc::from(row.key.as_str()), value));
        }
    }
    Ok(pairs)
}

fn decode_row(row: &LogRow) -> Result<Option<Arc<Value>>, String> {
    if let Some(reason) = &row.unreadable {
        return Err(format!(
            "unreadable change-log row for '{}': {reason}",
            row.key
        ));
    }
    validate_key(&row.key).map_err(|error| error.to_string())?;
    match &row.new {
        None => Ok(None),
        Some(text) => parse_stored_text(&row.key, text)
            .map(|value| Some(Arc::new(value)))
            .map_err(|error| error.to_string()),
    }
}

/// Reads every row, keeps the last good value of undecodable ones, and diffs
/// against `current` so subscribers still get per-key events.
fn full_reload(
    conn: &Connection,
    path: &Path,
    current: &Snapshot,
    seq_max: i64,
    reason: ReloadReason,
    emit: bool,
) -> Result<Applied> {
    let started = std::time::Instant::now();
    if emit {
        log::info!("{}: full reload ({reason})", path.display());
    }
    let mut statement = conn
        .prepare_cached("SELECT key, value FROM settings")
        .context(path, "cannot read the settings")?;
    let mut rows = statement
        .query([])
        .context(path, "cannot read the settings")?;
    let mut events = vec![Event::Reloaded {
        reason,
        seq: seq_max,
    }];
    let mut rejected = 0;
    let mut pairs: Vec<(Arc<str>, Arc<Value>)> = Vec::new();
    while let Some(row) = rows.next().context(path, "cannot read the settings")? {
        // Borrow the row's text instead of copying it into Strings: a full
        // reload of 100 000 keys spends most of its time here.
        let key = row.get_ref(0).context(path, "cannot read a settings key")?;
        let key = match key.as_str() {
            Ok(key) => key,
            Err(_) => {
                // Only possible if someone bypassed the CHECK constraint.
                rejected += 1;
                events.push(Event::Rejected(Rejection {
                    seq: seq_max,
                    keys: vec![format!("{key:?}")],
                    reason: "a key that is not text".to_owned(),
                }));
                continue;
            }
        };
        let text = row.get_ref(1).ok().and_then(|value| value.as_str().ok());
        let decoded = validate_key(key).and_then(|()| match text {
            Some(text) => parse_stored_text(key, text),
            None => Err(crate::Error::InvalidValue {
                key: key.to_owned(),
                reason: "the stored value is not text".to_owned(),
            }),
        });
        match decoded {
            Ok(value) => pairs.push((Arc::from(key), Arc::new(value))),
            Err(error) => {
                rejected += 1;
                if let Some(previous) = current.entry(key) {
                    pairs.push((Arc::from(key), Arc::clone(previous)));
                }
                events.push(Event::Rejected(Rejection {
                    seq: seq_max,
                    keys: vec![key.to_owned()],
                    reason: error.to_string(),
                }));
            }
        }
    }
    let entries: OrdMap<Arc<str>, Arc<Value>> = pairs.into_iter().collect();
    let mut external_changes = 0;
    if !emit {
        // The initial load: nobody has seen anything yet, nothing to diff.
        events.clear();
    }
    for item in current.map().diff(&entries).filter(|_| emit) {
        let (key, old, new) = match item {
            DiffItem::Add(key, new) => (key, None, Some(new)),
            DiffItem::Update {
                old: (key, old),
                new: (_, new),
            } => (key, Some(old), Some(new)),
            DiffItem::Remove(key, old) => (key, Some(old), None),
        };
        if old == new {
            continue;
        }
        external_changes += 1;
        events.push(Event::Change(Change {
            seq: seq_max,
            key: String::from(key.as_ref()),
            old: old.map(|value| value.as_ref().clone()),
            new: new.map(|value| value.as_ref().clone()),
            source: Source::External,
        }));
    }
    let snapshot = Snapshot::new(seq_max, entries);
    log::debug!(
        "{}: loaded {} keys in {:.1} ms",
        path.display(),
        snapshot.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(Applied {
        snapshot,
        events,
        touched: Vec::new(),
        reload: emit.then_some(reason),
        external_changes,
        rejected,
    })
}

/// Loads everything at open.
pub(crate) fn initial_load(applier: &mut Applier) -> Result<Snapshot> {
    let applied = applier.catch_up(&Snapshot::default(), None, Some(ReloadReason::FileReplaced))?;
    Ok(applied.map(|applied| applied.snapshot).unwrap_or_default())
}
