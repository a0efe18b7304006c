//! Why an open or set-up failed when SQLite only says "disk I/O error" or
//! "unable to open database file": what `access(2)` says about writing the
//! file and its folder, and whether the filesystem is full.

use std::path::Path;

use nix::errno::Errno;
use nix::unistd::AccessFlags;

use crate::error::Error;

/// The folder a database file lives in.
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Why this process cannot write the existing file at `path` or create
/// files beside it (SQLite's `-wal` and `-shm`), if it cannot: `None` when
/// both are writable (or the file does not exist and the folder is).
pub(crate) fn write_blocker(path: &Path) -> Option<String> {
    let dir = folder(path);
    let file_check = match nix::unistd::access(path, AccessFlags::W_OK) {
        Ok(()) | Err(Errno::ENOENT) => None,
        Err(errno) => Some(describe("the database file", path, errno)),
    };
    file_check.or_else(|| match nix::unistd::access(dir, AccessFlags::W_OK) {
        Ok(()) | Err(Errno::ENOENT) => None,
        Err(errno) => Some(describe("the folder", dir, errno)),
    })
}

fn describe(what: &str, path: &Path, errno: Errno) -> String {
    let path = path.display();
    match errno {
        Errno::EROFS => format!("{what} {path} is on a read-only filesystem"),
        Errno::EPERM => format!(
            "writing {what} {path} is not permitted (an immutable file or folder, `chattr +i`?)"
        ),
        Errno::EACCES => format!("permission denied to write {what} {path}"),
        other => format!("{what} {path} cannot be written: {}", other.desc()),
    }
}

/// "the filesystem … is full" when it has no free block left.
fn disk_full(path: &Path) -> Option<String> {
    let dir = folder(path);
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    (stats.blocks_available() == 0).then(|| format!("the filesystem of {} is full", dir.display()))
}

/// The diagnosed cause of a failure to write or set up `path`, if any.
pub(crate) fn cause(path: &Path) -> Option<String> {
    write_blocker(path).or_else(|| disk_full(path))
}

/// Replaces a low-level error from opening or setting up `path` (SQLite's
/// I/O, open, full or read-only errors, a failed file creation) by
/// [`Error::CannotWrite`] naming the diagnosed cause; other errors, and
/// errors with no diagnosable cause, are returned as they are.
pub(crate) fn explain(error: Error, path: &Path) -> Error {
    use rusqlite::ErrorCode;
    let low_level = match &error {
        Error::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(
                ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
            )
        ),
        Error::ReadOnly { .. } | Error::Io { .. } => true,
        _ => false,
    };
    if !low_level {
        return error;
    }
    let Some(cause) = cause(path) else {
        return error;
    };
    match error {
        Error::Sqlite { source, .. } => Error::CannotWrite {
            path: path.to_owned(),
            cause,
            source: Some(source),
        },
        Error::Io { context, source } => Error::CannotWrite {
            path: path.to_owned(),
            cause: format!("{cause} ({context}: {source})"),
            source: None,
        },
        _ => Error::CannotWrite {
            path: path.to_owned(),
            cause,
            source: None,
        },
    }
}
