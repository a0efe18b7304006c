//! The pair of connections on the file at the path, opened together and
//! closed together, and how they leave a file that was replaced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::Access;
use crate::db::file_id::{FileId, file_at, side_path};
use crate::db::side_files::{OrphanPin, SharedPin, SideFiles};
use crate::engine::reader::Reader;
use crate::engine::writer::Writer;
use crate::error::{Error, Result};
use crate::options::Options;

/// How a store opens the file it finds at the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Set the file up when needed (at open, or for a write).
    Active,
    /// The watcher following a file: leave a file that is not a WAL
    /// database yet to whoever is creating it.
    Passive,
}

/// Whether the file at `path` looks set up, read without opening it through
/// SQLite: a SQLite header in WAL mode (read and write versions 2, what every
/// livesettings writer switches to first), or any SQLite file left alone for
/// a second (a database in rollback mode that a deploy tool renamed over
/// the path).
fn is_set_up(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.read_exact(&mut header).is_err() || !header.starts_with(b"SQLite format 3\0") {
        return false;
    }
    if header[18] == 2 && header[19] == 2 {
        return true;
    }
    file.metadata()
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age >= Duration::from_secs(1))
}

pub(crate) struct Connections {
    pub(crate) writer: Writer,
    pub(crate) reader: Reader,
    /// The file both connections have open.
    pub(crate) file: FileId,
    /// Where that file really is (the path with symlinks resolved, at open).
    resolved: PathBuf,
    /// The database's random id from the meta table: two files at the path
    /// over time are told apart in the log by it (a copy keeps its
    /// original's id).
    pub(crate) instance: Option<String>,
    side_files: SideFiles,
    /// A read-only store's connections: they never remove side files.
    read_only: bool,
    /// For connections opened `immutable` (a read-only store on a database
    /// without side files): the file as it was then. When it changes, the
    /// connections must be opened again to see it.
    immutable: Option<Stamp>,
}

/// What an immutable read depends on: the database file's identity, size
/// and modification time, and whether its side files exist.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    file: Option<(FileId, u64, Option<std::time::SystemTime>)>,
    wal: bool,
    shm: bool,
}

impl Stamp {
    fn of(resolved: &Path) -> Stamp {
        let file = std::fs::metadata(resolved).ok().map(|meta| {
            (
                FileId::from_metadata(&meta),
                meta.len(),
                meta.modified().ok(),
            )
        });
        Stamp {
            file,
            wal: side_path(resolved, "-wal").exists(),
            shm: side_path(resolved, "-shm").exists(),
        }
    }
}

/// How a read-only store can open the database at `resolved` without
/// creating anything. Measured with the bundled SQLite: a read-only
/// connection on a WAL database creates `-wal` and `-shm` when they are
/// missing (owned by this process: the reported bug), or fails with
/// `SQLITE_READONLY_DIRECTORY` in a folder it cannot write; with both side
/// files present it reads through them and sees other writers' commits.
/// Without a `-wal` (or with an empty one) every commit is in the main
/// file, so an immutable read is correct until the file changes. A `-wal`
/// with commits but no `-shm` (a writer crashed) cannot be read without
/// creating the `-shm`.
fn read_only_access(path: &Path, resolved: &Path) -> Result<Access> {
    let wal = std::fs::metadata(side_path(resolved, "-wal")).ok();
    let shm = side_path(resolved, "-shm").exists();
    match (wal, shm) {
        (Some(_), true) => Ok(Access::ReadOnly),
        (Some(wal), false) if wal.len() > 0 => Err(Error::Unusable {
            path: path.to_owned(),
            reason: "its -wal holds commits that are not in the database file yet, and its -shm is \
                     missing: a read-only store cannot read them without creating the -shm (open it \
                     once with write access); nothing was written"
                .to_owned(),
        }),
        _ => Ok(Access::Immutable),
    }
}

impl Connections {
    /// Opens both connections on the file at `path` (applying the schema).
    /// `resolved` is the path with symlinks resolved, where SQLite keeps the
    /// side files.
    /// A read-only store (`options.is_read_only()`) opens them read-only,
    /// and immutable when the side files are missing.
    pub(crate) fn open(
        path: &Path,
        resolved: &Path,
        options: &Options,
        follow: Follow,
    ) -> Result<Connections> {
        let busy_timeout = options.busy_timeout();
        let read_only = options.is_read_only();
        let missing = || Error::DatabaseMissing {
            path: path.to_owned(),
        };
        let file = file_at(path)?.ok_or_else(missing)?;
        if follow == Follow::Passive && !is_set_up(path) {
            // A new file another process is still creating (empty, or not yet
            // switched to WAL): racing it to set up the schema makes one side
            // fail with "database is locked". Look again later; a write of
            // this store's own sets it up.
            return Err(Error::Unusable {
                path: path.to_owned(),
                reason: "a new database file is not set up yet (another process is creating it); \
                         following it once it is"
                    .to_owned(),
            });
        }
        // Held until both connections have read the file (and so hold
        // SQLite's SHARED lock): see `SharedPin`.
        let pin = read_only
            .then(|| SharedPin::on(resolved, busy_timeout))
            .flatten();
        let access = if read_only {
            read_only_access(path, resolved)?
        } else {
            Access::ReadWrite
        };
        let stamp = (access == Access::Immutable).then(|| Stamp::of(resolved));
        let writer = Writer::open(
            path,
            busy_timeout,
            options.durability(),
            access,
            options.adopts_foreign(),
        )?;
        let reader = match Reader::open(path, busy_timeout, access) {
            Ok(reader) => reader,
            Err(error) => {
                writer.close();
                return Err(error);
            }
        };
        drop(pin);
        let instance = writer
            .connection()
            .query_row(
                "SELECT value FROM livesettings_meta WHERE name = 'instance_id'",
                [],
                |row| row.get(0),
            )
            .ok();
        let connections = Connections {
            writer,
            reader,
            file,
            resolved: resolved.to_owned(),
            instance,
            side_files: SideFiles::record(resolved),
            read_only,
            immutable: stamp,
        };
        if file_at(path)? != Some(file) {
            // Replaced while opening: which file each connection got is
            // unknown. Leave without touching side files; the caller retries.
            connections.close_orphaned(false);
            return Err(Error::FileReplaced {
                path: path.to_owned(),
            });
        }
        Ok(connections)
    }

    /// Whether these are immutable connections on a file that changed since
    /// (or got side files: a writer opened it): they cannot see the change
    /// and must be opened again.
    pub(crate) fn needs_reopen(&self) -> bool {
        self.immutable
            .as_ref()
            .is_some_and(|stamp| *stamp != Stamp::of(&self.resolved))
    }

    /// Whether the file at `path` is the one the connections have open.
    pub(crate) fn is_current(&self, path: &Path) -> Result<bool> {
        Ok(file_at(path)? == Some(self.file))
    }

    /// Closes both connections normally (the file is still at the path).
    pub(crate) fn close(self) {
        self.writer.close();
        self.reader.close();
    }

    /// Closes the connections on a file the path no longer leads to: as an
    /// orphan when it is gone from where it really was (replaced or
    /// deleted), normally when it is still there (a symlink was retargeted
    /// or removed: its WAL must be checkpointed into it, not discarded).
    pub(crate) fn close_left(self) {
        if file_at(&self.resolved).ok().flatten() == Some(self.file) {
            self.close();
        } else {
            self.close_orphaned(true);
        }
    }

    /// Closes both connections on a file that is no longer at the path
    /// (replaced or deleted), without letting SQLite checkpoint into it or
    /// delete side files by name, then removes the side files that are
    /// provably its own when `remove_side_files`.
    pub(crate) fn close_orphaned(self, remove_side_files: bool) {
        let pin = OrphanPin::new(self.file);
        if pin.is_none() {
            log::warn!(
                "closing a replaced database unpinned: SQLite may delete side files by name"
            );
        }
        self.writer.close();
        self.reader.close();
        if remove_side_files && !self.read_only {
            self.side_files.remove_stale();
        }
        drop(pin);
    }
}
