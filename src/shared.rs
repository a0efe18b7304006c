//! The state a store shares with its watcher thread, and the one path by
//! which the snapshot changes: catch up, swap, refresh live sections,
//! publish events.
//!
//! Lock order: writer, then applier. The watcher takes only the applier,
//! except to reopen, when it takes both in that order.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rusqlite::Transaction;

use crate::applier::{Applied, Applier, Probe};
use crate::change_log::{read_log, read_section};
use crate::error::{Error, Result};
use crate::events::ReloadReason;
use crate::file_id::{FileId, SideFiles};
use crate::live::LiveRegistry;
use crate::options::Options;
use crate::snapshot::Snapshot;
use crate::stats::Counters;
use crate::subscribers::Subscribers;
use crate::validation::Validators;
use crate::writer::Writer;

pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// This store's random id, stamped on the log rows it writes.
    pub(crate) session: String,
    pub(crate) options: Options,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    writer: Mutex<Option<Writer>>,
    applier: Mutex<Applier>,
    side_files: Mutex<SideFiles>,
    pub(crate) subscribers: Subscribers,
    pub(crate) lives: LiveRegistry,
    pub(crate) counters: Counters,
    pub(crate) validators: Validators,
    /// The seqs of the local transaction being committed, if any.
    committing: Mutex<Option<(i64, i64)>>,
    applied: (Mutex<i64>, Condvar),
}

/// What one watcher check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckOutcome {
    /// Nothing new.
    Unchanged,
    /// Something was applied (or looked at and found to be ours).
    Applied,
    /// The database file is missing.
    Missing,
}

impl Shared {
    /// Opens both connections on `path` (creating the file) and loads it.
    pub(crate) fn open(path: &Path, options: Options) -> Result<Shared> {
        crate::file_id::create_private(path, options.file_mode())?;
        let file = current_file(path)?;
        let writer = Writer::open(path, options.busy_timeout(), file)?;
        let mut applier = Applier::open(path, options.busy_timeout(), file)?;
        let snapshot = crate::applier::initial_load(&mut applier)?;
        let session = writer.random_id(path)?;
        let seq = snapshot.seq();
        let shared = Shared {
            path: path.to_owned(),
            session,
            side_files: Mutex::new(SideFiles::record(path)),
            subscribers: Subscribers::new(options.channel_capacity()),
            options,
            snapshot: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(Some(writer)),
            applier: Mutex::new(applier),
            lives: LiveRegistry::default(),
            counters: Counters::default(),
            validators: Validators::default(),
            committing: Mutex::new(None),
            applied: (Mutex::new(seq), Condvar::new()),
        };
        shared.counters.applied_seq.store(seq, Ordering::Relaxed);
        Ok(shared)
    }

    /// Runs `op` in one write transaction and applies what it changed to the
    /// snapshot before returning (read-your-writes). Returns the closure's
    /// value and the inclusive seq range written, if any.
    pub(crate) fn write<R>(
        &self,
        op: impl FnOnce(&Transaction<'_>, &Snapshot) -> Result<R>,
    ) -> Result<(R, Option<(i64, i64)>)> {
        let mut writer = lock(&self.writer);
        self.follow_file(&mut writer)?;
        let Some(connection) = writer.as_mut() else {
            return Err(Error::DatabaseMissing {
                path: self.path.clone(),
            });
        };
        let snapshot = self.snapshot.load_full();
        let validators = &self.validators;
        // The commit is durable once `transact` returns; if applying it then
        // fails, the error is returned and the next pass (the watcher's, or
        // the next write's) reloads everything.
        let committed = connection.transact(
            &self.path,
            (self.options.origin(), &self.session),
            |tx| op(tx, &snapshot),
            |tx, (first, last)| {
                if !validators.is_empty() {
                    let rows = read_log(tx, &self.path, first - 1)?;
                    let touched = rows.iter().map(|row| row.key.as_str());
                    validators.check_local(&snapshot, touched, |prefix| {
                        read_section(tx, &self.path, prefix)
                    })?;
                }
                // From COMMIT on, the watcher may apply these rows before this
                // thread does: tell it they are local.
                *lock(&self.committing) = Some((first, last));
                Ok(())
            },
        );
        let committed = match committed {
            Ok(committed) => committed,
            Err(error) => {
                *lock(&self.committing) = None;
                return Err(error);
            }
        };
        Counters::bump(&self.counters.local_commits, 1);
        let mut applier = lock(&self.applier);
        let applied = self.apply(&mut applier, committed.local, committed.reload);
        *lock(&self.committing) = None;
        applied?;
        Ok((committed.value, committed.local))
    }

    /// One watcher check: a `stat` and a pragma, and a pass when they say
    /// something changed.
    pub(crate) fn check(&self) -> Result<CheckOutcome> {
        Counters::bump(&self.counters.watcher_checks, 1);
        let mut applier = lock(&self.applier);
        match applier.probe()? {
            Probe::Unchanged => Ok(CheckOutcome::Unchanged),
            Probe::Changed => Ok(if self.apply(&mut applier, None, None)? {
                CheckOutcome::Applied
            } else {
                CheckOutcome::Unchanged
            }),
            Probe::FileMissing => {
                if applier.file().is_some() {
                    drop(applier);
                    self.release_lost_file();
                }
                Ok(CheckOutcome::Missing)
            }
            Probe::FileChanged | Probe::Detached => {
                drop(applier);
                let mut writer = lock(&self.writer);
                self.follow_file(&mut writer)?;
                Ok(CheckOutcome::Applied)
            }
        }
    }

    /// The file was deleted: close both connections (they hold the orphan,
    /// and an inode number may be reused by the next file), remove the side
    /// files that are provably the orphan's so the next database at the path
    /// cannot mistake them for its own, and keep serving the snapshot.
    fn release_lost_file(&self) {
        let mut writer = lock(&self.writer);
        let mut applier = lock(&self.applier);
        if FileId::of(&self.path).ok().flatten().is_none() {
            self.release_locked(&mut writer, &mut applier);
        }
    }

    fn release_locked(&self, writer: &mut Option<Writer>, applier: &mut Applier) {
        if applier.file().is_none() && writer.is_none() {
            return; // Released already.
        }
        log::warn!(
            "{}: the database file is gone; keeping the last loaded settings and waiting for it to come back",
            self.path.display()
        );
        if let Some(old) = writer.take() {
            old.close();
        }
        applier.detach();
        // Forget the side files once handled: after the close their inode
        // numbers are free, and a new database's `-wal` may reuse one.
        std::mem::take(&mut *lock(&self.side_files)).remove_stale();
    }

    /// Makes sure the connections have the file that is at the path now:
    /// when another file was renamed over it or it was recreated, close both
    /// connections, remove the old side files, reopen and reload.
    fn follow_file(&self, writer: &mut MutexGuard<'_, Option<Writer>>) -> Result<()> {
        let at_path = FileId::of(&self.path).map_err(|source| Error::Io {
            context: format!("cannot stat {}", self.path.display()),
            source,
        })?;
        let Some(at_path) = at_path else {
            self.release_locked(writer, &mut lock(&self.applier));
            return Err(Error::DatabaseMissing {
                path: self.path.clone(),
            });
        };
        let mut applier = lock(&self.applier);
        let writer_current = writer.as_ref().map(Writer::file) == Some(at_path);
        if writer_current && applier.file() == Some(at_path) {
            return Ok(());
        }
        log::info!(
            "{}: a different database file is at the path; reopening",
            self.path.display()
        );
        if let Some(old) = writer.take() {
            old.close();
        }
        applier.detach();
        // Taken, not just used: if the reopen below fails, a later attempt
        // must not match these inode numbers again (the next database's
        // `-wal` may reuse one).
        std::mem::take(&mut *lock(&self.side_files)).remove_stale();
        let file = current_file(&self.path)?;
        **writer = Some(Writer::open(&self.path, self.options.busy_timeout(), file)?);
        applier.attach(self.options.busy_timeout(), file)?;
        *lock(&self.side_files) = SideFiles::record(&self.path);
        self.apply(&mut applier, None, Some(ReloadReason::FileReplaced))?;
        Ok(())
    }

    /// Catches the snapshot up and publishes the result; says whether
    /// anything was published.
    fn apply(
        &self,
        applier: &mut MutexGuard<'_, Applier>,
        local: Option<(i64, i64)>,
        force: Option<ReloadReason>,
    ) -> Result<bool> {
        let outcome = self.try_apply(applier, local, force);
        if outcome.is_err() {
            applier.force_reload(ReloadReason::Recovery);
        }
        outcome
    }

    fn try_apply(
        &self,
        applier: &mut MutexGuard<'_, Applier>,
        local: Option<(i64, i64)>,
        force: Option<ReloadReason>,
    ) -> Result<bool> {
        let started = Instant::now();
        let current = self.snapshot.load_full();
        let local = local.or(*lock(&self.committing));
        if let Some(mut applied) = applier.catch_up(&current, local, force)? {
            let applier = &**applier;
            self.validators.enforce(&current, &mut applied, |prefix| {
                let conn = applier.connection().ok_or_else(|| Error::DatabaseMissing {
                    path: self.path.clone(),
                })?;
                read_section(conn, applier.path(), prefix)
            })?;
            self.publish(applied, started);
            return Ok(true);
        }
        Ok(false)
    }

    /// After a panic during a check: the next pass reloads everything.
    pub(crate) fn recover_after_panic(&self) {
        lock(&self.applier).force_reload(ReloadReason::Recovery);
    }

    /// Runs `op` while no write can commit.
    pub(crate) fn with_writes_held<R>(&self, op: impl FnOnce() -> R) -> R {
        let _writer = lock(&self.writer);
        op()
    }

    fn publish(&self, applied: Applied, started: Instant) {
        let Applied {
            snapshot,
            events,
            reload,
            external_changes,
            rejected,
            ..
        } = applied;
        let seq = snapshot.seq();
        let snapshot = Arc::new(snapshot);
        self.snapshot.store(Arc::clone(&snapshot));
        let changed = events
            .iter()
            .filter_map(|event| event.as_change().map(|change| change.key.as_str()));
        self.lives.refresh(&snapshot, reload.is_some(), changed);
        let dropped = self.subscribers.publish(&events);
        let counters = &self.counters;
        Counters::bump(&counters.events_dropped, dropped);
        Counters::bump(&counters.rejected_values, rejected as u64);
        Counters::bump(&counters.external_changes, external_changes as u64);
        match reload {
            Some(reason) => counters.count_reload(reason),
            None if external_changes > 0 => Counters::bump(&counters.external_applies, 1),
            None => {}
        }
        counters.applied_seq.store(seq, Ordering::Relaxed);
        counters
            .last_apply_nanos
            .store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let (applied_seq, signal) = &self.applied;
        *lock(applied_seq) = seq;
        signal.notify_all();
    }

    /// Blocks until the snapshot reflects at least `seq`, or `timeout`.
    pub(crate) fn wait_for_seq(&self, seq: i64, timeout: Duration) -> Result<()> {
        let (applied_seq, signal) = &self.applied;
        let guard = lock(applied_seq);
        let (guard, _) = signal
            .wait_timeout_while(guard, timeout, |applied| *applied < seq)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard >= seq {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: format!("seq {seq} (applied: {})", *guard),
            })
        }
    }

    /// Runs `query` on the read connection (history, log inspection).
    pub(crate) fn read<R>(
        &self,
        query: impl FnOnce(&rusqlite::Connection, &Path) -> Result<R>,
    ) -> Result<R> {
        let applier = lock(&self.applier);
        let conn = applier.connection().ok_or_else(|| Error::DatabaseMissing {
            path: self.path.clone(),
        })?;
        query(conn, &self.path)
    }

    /// Runs `op` while no pass can publish.
    pub(crate) fn exclusive<R>(&self, op: impl FnOnce() -> R) -> R {
        let _applier = lock(&self.applier);
        op()
    }

    /// Runs `op` on the read connection under the applier lock, so no pass
    /// publishes meanwhile.
    pub(crate) fn with_applier_locked<R>(
        &self,
        op: impl FnOnce(&rusqlite::Connection) -> Result<R>,
    ) -> Result<R> {
        let applier = lock(&self.applier);
        let conn = applier.connection().ok_or_else(|| Error::DatabaseMissing {
            path: self.path.clone(),
        })?;
        op(conn)
    }

    /// Closes both connections (the watcher must be stopped first).
    pub(crate) fn close_connections(&self) {
        if let Some(writer) = lock(&self.writer).take() {
            writer.close();
        }
        lock(&self.applier).detach();
    }
}

fn current_file(path: &Path) -> Result<FileId> {
    FileId::of(path)
        .map_err(|source| Error::Io {
            context: format!("cannot stat {}", path.display()),
            source,
        })?
        .ok_or_else(|| Error::DatabaseMissing {
            path: path.to_owned(),
        })
}

/// Locks a mutex, recovering from poisoning: every guarded state here stays
/// consistent between statements, so a panicking holder leaves nothing torn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
