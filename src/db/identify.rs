//! What an existing file at the path is, before anything is written to it:
//! a livesettings database, an empty one, or another application's SQLite
//! database (which no command may add a schema to unless told to).

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Result, SqliteContext};

/// What a connection found in the file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The livesettings meta table is there (or, from a half-deleted schema,
    /// both of its data tables).
    Livesettings,
    /// No schema at all: a zero-length file, or a SQLite header with no
    /// tables (a new file another store is setting up). Nothing to lose.
    Blank,
    /// Tables of something else and no livesettings meta table.
    Foreign {
        /// What was found, for the error message.
        reason: String,
    },
}

/// Reads the schema (`sqlite_master`) through `conn` without writing.
pub(crate) fn identify(conn: &Connection, path: &Path) -> Result<Found> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))
                .and_then(|rows| rows.collect())
        })
        .context(path, "cannot read the database (is it a SQLite file?)")?;
    let has = |name: &str| names.iter().any(|found| found == name);
    if has("livesettings_meta") || (has("settings") && has("settings_log")) {
        return Ok(Found::Livesettings);
    }
    if names.is_empty() {
        return Ok(Found::Blank);
    }
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > shown.len() {
        format!(" and {} more", names.len() - shown.len())
    } else {
        String::new()
    };
    Ok(Found::Foreign {
        reason: format!(
            "a SQLite database of something else (it holds {}{more}, and no livesettings_meta table); \
             run `livesettings init --adopt` (Options::adopt_foreign) to add the livesettings tables to it",
            shown.join(", ")
        ),
    })
}

/// The message for a file a read-only store finds empty.
pub(crate) const EMPTY_FILE: &str = "empty file, not a livesettings database yet (run init)";
