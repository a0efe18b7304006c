//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in livesettings.
///
/// Messages are lowercase and lead with the context:
/// `invalid key 'a..b': empty segment at byte 2`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A key or prefix does not follow the key rules (1 to 512 bytes, segments
    /// of `[A-Za-z0-9_-]` separated by single dots).
    InvalidKey {
        /// The rejected key, possibly shortened for display.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is not valid JSON, or is too large or too deeply nested.
    InvalidValue {
        /// The key the value was meant for.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A nested JSON tree cannot be flattened into dotted keys, or stored keys
    /// cannot be rebuilt into a tree (a key is both a value and a section).
    Conflict {
        /// The key that is both a leaf and a section.
        key: String,
        /// What collides with it.
        reason: String,
    },
    /// The database refused a row that would make one key both a value and
    /// a section (its tree-shape triggers, schema version 3): SQL run through
    /// [`Store::write`](crate::Store::write) inserted a key below a key that
    /// holds a value, or a value at a key that has keys below it. The
    /// statement changed nothing. To turn a value into a section (or back),
    /// delete first, then insert, in the same transaction.
    Misplaced {
        /// The database's reason (which rule the key breaks).
        reason: String,
    },
    /// A stored value does not deserialize into the requested type.
    Decode {
        /// The key or prefix that was read.
        key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// Another connection held the database lock for longer than the busy
    /// timeout. Nothing was written; retrying later is safe.
    Busy {
        /// The database file.
        path: PathBuf,
    },
    /// The database file is no longer at its path (deleted, or its folder
    /// removed). Reads keep serving the last good snapshot; writes fail until
    /// a database is back at the path.
    DatabaseMissing {
        /// The database file.
        path: PathBuf,
    },
    /// A write on a store that does not write: one opened with
    /// [`Options::read_only`](crate::Options::read_only), or one that
    /// switched to read-only at open because this process cannot write the
    /// file or its folder ([`Store::read_only_cause`](crate::Store::read_only_cause)
    /// says why), or SQLite refusing a write (`SQLITE_READONLY`). Reads keep
    /// working; nothing was written.
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The file at the path is not a usable livesettings database (not
    /// SQLite, corrupt, or written by a newer schema).
    Unusable {
        /// The database file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file at the path is a SQLite database of something else (it has
    /// tables but no livesettings meta table), or an empty file a read-only
    /// open cannot set up. Nothing was written to it: livesettings only adds
    /// its schema to a file it created, to an empty one when opened for
    /// writing, or to a foreign one with
    /// [`Options::adopt_foreign`](crate::Options::adopt_foreign)
    /// (`livesettings init --adopt`).
    NotLivesettings {
        /// The database file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// Opening or setting up the database failed because this process cannot
    /// write where it lives: a read-only filesystem, an immutable file or
    /// folder, missing permissions, or a full disk (diagnosed from
    /// `access(2)` and `statvfs(2)` after SQLite's error). Nothing was
    /// written. Commands that only read open the store read-only, which
    /// needs none of this.
    CannotWrite {
        /// The database file.
        path: PathBuf,
        /// The diagnosed cause, e.g. "the folder /srv is on a read-only filesystem".
        cause: String,
        /// SQLite's error, when it was SQLite that failed.
        source: Option<rusqlite::Error>,
    },
    /// A validator registered for a section refused a write.
    Rejected {
        /// The key whose value was refused.
        key: String,
        /// The validator's reason.
        reason: String,
    },
    /// An option passed to the builder is out of range.
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A store method that needs the store's engine was called from inside
    /// the closure of [`Store::write`](crate::Store::write) on the same store
    /// (it would wait for itself forever). Nothing was done.
    Reentrant {
        /// The method called.
        operation: &'static str,
    },
    /// The database file at the path was replaced (renamed over, or deleted
    /// and recreated) while a write was in progress, so it went to the old
    /// file: it is not in the file at the path. The store now follows the
    /// new file; retrying writes to it.
    FileReplaced {
        /// The database file.
        path: PathBuf,
    },
    /// SQL run inside [`Store::write`](crate::Store::write) tried something
    /// the store refuses (ending the store's transaction). Nothing was
    /// written.
    InvalidSql {
        /// What was refused.
        reason: String,
    },
    /// A timeout elapsed before the awaited state was reached.
    Timeout {
        /// What was awaited.
        what: String,
    },
    /// A change-log position that is not in the log (never written, or
    /// pruned).
    UnknownSeq {
        /// The requested seq.
        seq: i64,
        /// The oldest seq still in the log, if any.
        oldest: Option<i64>,
    },
    /// An error from SQLite.
    Sqlite {
        /// What livesettings was doing.
        context: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A file-system error.
    Io {
        /// What livesettings was doing, and on which path.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON document given to `import` / `merge` could not be parsed.
    Json {
        /// Where the document came from.
        context: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidKey { key, reason } => write!(f, "invalid key '{key}': {reason}"),
            Error::InvalidValue { key, reason } => {
                write!(f, "invalid value for key '{key}': {reason}")
            }
            Error::Conflict { key, reason } => write!(f, "conflicting key '{key}': {reason}"),
            Error::Misplaced { reason } => write!(f, "refused by the database: {reason}"),
            Error::Decode { key, source } => {
                write!(f, "cannot decode the value at '{key}': {source}")
            }
            Error::Busy { path } => write!(
                f,
                "database {} is locked by another connection (busy timeout elapsed); nothing was written, retry later",
                path.display()
            ),
            Error::DatabaseMissing { path } => write!(
                f,
                "database {} is missing (deleted or moved); serving the last loaded settings, writes fail until it is back",
                path.display()
            ),
            Error::ReadOnly { path } => write!(
                f,
                "database {} is read-only (opened read-only, or SQLite could not write it: check the permissions of the file, its folder and its -wal/-shm); nothing was written",
                path.display()
            ),
            Error::NotLivesettings { path, reason } => write!(
                f,
                "{} is not a livesettings database: {reason}; nothing was written",
                path.display()
            ),
            Error::CannotWrite {
                path,
                cause,
                source,
            } => {
                write!(f, "cannot write database {}: {cause}", path.display())?;
                if let Some(source) = source {
                    write!(f, " (SQLite: {source})")?;
                }
                write!(f, "; nothing was written")
            }
            Error::Unusable { path, reason } => {
                write!(f, "database {} is unusable: {reason}", path.display())
            }
            Error::Rejected { key, reason } => {
                write!(f, "write to '{key}' rejected by its validator: {reason}")
            }
            Error::InvalidOption { option, reason } => {
                write!(f, "invalid option {option}: {reason}")
            }
            Error::Reentrant { operation } => write!(
                f,
                "Store::{operation} was called from inside a Store::write closure on the same store \
                 (it would wait for itself); call it after the closure returns"
            ),
            Error::FileReplaced { path } => write!(
                f,
                "database {} was replaced while the write was in progress; it was not written to the file \
                 at the path (the store follows the new file now: retry)",
                path.display()
            ),
            Error::InvalidSql { reason } => write!(f, "refused SQL: {reason}"),
            Error::Timeout { what } => write!(f, "timed out waiting for {what}"),
            Error::UnknownSeq { seq, oldest } => match oldest {
                Some(oldest) => write!(
                    f,
                    "seq {seq} is not in the change log (oldest kept: {oldest})"
                ),
                None => write!(f, "seq {seq} is not in the change log (the log is empty)"),
            },
            Error::Sqlite { context, source } => write!(f, "{context}: {source}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Json { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Decode { source, .. } | Error::Json { source, .. } => Some(source),
            Error::Sqlite { source, .. } => Some(source),
            Error::CannotWrite {
                source: Some(source),
                ..
            } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// Wraps an error raised by SQL that a caller ran through
    /// [`Store::write`](crate::Store::write).
    fn from(source: rusqlite::Error) -> Self {
        Error::Sqlite {
            context: "sql statement failed".to_owned(),
            source,
        }
    }
}

/// Adds context to SQLite errors, turning lock timeouts into [`Error::Busy`].
pub(crate) trait SqliteContext<T> {
    fn context(self, path: &std::path::Path, what: &str) -> Result<T>;
}

impl<T> SqliteContext<T> for rusqlite::Result<T> {
    fn context(self, path: &std::path::Path, what: &str) -> Result<T> {
        self.map_err(|source| classify(source, path, what))
    }
}

/// Maps a SQLite error to the most specific variant.
pub(crate) fn classify(source: rusqlite::Error, path: &std::path::Path, what: &str) -> Error {
    use rusqlite::ErrorCode;
    if let Some(reason) = tree_shape_refusal(&source) {
        return Error::Misplaced { reason };
    }
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => Error::Busy {
            path: path.to_owned(),
        },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly {
            path: path.to_owned(),
        },
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => Error::Unusable {
            path: path.to_owned(),
            reason: format!("{what}: {source}"),
        },
        _ => Error::Sqlite {
            context: format!("{what} ({})", path.display()),
            source,
        },
    }
}

/// The reason of a `RAISE(ABORT, 'livesettings: …')` from the tree-shape
/// triggers (`SQLITE_CONSTRAINT_TRIGGER` with the `livesettings: ` prefix).
fn tree_shape_refusal(source: &rusqlite::Error) -> Option<String> {
    match source {
        rusqlite::Error::SqliteFailure(error, Some(message))
            if error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER =>
        {
            message.strip_prefix("livesettings: ").map(str::to_owned)
        }
        _ => None,
    }
}

impl Error {
    /// Gives an SQLite error raised inside a write (through `?`, without a
    /// path) the specific variant and the database path.
    pub(crate) fn in_database(self, path: &std::path::Path) -> Error {
        match self {
            Error::Sqlite { source, .. } => classify(source, path, "write failed"),
            other => other,
        }
    }
}

/// Shortens user input for error messages so a 10 MB key does not become a
/// 10 MB message.
pub(crate) fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.len() <= LIMIT {
        return text.escape_debug().to_string();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", text[..end].escape_debug(), text.len())
}
