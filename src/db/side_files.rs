//! The `-wal` and `-shm` files of a replaced database, and leaving them
//! safely.
//!
//! When a complete database is renamed over a live WAL database, the old
//! database's side files stay at the path, and a connection opened on the
//! new file would read the old WAL as its own. Two things go wrong if they
//! are handled naively, and both were seen with two processes:
//!
//! - SQLite deletes `-wal` and `-shm` **by name** when the last connection
//!   to a database closes. The last process to leave the replaced database
//!   would delete the side files the new database's users created
//!   meanwhile: they keep writing to unlinked files, later openers create
//!   new ones, writes are lost and "disk I/O error"s follow. So before
//!   closing its connections to a replaced file the store holds a shared
//!   lock on it (an open-file-description lock on SQLite's SHARED byte
//!   range): SQLite's close then cannot take its EXCLUSIVE lock, and
//!   neither checkpoints into the orphan nor deletes anything.
//! - The store removes the old side files itself, only when they are
//!   provably the ones its connections used: same device, inode and birth
//!   time (an inode number alone is reused within milliseconds). Side files
//!   another process already replaced are left alone.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::db::file_id::{FileId, side_path};

/// The side files of the database the connections have open, as found
/// right after opening.
#[derive(Debug, Default)]
pub(crate) struct SideFiles {
    files: Vec<(PathBuf, FileId)>,
}

impl SideFiles {
    /// Records the side files of `resolved_db` as they are now.
    pub(crate) fn record(resolved_db: &Path) -> SideFiles {
        let files = ["-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let side = side_path(resolved_db, suffix);
                FileId::of(&side).ok().flatten().map(|id| (side, id))
            })
            .collect();
        SideFiles { files }
    }

    /// Removes the recorded side files that are still the same files. Call
    /// only after this store's connections to the old database are closed,
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

/// A shared lock on a replaced database file that keeps SQLite from
/// checkpointing into it or deleting side files by name when this process
/// closes its last connection to it. Released on drop.
pub(crate) struct OrphanPin {
    _file: File,
}

/// SQLite's lock bytes (see `os_unix.c`): connections take read locks in the
/// SHARED range, and the EXCLUSIVE lock a closing connection needs before it
/// checkpoints and deletes the WAL is a write lock over all of it.
const PENDING_BYTE: i64 = 0x4000_0000;
const SHARED_FIRST: i64 = PENDING_BYTE + 2;
const SHARED_SIZE: i64 = 510;

impl OrphanPin {
    /// Pins the file `old` that this process still has open (through its
    /// SQLite connections), found through `/proc/self/fd`. `None` when it
    /// cannot be found or locked; the caller then proceeds unpinned.
    pub(crate) fn new(old: FileId) -> Option<OrphanPin> {
        let file = open_held_file(old)?;
        let lock = nix::libc::flock {
            l_type: nix::libc::F_RDLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: SHARED_FIRST,
            l_len: SHARED_SIZE,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)) {
            Ok(_) => Some(OrphanPin { _file: file }),
            Err(error) => {
                log::warn!("cannot lock the replaced database file: {error}");
                None
            }
        }
    }
}

/// A shared lock on a database file held while a read-only store opens it
/// through existing `-wal`/`-shm`: the last writer to close cannot take
/// the EXCLUSIVE lock it needs to checkpoint and delete them meanwhile, so
/// SQLite never has to create them (they would be this process's). Opened
/// read-only; creates nothing. Released on drop, once the store's own
/// connections hold their SHARED locks.
pub(crate) struct SharedPin {
    _file: File,
}

impl SharedPin {
    /// Takes the lock, retrying briefly while a writer holds its EXCLUSIVE
    /// lock (a close or a checkpoint takes milliseconds); `None` when the
    /// file cannot be opened or the lock is not granted within `patience`.
    pub(crate) fn on(db: &Path, patience: std::time::Duration) -> Option<SharedPin> {
        let file = File::open(db).ok()?;
        let lock = nix::libc::flock {
            l_type: nix::libc::F_RDLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: SHARED_FIRST,
            l_len: SHARED_SIZE,
            l_pid: 0,
        };
        let deadline = std::time::Instant::now() + patience;
        loop {
            match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)) {
                Ok(_) => return Some(SharedPin { _file: file }),
                Err(error) if std::time::Instant::now() >= deadline => {
                    log::warn!("cannot pin {} while opening it: {error}", db.display());
                    return None;
                }
                // Not a wait for a result: a bounded retry of a lock.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }
}

/// Opens a new description of a file this process holds open, even when it
/// has no name any more.
fn open_held_file(target: FileId) -> Option<File> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in entries.flatten() {
        let link = entry.path();
        let Ok(meta) = std::fs::metadata(&link) else {
            continue;
        };
        if target.same_inode(&meta) {
            return File::open(&link).ok();
        }
    }
    None
}

/// Serializes following a replaced file among the stores of every process
/// on this database: checking a side file's identity and removing it is not
/// atomic, so without it one store can remove the side file another store
/// just created for the new database. Held from before the old connections
/// close until the new ones have opened (and created the new side files).
/// A lock file beside the database (`-livesettings-follow`), locked with
/// `flock`, which never interferes with SQLite's own POSIX locks. Released
/// on drop.
pub(crate) struct FollowLock {
    _lock: nix::fcntl::Flock<File>,
}

impl FollowLock {
    /// Waits for the lock; `None` when the lock file cannot be created (a
    /// read-only folder, where no side file can be created either).
    pub(crate) fn acquire(resolved_db: &Path) -> Option<FollowLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = side_path(resolved_db, "-livesettings-follow");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|error| log::debug!("no follow lock at {}: {error}", path.display()))
            .ok()?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
            Ok(lock) => Some(FollowLock { _lock: lock }),
            Err((_, error)) => {
                log::warn!("cannot lock {}: {error}", path.display());
                None
            }
        }
    }
}
