//! Temporary overrides in the database: one `livesettings_meta` row per
//! key, `override:<key>` → `{"value": TEXT, "restore": TEXT|null,
//! "until_ms": N, "by": ORIGIN}` (the stored texts of the override's value
//! and of the value to put back; `restore` null: the key was absent). In the
//! meta table, so every process sees them and no schema change was needed.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqliteContext};

/// One pending override as stored.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub(crate) struct StoredOverride {
    /// The stored text the override wrote.
    pub(crate) value: String,
    /// The stored text to put back, `None` when the key was absent.
    pub(crate) restore: Option<String>,
    /// When it expires, in ms since the Unix epoch.
    pub(crate) until_ms: i64,
    /// The origin of the store that set it.
    pub(crate) by: String,
}

const PREFIX: &str = "override:";

fn name(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// Every pending override, by key.
pub(crate) fn all(conn: &Connection, path: &Path) -> Result<Vec<(String, StoredOverride)>> {
    // 'override;' is the first name after every 'override:…'.
    let mut statement = conn
        .prepare_cached(
            "SELECT name, value FROM livesettings_meta \
             WHERE name >= 'override:' AND name < 'override;' ORDER BY name",
        )
        .context(path, "cannot read the temporary overrides")?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .context(path, "cannot read the temporary overrides")?;
    let mut found = Vec::new();
    for row in rows {
        let (name, text) = row.context(path, "cannot read the temporary overrides")?;
        let key = name.trim_start_matches(PREFIX).to_owned();
        match serde_json::from_str::<StoredOverride>(&text) {
            Ok(stored) => found.push((key, stored)),
            // Not ours to interpret (hand-edited): left alone, reported.
            Err(error) => log::warn!("ignoring the unreadable override of '{key}': {error}"),
        }
    }
    Ok(found)
}

/// The overrides still in force: the key holds the override's value. A
/// later write of another value (by any writer) has cancelled the others;
/// their rows go when they come due.
pub(crate) fn in_force(conn: &Connection, path: &Path) -> Result<Vec<(String, StoredOverride)>> {
    let mut kept = Vec::new();
    for (key, stored) in all(conn, path)? {
        if current_text(conn, path, &key)?.as_deref() == Some(stored.value.as_str()) {
            kept.push((key, stored));
        }
    }
    Ok(kept)
}

/// The override of `key`, if it is still in force.
pub(crate) fn get_in_force(
    conn: &Connection,
    path: &Path,
    key: &str,
) -> Result<Option<StoredOverride>> {
    let Some(stored) = get(conn, path, key)? else {
        return Ok(None);
    };
    let holds = current_text(conn, path, key)?.as_deref() == Some(stored.value.as_str());
    Ok(holds.then_some(stored))
}

/// The pending override of `key`.
pub(crate) fn get(conn: &Connection, path: &Path, key: &str) -> Result<Option<StoredOverride>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM livesettings_meta WHERE name = ?1",
            [name(key)],
            |row| row.get(0),
        )
        .optional()
        .context(path, "cannot read a temporary override")?;
    Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Records (or moves) the override of `key`.
pub(crate) fn put(
    conn: &Connection,
    path: &Path,
    key: &str,
    stored: &StoredOverride,
) -> Result<()> {
    let text =
        serde_json::to_string(stored).map_err(|error| crate::error::Error::InvalidValue {
            key: key.to_owned(),
            reason: error.to_string(),
        })?;
    conn.prepare_cached("INSERT OR REPLACE INTO livesettings_meta (name, value) VALUES (?1, ?2)")
        .and_then(|mut statement| statement.execute((name(key), text)))
        .context(path, "cannot record a temporary override")?;
    Ok(())
}

/// Drops the override of `key` (cancelled or done); `true` if there was one.
pub(crate) fn remove(conn: &Connection, path: &Path, key: &str) -> Result<bool> {
    let removed = conn
        .prepare_cached("DELETE FROM livesettings_meta WHERE name = ?1")
        .and_then(|mut statement| statement.execute([name(key)]))
        .context(path, "cannot drop a temporary override")?;
    Ok(removed > 0)
}

/// The stored text of `key` now.
pub(crate) use crate::db::change_log::stored_text as current_text;
