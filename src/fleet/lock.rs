//! One bridge per database file: an exclusive `flock` on `<db>.sync.lock`,
//! held for the bridge's lifetime and released by the kernel when the
//! process dies, so a crashed bridge never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::{SyncError, SyncResult};

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".sync.lock");
    PathBuf::from(name)
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct BridgeLock {
    _file: Flock<File>,
}

impl BridgeLock {
    /// Takes the lock, or refuses with [`SyncError::Locked`] naming the
    /// holder when another bridge holds it.
    pub(crate) fn acquire(db: &Path, bucket: &str) -> SyncResult<BridgeLock> {
        let path = lock_path(db);
        let file = open(&path)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(SyncError::Locked {
                    path,
                    holder: holder.trim().to_owned(),
                });
            }
            Err((_, errno)) => {
                return Err(SyncError::io(
                    format!("cannot lock {}", path.display()),
                    std::io::Error::from(errno),
                ));
            }
        };
        let note = format!("pid {} syncing bucket {bucket}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(|error| SyncError::io(format!("cannot write {}", path.display()), error))?;
        Ok(BridgeLock { _file: file })
    }
}

/// Whether a bridge holds the lock of `db` now (taken and released at once
/// when free).
pub(crate) fn is_held(db: &Path) -> bool {
    let Ok(file) = File::open(lock_path(db)) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_released_on_drop) => false,
        Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
    }
}

fn open(path: &Path) -> SyncResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| SyncError::io(format!("cannot open {}", path.display()), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_bridge_on_the_same_database_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let first = BridgeLock::acquire(&db, "b").unwrap();
        assert!(is_held(&db));
        let refused = BridgeLock::acquire(&db, "b").unwrap_err();
        assert!(
            matches!(&refused, SyncError::Locked { holder, .. } if holder.contains(&std::process::id().to_string())),
            "{refused}"
        );
        drop(first);
        assert!(!is_held(&db));
        BridgeLock::acquire(&db, "b").unwrap();
    }
}
