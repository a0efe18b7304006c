//! The bridge's error type: the store's errors, the NATS client's, and the
//! bridge's own refusals.

use std::fmt;
use std::path::PathBuf;

/// Everything that can stop or refuse the fleet bridge.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncError {
    /// The local database (opening it, a SQLite statement).
    Store(crate::Error),
    /// The NATS server or the JetStream API.
    Nats {
        /// What the bridge was doing.
        context: String,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another bridge runs on this database (one bridge per file).
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// An option is out of range (a bucket name NATS refuses, zero replicas).
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file beside the database (the lock, the status record).
    Io {
        /// What the bridge was doing.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The bridge's result type.
pub type SyncResult<T> = std::result::Result<T, SyncError>;

impl SyncError {
    pub(crate) fn nats(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SyncError {
        SyncError::Nats {
            context: context.into(),
            source: source.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> SyncError {
        SyncError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<crate::Error> for SyncError {
    fn from(error: crate::Error) -> Self {
        SyncError::Store(error)
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Store(error) => write!(f, "{error}"),
            SyncError::Nats { context, source } => write!(f, "nats: {context}: {source}"),
            SyncError::Locked { path, holder } => write!(
                f,
                "another sync bridge runs on this database ({holder}; lock {})",
                path.display()
            ),
            SyncError::InvalidOption { name, reason } => write!(f, "invalid {name}: {reason}"),
            SyncError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Store(error) => Some(error),
            SyncError::Nats { source, .. } => Some(source.as_ref()),
            SyncError::Io { source, .. } => Some(source),
            SyncError::Locked { .. } | SyncError::InvalidOption { .. } => None,
        }
    }
}
