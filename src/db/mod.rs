//! The database: connections, the schema, and every SQL statement the
//! store runs.

pub(crate) mod change_log;
pub(crate) mod checkpoints;
pub(crate) mod diagnose;
pub(crate) mod file_id;
pub(crate) mod history;
pub(crate) mod identify;
pub(crate) mod overrides;
pub(crate) mod schema;
pub(crate) mod side_files;
pub(crate) mod writes;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result, SqliteContext};

/// How a connection opens the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read and write (a store that writes); the caller switches to WAL.
    ReadWrite,
    /// `SQLITE_OPEN_READONLY` on a database whose `-wal` and `-shm` exist:
    /// SQLite (≥ 3.22) reads a WAL database through them, and follows other
    /// writers' commits, without creating anything.
    ReadOnly,
    /// Read-only and `immutable=1`: no locks and no side files. For a
    /// database without `-wal`/`-shm`, where a read-only connection would
    /// create both (in a folder it may write) or fail (in one it may not).
    /// Correct only while the file does not change: the store opens it again
    /// once it does (see `Connections::needs_reopen`).
    Immutable,
}

/// The name to give SQLite for `path` so that it is always a file name.
/// The bundled SQLite is built with `SQLITE_USE_URI`, so a name starting
/// with `file:` is read as a URI even without `SQLITE_OPEN_URI`
/// (`file:u.db?mode=memory` would open an in-memory database); `./` in
/// front keeps it a path. Other names are left as they are.
pub(crate) fn literal_path(path: &Path) -> PathBuf {
    if path.as_os_str().as_bytes().starts_with(b"file:") {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

/// An `immutable=1` URI for `path`, built here from the absolute path with
/// every byte outside the unreserved set percent-encoded, so nothing in the
/// name can add a URI parameter.
fn immutable_uri(path: &Path) -> Result<OsString> {
    let absolute = std::path::absolute(path).map_err(|source| Error::Io {
        context: format!("cannot make {} absolute", path.display()),
        source,
    })?;
    let mut uri = String::from("file://");
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(OsString::from(uri))
}

/// Opens one connection in WAL mode with `synchronous=NORMAL` and the busy
/// timeout. The file must exist (see [`crate::db::file_id::create_private`]).
#[cfg(test)]
pub(crate) fn open_connection(
    path: &Path,
    busy_timeout: Duration,
    cache_kib: u32,
) -> Result<Connection> {
    let conn = open_with_access(path, busy_timeout, cache_kib, Access::ReadWrite)?;
    switch_to_wal(&conn, path)?;
    Ok(conn)
}

/// Opens one connection as `access` says, with the busy timeout and the
/// page cache size, and changes nothing in the file. Never with
/// `SQLITE_OPEN_URI` for the caller's path (see [`literal_path`]); never
/// creating the file. A read-only connection never checkpoints on close.
pub(crate) fn open_with_access(
    path: &Path,
    busy_timeout: Duration,
    cache_kib: u32,
    access: Access,
) -> Result<Connection> {
    let (name, flags) = match access {
        Access::ReadWrite => (
            literal_path(path).into_os_string(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        Access::ReadOnly => (
            literal_path(path).into_os_string(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        Access::Immutable => (
            immutable_uri(path)?,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        ),
    };
    let conn =
        Connection::open_with_flags(name, flags).context(path, "cannot open the database")?;
    conn.busy_timeout(busy_timeout)
        .context(path, "cannot set the busy timeout")?;
    if access != Access::ReadWrite {
        // Belt and braces: SQLite refuses writes on a read-only connection
        // anyway, and the last connection to close would otherwise try to
        // checkpoint into the file.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .context(path, "cannot turn off the checkpoint on close")?;
        conn.pragma_update(None, "query_only", true)
            .context(path, "cannot set query_only")?;
    }
    // Negative: a size in KiB. The snapshot is the cache that matters; the
    // connections only need the pages of a write or a pass.
    conn.pragma_update(None, "cache_size", -i64::from(cache_kib))
        .context(path, "cannot set the page cache size")?;
    Ok(conn)
}

/// Switches a read-write connection to WAL mode with `synchronous=NORMAL`
/// (a no-op on a database already in WAL mode).
pub(crate) fn switch_to_wal(conn: &Connection, path: &Path) -> Result<()> {
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
        .context(path, "cannot set synchronous=NORMAL")
}
