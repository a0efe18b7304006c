//! Which file is at a path: (device, inode), and the WAL side files.
//!
//! A database renamed over or deleted under an open WAL connection stays
//! open by inode: writes return Ok and land in the orphan. Comparing the
//! path's identity with the one the connections opened catches it.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The identity of a file: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path`, `None` when nothing is there.
    pub(crate) fn of(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
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

/// The `-wal` and `-shm` files our connections use, as found after opening.
///
/// When a new file is renamed over a live WAL database, the old database's
/// side files stay at the path, and a connection opened on the new file would
/// read the old WAL as its own. After closing our connections we remove them
/// only when they are provably the ones we had open (same inode), never a
/// side file the new database created.
#[derive(Debug, Default)]
pub(crate) struct SideFiles {
    files: Vec<(PathBuf, FileId)>,
}

impl SideFiles {
    /// Records the side files of `db` as they are now.
    pub(crate) fn record(db: &Path) -> SideFiles {
        let files = ["-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let side = side_path(db, suffix);
                FileId::of(&side).ok().flatten().map(|id| (side, id))
            })
            .collect();
        SideFiles { files }
    }

    /// Removes the recorded side files that are still the same files. Call
    /// only after every connection to the old database was closed and only
    /// when a different database file is at the path.
    pub(crate) fn remove_stale(&self) {
        for (side, id) in &self.files {
            if FileId::of(side).ok().flatten() == Some(*id) {
                match std::fs::remove_file(side) {
                    Ok(()) => {
                        log::info!("removed {} left by the replaced database", side.display())
                    }
                    Err(error) => log::warn!("cannot remove stale {}: {error}", side.display()),
                }
            }
        }
    }
}

/// `path` with `suffix` appended to its file name (`settings.db-wal`).
pub(crate) fn side_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
