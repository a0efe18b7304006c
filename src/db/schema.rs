//! Keeping the schema in `sql/` in place: numbered migrations, the
//! change-log and tree-shape triggers, and the pragmas that say when it
//! changed.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result, SqliteContext};

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 3;

/// The numbered migrations, in order: entry `n` moves a database to version
/// `n + 1`.
const MIGRATIONS: [&str; 3] = [
    include_str!("../../sql/001_schema.sql"),
    include_str!("../../sql/002_replaced_values.sql"),
    include_str!("../../sql/003_tree_shape.sql"),
];
const TRIGGERS: &str = include_str!("../../sql/triggers.sql");
/// Every trigger of `triggers.sql`: one missing (dropped by an operator, or
/// a file older than version 3 without the tree-shape ones) makes the store
/// recreate them all.
const TRIGGER_NAMES: [&str; 6] = [
    "settings_log_before_insert",
    "settings_log_insert",
    "settings_log_update",
    "settings_log_delete",
    "settings_shape_insert",
    "settings_shape_update",
];

/// Creates whatever part of the schema is missing. Cheap (read-only) when
/// everything is in place, so it can run on every open.
pub(crate) fn ensure_schema(conn: &mut Connection, path: &Path) -> Result<()> {
    if let Some(version) = stored_version(conn, path)? {
        if version > SCHEMA_VERSION {
            return Err(Error::Unusable {
                path: path.to_owned(),
                reason: format!(
                    "schema version {version} is newer than this livesettings ({SCHEMA_VERSION})"
                ),
            });
        }
        if version == SCHEMA_VERSION && triggers_present(conn, path)? {
            return Ok(());
        }
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(path, "cannot begin the schema transaction")?;
    // Read again under the write lock: another process may have set it up
    // meanwhile (then there is nothing to do, and no DDL to make every other
    // store reload).
    let stored = stored_version(&tx, path)?;
    if stored == Some(SCHEMA_VERSION) && triggers_present(&tx, path)? {
        return Ok(());
    }
    let from = stored.unwrap_or(0).min(SCHEMA_VERSION);
    // Version 1's file is idempotent and also repairs a half-deleted schema.
    let first = from.saturating_sub(1) as usize;
    for migration in &MIGRATIONS[first..] {
        tx.execute_batch(migration)
            .context(path, "cannot create the livesettings schema")?;
    }
    tx.execute_batch(TRIGGERS)
        .context(path, "cannot create the change-log triggers")?;
    tx.commit().context(path, "cannot commit the schema")?;
    Ok(())
}

/// The schema version in the meta table, `None` before the schema exists.
pub(crate) fn stored_version(conn: &Connection, path: &Path) -> Result<Option<u32>> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'livesettings_meta'",
            [],
            |row| row.get(0),
        )
        .context(path, "cannot read the database (is it a SQLite file?)")?;
    if !has_meta {
        return Ok(None);
    }
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM livesettings_meta WHERE name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .context(path, "cannot read the schema version")?;
    Ok(text.and_then(|text| text.trim().parse().ok()))
}

/// Whether all the triggers of `triggers.sql` exist (change log and tree
/// shape).
pub(crate) fn triggers_present(conn: &Connection, path: &Path) -> Result<bool> {
    let count: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'settings' AND name IN (?1, ?2, ?3, ?4, ?5, ?6)",
            TRIGGER_NAMES,
            |row| row.get(0),
        )
        .context(path, "cannot list the change-log triggers")?;
    Ok(count == TRIGGER_NAMES.len() as i64)
}

/// Recreates the change-log and tree-shape triggers (all of them, so a
/// half-dropped set is consistent again) on a connection inside a write transaction.
pub(crate) fn create_triggers(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch(TRIGGERS)
        .context(path, "cannot recreate the change-log triggers")
}

/// `PRAGMA schema_version`: bumped by any DDL, ours or another writer's.
pub(crate) fn schema_cookie(conn: &Connection, path: &Path) -> Result<i64> {
    conn.prepare_cached("PRAGMA schema_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .context(path, "cannot read the schema cookie")
}

/// `PRAGMA data_version`: changes when another connection committed.
pub(crate) fn data_version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .context(path, "cannot read data_version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn schema_applies_idempotently_and_detects_dropped_triggers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        crate::db::file_id::create_private(&path, 0o600).unwrap();
        let mut conn = crate::db::open_connection(&path, Duration::from_secs(1), 512).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        let cookie = schema_cookie(&conn, &path).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        assert_eq!(
            schema_cookie(&conn, &path).unwrap(),
            cookie,
            "second open changed nothing"
        );
        assert_eq!(stored_version(&conn, &path).unwrap(), Some(SCHEMA_VERSION));
        for trigger in ["settings_log_update", "settings_shape_insert"] {
            conn.execute_batch(&format!("DROP TRIGGER {trigger}"))
                .unwrap();
            assert!(!triggers_present(&conn, &path).unwrap(), "{trigger}");
            ensure_schema(&mut conn, &path).unwrap();
            assert!(triggers_present(&conn, &path).unwrap(), "{trigger}");
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        crate::db::file_id::create_private(&path, 0o600).unwrap();
        let mut conn = crate::db::open_connection(&path, Duration::from_secs(1), 512).unwrap();
        ensure_schema(&mut conn, &path).unwrap();
        conn.execute_batch(
            "UPDATE livesettings_meta SET value = '99' WHERE name = 'schema_version'",
        )
        .unwrap();
        let error = ensure_schema(&mut conn, &path).unwrap_err();
        assert!(error.to_string().contains("newer"), "{error}");
    }
}
