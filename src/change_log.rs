//! Reading the change log: its rows, tolerant of cells someone forced past
//! the CHECK constraints, and applying them to a snapshot in order.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::applier::Applied;
use crate::error::{Result, SqliteContext};
use crate::events::{Change, Event, Rejection, Source};
use crate::key::validate_key;
use crate::snapshot::Snapshot;
use crate::tree::parse_stored_text;

/// One change-log row.
pub(crate) struct LogRow {
    pub(crate) seq: i64,
    pub(crate) key: String,
    new: Option<String>,
    /// Why a cell is unusable (not text), when someone bypassed the CHECK
    /// constraints: the row is refused, never a reason to stop applying.
    unreadable: Option<String>,
}

/// A cell as text: `Ok(None)` for NULL, `Err` describing anything else
/// that is not UTF-8 text.
pub(crate) fn text_cell(cell: ValueRef<'_>) -> Result<Option<String>, String> {
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
