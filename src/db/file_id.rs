//! Which file is at a path: (device, inode, birth time).
//!
//! A database renamed over or deleted under an open WAL connection stays
//! open by inode: writes return Ok and land in the orphan. Comparing the
//! path's identity with the one the connections opened catches it. The
//! birth time (where the filesystem records one) tells a file from a later
//! one that reuses its freed inode number, which happens within
//! milliseconds on ext4 and tmpfs.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The identity of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    born: Option<SystemTime>,
}

impl FileId {
    /// The identity of the file at `path` (following symlinks), `None` when
    /// nothing is there.
    pub(crate) fn of(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileId::from_metadata(&meta))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) fn from_metadata(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
        }
    }

    /// Whether `meta` describes the same inode (ignoring the birth time,
    /// for a file this process holds open, whose inode cannot be reused).
    pub(crate) fn same_inode(&self, meta: &std::fs::Metadata) -> bool {
        self.dev == meta.dev() && self.ino == meta.ino()
    }
}

/// [`FileId::of`] with the error as an [`Error::Io`].
pub(crate) fn file_at(path: &Path) -> Result<Option<FileId>> {
    FileId::of(path).map_err(|source| Error::Io {
        context: format!("cannot stat {}", path.display()),
        source,
    })
}

/// The path SQLite really opens: it resolves symlinks and puts `-wal` and
/// `-shm` beside the target, so file events and side files are looked for
/// there. A missing file resolves to itself.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Creates the parent folders and an empty database file with `mode` when
/// the file does not exist yet. An existing file keeps its permissions.
pub(crate) fn create_private(path: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            context: format!("cannot create the folder {}", parent.display()),
            source,
        })?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            context: format!("cannot create the database file {}", path.display()),
            source,
        }),
    }
}

/// `path` with `suffix` appended to its file name (`settings.db-wal`).
pub(crate) fn side_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
