//! Reading the change log: its position, its rows (tolerant of cells someone
//! forced past the CHECK constraints) and the current rows of a section.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::error::{Result, SqliteContext};
use crate::key::validate_key;
use crate::value::parse_stored_text;

/// One change-log row.
pub(crate) struct LogRow {
    pub(crate) seq: i64,
    pub(crate) key: String,
    pub(crate) new: Option<String>,
    /// The id of the store that wrote it (`None` for any other writer).
    pub(crate) session: Option<String>,
    /// When, as the log's text timestamp.
    pub(crate) at: String,
    /// Why a cell is unusable (not text), when someone bypassed the CHECK
    /// constraints: the row is refused, never a reason to stop applying.
    pub(crate) unreadable: Option<String>,
}

/// What identifies one log row: key, new value and timestamp, to recognise
/// a log that was wiped and refilled underneath.
pub(crate) type RowPrint = (String, Option<String>, String);

/// Where the change log stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogPosition {
    /// The highest seq ever handed out (`sqlite_sequence`, or the highest
    /// row when that cell is not an integer).
    pub(crate) seq: i64,
    /// The schema version in the meta table.
    pub(crate) schema_version: Option<String>,
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

/// The SQL of the log position. Any writer can store anything in
/// `sqlite_sequence.seq`; a cell that is not an integer is ignored (SQLite
/// itself then continues from the highest row), so it cannot stop passes.
const POSITION_SQL: &str = "SELECT max(\
       coalesce((SELECT seq FROM sqlite_sequence \
                 WHERE name = 'settings_log' AND typeof(seq) = 'integer'), 0), \
       coalesce((SELECT max(seq) FROM settings_log), 0)), \
     (SELECT CAST(value AS TEXT) FROM livesettings_meta WHERE name = 'schema_version')";

/// The log position as `conn` sees it (inside its transaction, if any).
pub(crate) fn position(conn: &Connection, path: &Path) -> Result<LogPosition> {
    conn.prepare_cached(POSITION_SQL)
        .and_then(|mut statement| {
            statement.query_row([], |row| {
                Ok(LogPosition {
                    seq: row.get(0)?,
                    schema_version: row.get(1)?,
                })
            })
        })
        .context(path, "cannot read the change-log position")
}

/// The highest seq handed out, as [`position`] computes it.
pub(crate) fn newest_seq(conn: &Connection, path: &Path) -> Result<i64> {
    position(conn, path).map(|position| position.seq)
}

/// The identity of the row at `seq`, if it exists.
pub(crate) fn row_print(conn: &Connection, path: &Path, seq: i64) -> Result<Option<RowPrint>> {
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

/// Reads one row of `SELECT seq, key, new, session, at`.
pub(crate) fn log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
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
        session: text_cell(row.get_ref(3)?).ok().flatten(),
        at: text_cell(row.get_ref(4)?)
            .unwrap_or_else(Some)
            .unwrap_or_default(),
        unreadable,
    })
}

impl LogRow {
    /// The row's identity, as [`row_print`] reads it.
    pub(crate) fn print(&self) -> RowPrint {
        (self.key.clone(), self.new.clone(), self.at.clone())
    }
}

/// The rows after `after`, in seq order.
pub(crate) fn read_log(conn: &Connection, path: &Path, after: i64) -> Result<Vec<LogRow>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, key, new, session, at FROM settings_log WHERE seq > ?1 ORDER BY seq",
        )
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map([after], log_row)
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}

/// The SQL condition "key is `?1` or below it" (`?1 = ''` is everything):
/// keys below `p` sort in `[p + '.', p + '/')`, so the index answers it.
pub(crate) const UNDER_PREFIX: &str =
    "(?1 = '' OR key = ?1 OR (key >= ?1 || '.' AND key < ?1 || '/'))";

/// The stored text of one key, through the primary key's index (`None`
/// when absent, or when the cell is not text, which only a writer that
/// bypassed the CHECK constraint can store).
pub(crate) fn stored_text(conn: &Connection, path: &Path, key: &str) -> Result<Option<String>> {
    let mut statement = conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .context(path, "cannot read a setting")?;
    let mut rows = statement
        .query([key])
        .context(path, "cannot read a setting")?;
    let Some(row) = rows.next().context(path, "cannot read a setting")? else {
        return Ok(None);
    };
    Ok(row
        .get_ref(0)
        .ok()
        .and_then(|cell| text_cell(cell).ok().flatten()))
}

/// The stored value of one key (`None` when absent or unreadable, like a
/// row [`read_section`] skips).
pub(crate) fn read_key(conn: &Connection, path: &Path, key: &str) -> Result<Option<Arc<Value>>> {
    Ok(stored_text(conn, path, key)?
        .and_then(|text| parse_stored_text(key, &text).ok().map(Arc::new)))
}

/// The current rows of the section at or below `prefix`, decoded; rows that
/// do not decode are skipped (a pass reports them).
pub(crate) fn read_section(
    conn: &Connection,
    path: &Path,
    prefix: &str,
) -> Result<Vec<(Arc<str>, Arc<Value>)>> {
    // Two statements: with the `?1 = ''` alternative of UNDER_PREFIX in
    // the condition SQLite scans the whole index; without it, it searches
    // the key and the range below it.
    let sql = if prefix.is_empty() {
        "SELECT key, value FROM settings WHERE ?1 = '' ORDER BY key"
    } else {
        "SELECT key, value FROM settings \
         WHERE key = ?1 OR (key >= ?1 || '.' AND key < ?1 || '/') ORDER BY key"
    };
    let mut statement = conn
        .prepare_cached(sql)
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
        let (Some(key), Some(text)) = (key, text) else {
            continue;
        };
        if validate_key(&key).is_err() {
            continue;
        }
        if let Ok(value) = parse_stored_text(&key, &text) {
            pairs.push((Arc::from(key.as_str()), Arc::new(value)));
        }
    }
    Ok(pairs)
}

/// Decodes a row's new value: `Ok(None)` for a removal, `Err(reason)` for a
/// row that must be refused.
pub(crate) fn decode_row(row: &LogRow) -> Result<Option<Arc<Value>>, String> {
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
