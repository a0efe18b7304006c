//! Named checkpoints: a name for a change-log position, stored as one
//! `livesettings_meta` row per checkpoint, `checkpoint:<name>` →
//! `{"seq": N, "at": "YYYY-MM-DDTHH:MM:SS.sssZ"}`. In the meta table, so
//! every process sees them and no schema change was needed (as for the
//! temporary overrides' `override:<key>` rows).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result, SqliteContext};

/// The longest checkpoint name, in bytes.
pub const MAX_CHECKPOINT_NAME_BYTES: usize = 64;

/// A named change-log position.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The name: 1 to 64 bytes of `[A-Za-z0-9_.-]`, not all digits.
    pub name: String,
    /// The change-log seq it names: the state after that commit.
    pub seq: i64,
    /// When it was recorded (or last moved), as UTC
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub at: String,
}

/// Checks a checkpoint name: 1 to 64 bytes of `[A-Za-z0-9_.-]`, and not
/// all digits (a number is a seq wherever a checkpoint can be named).
///
/// # Errors
/// [`Error::InvalidValue`] naming what is wrong.
pub fn validate_checkpoint_name(name: &str) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::InvalidValue {
            key: crate::error::shorten(name),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_CHECKPOINT_NAME_BYTES {
        return refuse(format!(
            "a checkpoint name is 1 to {MAX_CHECKPOINT_NAME_BYTES} bytes (this one is {})",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return refuse(format!(
            "a checkpoint name is made of A-Z a-z 0-9 _ . - ({bad:?} is not allowed)"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return refuse("a checkpoint name cannot be all digits (that is a seq)".to_owned());
    }
    Ok(())
}

/// The meta-table names of checkpoints: `checkpoint:` then the name.
const PREFIX: &str = "checkpoint:";

/// Reads `(name, seq, at)` from a meta row; the name without its prefix.
const COLUMNS: &str = "substr(name, length('checkpoint:') + 1), \
     CAST(json_extract(value, '$.seq') AS INTEGER), \
     coalesce(json_extract(value, '$.at'), '')";

/// Only rows whose value is a JSON object with an integer seq (a
/// hand-edited row that is not is left out).
const READABLE: &str = "json_valid(value) AND json_type(value, '$.seq') = 'integer'";

fn checkpoint(row: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        name: row.get(0)?,
        seq: row.get(1)?,
        at: row.get(2)?,
    })
}

/// Records `seq` under `name`; returns the seq it named before, if any.
pub(crate) fn put(conn: &Connection, path: &Path, name: &str, seq: i64) -> Result<Option<i64>> {
    let before = get(conn, path, name)?.map(|found| found.seq);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO livesettings_meta (name, value) VALUES (?1, \
         json_object('seq', ?2, 'at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    )
    .and_then(|mut statement| statement.execute((format!("{PREFIX}{name}"), seq)))
    .context(path, "cannot record the checkpoint")?;
    Ok(before)
}

/// The checkpoint named `name`, if there is one.
pub(crate) fn get(conn: &Connection, path: &Path, name: &str) -> Result<Option<Checkpoint>> {
    let sql = format!("SELECT {COLUMNS} FROM livesettings_meta WHERE name = ?1 AND {READABLE}");
    conn.prepare_cached(&sql)
        .and_then(|mut statement| {
            statement
                .query_row([format!("{PREFIX}{name}")], checkpoint)
                .optional()
        })
        .context(path, "cannot read the checkpoints")
}

/// Every checkpoint, by seq then name.
pub(crate) fn list(conn: &Connection, path: &Path) -> Result<Vec<Checkpoint>> {
    // 'checkpoint;' is the first name after every 'checkpoint:…'.
    let sql = format!(
        "SELECT {COLUMNS} FROM livesettings_meta \
         WHERE name >= 'checkpoint:' AND name < 'checkpoint;' AND {READABLE} ORDER BY 2, 1"
    );
    let mut statement = conn
        .prepare_cached(&sql)
        .context(path, "cannot read the checkpoints")?;
    let rows = statement
        .query_map([], checkpoint)
        .context(path, "cannot read the checkpoints")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the checkpoints")
}

/// Deletes the checkpoint `name`; returns whether there was one.
pub(crate) fn delete(conn: &Connection, path: &Path, name: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM livesettings_meta WHERE name = ?1")
        .and_then(|mut statement| statement.execute([format!("{PREFIX}{name}")]))
        .map(|deleted| deleted > 0)
        .context(path, "cannot delete the checkpoint")
}

#[cfg(test)]
mod tests {
    use super::validate_checkpoint_name;

    #[test]
    fn checkpoint_names_follow_the_documented_alphabet() {
        for good in [
            "before-deploy",
            "v1.2_rc",
            "a",
            &"x".repeat(64),
            "2026-12-02",
        ] {
            assert!(validate_checkpoint_name(good).is_ok(), "{good}");
        }
        for bad in ["", "123", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_checkpoint_name(bad).is_err(), "{bad}");
        }
    }
}
