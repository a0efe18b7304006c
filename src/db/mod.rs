//! The database: connections, the schema, and every SQL statement the
//! store runs.

pub(crate) mod change_log;
pub(crate) mod file_id;
pub(crate) mod history;
pub(crate) mod schema;
pub(crate) mod side_files;
pub(crate) mod writes;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, SqliteContext};

/// Opens one connection in WAL mode with `synchronous=NORMAL` and the busy
/// timeout. The file must exist (see [`crate::db::file_id::create_private`]).
pub(crate) fn open_connection(
    path: &Path,
    busy_timeout: Duration,
    cache_kib: u32,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).context(path, "cannot open the database")?;
    conn.busy_timeout(busy_timeout)
        .context(path, "cannot set the busy timeout")?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .context(path, "cannot read the database (is it a SQLite file?)")?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!(
            "{}: journal mode is {mode}, not wal (read-only file or folder?)",
            path.display()
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context(path, "cannot set synchronous=NORMAL")?;
    // Negative: a size in KiB. The snapshot is the cache that matters; the
    // connections only need the pages of a write or a pass.
    conn.pragma_update(None, "cache_size", -i64::from(cache_kib))
        .context(path, "cannot set the page cache size")?;
    Ok(conn)
}
