//! The engine: the one protocol by which the snapshot changes, whoever
//! committed.
//!
//! Everything that reads the database to change the snapshot — a local
//! write, a watcher pass, following a replaced file, registering a
//! validator — runs under one mutex, the engine. The applied position, the
//! validators and their pending rejections, and both connections live
//! inside it, so no two paths can interleave.
//!
//! - **A local write** begins an IMMEDIATE transaction on the writer
//!   connection (SQLite's write lock: it sees every earlier commit), checks
//!   that the file at the path is still the one it has open, reads the
//!   foreign rows after the applied position, runs the caller's SQL, reads
//!   its own rows, validates all of it in the same transaction, commits,
//!   checks the file again, and publishes foreign and own changes together
//!   in seq order before returning.
//! - **A watcher pass** runs a read transaction on the read connection and
//!   does the same catch-up and validation for foreign rows.
//! - Rows are this store's when their `session` column holds its id.
//!
//! Lock order: engine, then SQLite's locks (the write lock for a local
//! write, a read transaction for a pass), then the leaf locks (subscribers,
//! live handles, the published rejections, the applied seq). Readers take
//! no lock. A thread inside the engine (a `write` closure) that calls back
//! into the store gets [`Error::Reentrant`].

pub(crate) mod catch_up;
pub(crate) mod connections;
pub(crate) mod fallback;
pub(crate) mod opening;
pub(crate) mod overrides;
pub(crate) mod pass;
pub(crate) mod reader;
pub(crate) mod reentrancy;
pub(crate) mod reload;
pub(crate) mod validators;
pub(crate) mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Transaction;

use crate::db::file_id::{file_at, resolved};
use crate::db::side_files::FollowLock;
use crate::error::{Error, Result};
use crate::events::subscribers::Subscribers;
use crate::events::{Event, Rejection, ReloadReason};
use crate::layers::Layers;
use crate::live::LiveRegistry;
use crate::options::Options;
use crate::secrets::SharedSecrets;
use crate::snapshot::Snapshot;
use crate::stats::Counters;
use catch_up::catch_up;
use connections::{Connections, Follow};
use pass::{Pass, Position, add_own_rows};
use reentrancy::Entered;
use validators::{Registration, Validators, check_once};
use writer::{Writer, stamp_own_rows};

/// How often a write is retried when the file at the path is replaced under
/// it (each retry follows the new file first).
const REPLACED_RETRIES: usize = 5;

/// The state a store shares with its watcher thread.
pub(crate) struct Core {
    pub(crate) path: PathBuf,
    /// This store's random id, stamped on the log rows it writes.
    pub(crate) session: String,
    pub(crate) options: Options,
    /// Why the store opened read-only by itself (this process cannot write
    /// the file or its folder), if it did.
    pub(crate) read_only_cause: Option<String>,
    /// The database's view (served values where a validator refuses): what
    /// the engine applies passes to.
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Environment overrides and registered defaults, fixed at open.
    pub(crate) layers: std::sync::Arc<Layers>,
    /// What readers see when there are layers: the database's view with
    /// the layers applied (see `layers.rs`). Unused without layers.
    effective: ArcSwap<Snapshot>,
    engine: Mutex<Engine>,
    pub(crate) subscribers: Subscribers,
    pub(crate) lives: LiveRegistry,
    pub(crate) counters: Counters,
    /// A copy of the validators' pending rejections, for lock-free callers.
    rejections: Mutex<Vec<Rejection>>,
    applied: (Mutex<i64>, Condvar),
    pub(crate) activity: Activity,
    /// Wakes the watcher (file events, and writes that may have hidden one).
    pub(crate) hints: (Sender<()>, Receiver<()>),
    /// When the earliest temporary override is due, in ms since the Unix
    /// epoch (`i64::MAX`: none known); see `engine/overrides.rs`.
    pub(crate) next_override_due: AtomicI64,
    /// The secret key patterns: log lines and rejection reasons show their
    /// values as the redaction marker.
    pub(crate) secrets: Arc<SharedSecrets>,
}

struct Engine {
    connections: Option<Connections>,
    /// The path with symlinks resolved: where SQLite keeps the side files.
    resolved: PathBuf,
    position: Position,
    /// A full reload the next pass must run.
    force_next: Option<ReloadReason>,
    validators: Validators,
    /// Rows the store refuses on their own (undecodable, or a key below a
    /// key that holds a value), by key: the snapshot keeps the key's last
    /// good value (or leaves it out) until a good row for it arrives.
    refused: BTreeMap<String, Rejection>,
    /// The origin the current write stamps instead of the store's own.
    origin: Option<&'static str>,
}

/// What local writes are doing, for the watcher's schedule: their own
/// file events are not worth a dense re-check.
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicBool,
    last_commit_nanos: AtomicU64,
    /// Set when a file event was held back because of a local write.
    pub(crate) deferred: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicBool::new(false),
            last_commit_nanos: AtomicU64::new(0),
            deferred: AtomicBool::new(false),
        }
    }

    fn now_nanos(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Whether a local write is in flight or committed within `window`.
    pub(crate) fn is_recent(&self, window: Duration) -> bool {
        if self.in_flight.load(Ordering::Acquire) {
            return true;
        }
        let last = self.last_commit_nanos.load(Ordering::Acquire);
        last != 0 && self.now_nanos().saturating_sub(last) < window.as_nanos() as u64
    }

    /// How long until `window` has passed since the last local commit.
    pub(crate) fn quiet_in(&self, window: Duration) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) {
            return Some(window);
        }
        let last = self.last_commit_nanos.load(Ordering::Acquire);
        let since = Duration::from_nanos(self.now_nanos().saturating_sub(last));
        (last != 0 && since < window).then(|| window - since)
    }
}

/// What one watcher check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckOutcome {
    /// Nothing committed since the last pass.
    Unchanged,
    /// Something was committed, but nothing new to apply (this store's own
    /// commit, a checkpoint).
    NothingNew,
    /// Something was applied.
    Applied,
    /// The database file is missing.
    Missing,
}

/// The engine, entered by this thread.
pub(crate) struct EngineGuard<'a> {
    engine: MutexGuard<'a, Engine>,
    _entered: Entered,
}

enum Attempt<R> {
    Done(R, Option<(i64, i64)>),
    /// The file at the path changed; `ran` says whether the closure ran.
    Replaced {
        ran: bool,
    },
}

impl Core {
    /// Opens both connections on `path` (creating the file) and loads it.
    pub(crate) fn open(path: &Path, options: Options) -> Result<Core> {
        let (options, read_only_cause) = opening::prepare(path, options)?;
        let resolved = resolved(path);
        let mut connections = open_connections(path, &resolved, &options, Follow::Active)
            .map_err(|error| opening::explain(error, path, &options))?;
        let session = writer::random_id(connections.writer.connection(), path)?;
        let (tx, _) = connections.reader.begin_pass(path)?;
        let pass = catch_up(
            &tx,
            path,
            &Snapshot::default(),
            &Position::default(),
            Some(ReloadReason::FileReplaced),
            &session,
        )?;
        drop(tx);
        let seq = pass.position.seq;
        let mut refused = BTreeMap::new();
        note_refusals(&mut refused, &pass);
        let initial_rejections: Vec<Rejection> = refused.values().cloned().collect();
        let mut layers = Layers::default();
        for (prefix, tree) in options.defaults() {
            layers.add_defaults(prefix, tree)?;
        }
        if let Some(prefix) = options.env_prefix() {
            let mut known: Vec<String> = pass.snapshot.keys("").map(str::to_owned).collect();
            known.extend(layers.defaults.keys().cloned());
            layers.read_env(prefix, std::env::vars_os(), &known)?;
        }
        let effective = if layers.is_empty() {
            Snapshot::default()
        } else {
            layers.effective(&pass.snapshot)
        };
        let layers = std::sync::Arc::new(layers);
        let core = Core {
            path: path.to_owned(),
            read_only_cause,
            session,
            subscribers: Subscribers::new(options.channel_capacity()),
            options,
            layers: std::sync::Arc::clone(&layers),
            effective: ArcSwap::from_pointee(effective),
            snapshot: ArcSwap::from_pointee(pass.snapshot),
            engine: Mutex::new(Engine {
                connections: Some(connections),
                resolved,
                position: pass.position,
                force_next: None,
                validators: Validators::new(std::sync::Arc::clone(&layers)),
                refused,
                origin: None,
            }),
            lives: LiveRegistry::default(),
            counters: Counters::default(),
            rejections: Mutex::new(initial_rejections),
            applied: (Mutex::new(seq), Condvar::new()),
            activity: Activity::new(),
            hints: crossbeam_channel::bounded(1),
            next_override_due: AtomicI64::new(i64::MAX),
            secrets: Arc::default(),
        };
        core.counters.applied_seq.store(seq, Ordering::Relaxed);
        let refused_at_open = lock(&core.rejections).len() as u64;
        Counters::bump(&core.counters.rejected_values, refused_at_open);
        Ok(core)
    }

    /// Replaces the database's view before anyone subscribed (at open),
    /// keeping the effective view in step.
    pub(crate) fn replace_snapshot(&self, snapshot: Snapshot) {
        if !self.layers.is_empty() {
            self.effective
                .store(std::sync::Arc::new(self.layers.effective(&snapshot)));
        }
        self.snapshot.store(std::sync::Arc::new(snapshot));
    }

    /// What readers see: the database's view, or with layers the
    /// effective one.
    pub(crate) fn view(&self) -> &ArcSwap<Snapshot> {
        if self.layers.is_empty() {
            &self.snapshot
        } else {
            &self.effective
        }
    }

    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Enters the engine for `operation`.
    pub(crate) fn enter(&self, operation: &'static str) -> Result<EngineGuard<'_>> {
        let entered = Entered::enter(self.id(), operation)?;
        let engine = lock(&self.engine);
        Ok(EngineGuard {
            engine,
            _entered: entered,
        })
    }

    /// Refuses `operation` when this thread is inside the engine.
    pub(crate) fn refuse_reentry(&self, operation: &'static str) -> Result<()> {
        if Entered::is_inside(self.id()) {
            return Err(Error::Reentrant { operation });
        }
        Ok(())
    }

    /// The path with symlinks resolved, where the side files are.
    pub(crate) fn resolved_path(&self) -> PathBuf {
        lock(&self.engine).resolved.clone()
    }

    /// Runs `op` in one write transaction, and applies it and every foreign
    /// commit before it to the snapshot before returning (read-your-writes).
    /// Returns the closure's value and the inclusive seq range written.
    /// `retry`: the closure may run again when the file is replaced midway
    /// (it must then be idempotent); otherwise that is
    /// [`Error::FileReplaced`].
    pub(crate) fn write<R>(
        &self,
        operation: &'static str,
        retry: bool,
        op: impl FnMut(&Transaction<'_>, &Snapshot) -> Result<R>,
    ) -> Result<(R, Option<(i64, i64)>)> {
        self.write_as(operation, None, retry, op)
    }

    /// [`Core::write`], with the log rows stamped with `origin` instead of
    /// the store's own (the store's housekeeping: an expired temporary
    /// override's restore).
    pub(crate) fn write_as<R>(
        &self,
        operation: &'static str,
        origin: Option<&'static str>,
        retry: bool,
        mut op: impl FnMut(&Transaction<'_>, &Snapshot) -> Result<R>,
    ) -> Result<(R, Option<(i64, i64)>)> {
        if self.options.is_read_only() {
            return Err(opening::refused_write(
                &self.path,
                self.read_only_cause.as_deref(),
            ));
        }
        // Inside `Store::plan`: the same write, rolled back (see store/plan.rs).
        let dry_run = crate::store::plan::begin_write(self.id())?;
        let mut guard = self.enter(operation)?;
        guard.engine.origin = origin;
        self.activity.in_flight.store(true, Ordering::Release);
        let outcome = self.write_entered(&mut guard, retry, dry_run, &mut op);
        guard.engine.origin = None;
        if outcome.is_ok() && !dry_run {
            self.activity
                .last_commit_nanos
                .store(self.activity.now_nanos().max(1), Ordering::Release);
        } else {
            // A file event held back meanwhile may belong to a foreign
            // commit this write did not get to apply.
            let _ = self.hints.0.try_send(());
        }
        self.activity.in_flight.store(false, Ordering::Release);
        outcome
    }

    fn write_entered<R>(
        &self,
        guard: &mut EngineGuard<'_>,
        retry: bool,
        dry_run: bool,
        op: &mut impl FnMut(&Transaction<'_>, &Snapshot) -> Result<R>,
    ) -> Result<(R, Option<(i64, i64)>)> {
        for _ in 0..REPLACED_RETRIES {
            if guard.engine.connections.is_none() {
                self.follow_file(&mut guard.engine, Follow::Active)?;
            }
            match self.try_write(&mut guard.engine, dry_run, op)? {
                Attempt::Done(value, range) => return Ok((value, range)),
                Attempt::Replaced { ran } => {
                    log::info!(
                        "{}: the database file was replaced during a write; following it",
                        self.path.display()
                    );
                    self.follow_file(&mut guard.engine, Follow::Active)?;
                    if ran && !retry {
                        break;
                    }
                }
            }
        }
        Err(Error::FileReplaced {
            path: self.path.clone(),
        })
    }

    fn try_write<R>(
        &self,
        engine: &mut Engine,
        dry_run: bool,
        op: &mut impl FnMut(&Transaction<'_>, &Snapshot) -> Result<R>,
    ) -> Result<Attempt<R>> {
        let started = Instant::now();
        let path = &self.path;
        let session = self.session.as_str();
        let Engine {
            connections,
            position,
            force_next,
            validators,
            refused,
            origin: engine_origin,
            ..
        } = engine;
        let Some(connections) = connections.as_mut() else {
            return Err(Error::DatabaseMissing { path: path.clone() });
        };
        let file = connections.file;
        let (conn, cookie, user_code, record) = connections.writer.parts();
        let tx = begin(conn, path)?;
        // Under the write lock: a file renamed over the path while this
        // write waited for the lock would receive the commit as an orphan.
        if file_at(path)? != Some(file) {
            return Ok(Attempt::Replaced { ran: false });
        }
        let schema_reload = Writer::check_schema(cookie, &tx, path)?;
        let base = self.snapshot.load_full();
        let mut pass = catch_up(
            &tx,
            path,
            &base,
            position,
            schema_reload.or(*force_next),
            session,
        )?;
        let value = user_code.run(path, || op(&tx, &pass.snapshot))?;
        let origin = engine_origin.unwrap_or(self.options.origin());
        let own = stamp_own_rows(&tx, &record, path, (origin, session))?;
        let range = own
            .first()
            .zip(own.last())
            .map(|(first, last)| (first.seq, last.seq));
        if dry_run {
            crate::store::plan::record(self.id(), &tx, path, range.map(|(first, _)| first))?;
        }
        add_own_rows(&mut pass, &own, session);
        if !own.is_empty() {
            let local_keys: Vec<&str> = own.iter().map(|row| row.key.as_str()).collect();
            validators.check_local(&tx, path, &pass.snapshot, &local_keys, &self.secrets)?;
        }
        if dry_run {
            // Every check of a real write passed: roll back, publish nothing.
            // A schema change seen meanwhile still reloads at the next pass.
            *force_next = schema_reload.or(*force_next);
            tx.rollback()
                .map_err(|error| crate::error::classify(error, path, "cannot roll back"))?;
            return Ok(Attempt::Done(value, None));
        }
        validators.enforce(&tx, path, &base, &mut pass)?;
        tx.commit()
            .map_err(|error| crate::error::classify(error, path, "cannot commit"))?;
        // Committed. If the path changed just before the commit, it went to
        // the orphan: not acknowledged, and retried on the new file.
        if file_at(path)? != Some(file) {
            return Ok(Attempt::Replaced { ran: true });
        }
        *force_next = None;
        *position = pass.position.clone();
        Counters::bump(&self.counters.local_commits, 1);
        note_refusals(refused, &pass);
        let pending = all_rejections(validators, refused);
        self.publish(pass, pending, started);
        Ok(Attempt::Done(value, range))
    }

    /// One watcher check: a `stat` and a pragma, and a pass when they say
    /// something changed.
    pub(crate) fn check(&self) -> Result<CheckOutcome> {
        Counters::bump(&self.counters.watcher_checks, 1);
        let mut guard = self.enter("watch")?;
        let engine = &mut *guard.engine;
        let at_path = file_at(&self.path)?;
        let Some(connections) = engine.connections.as_ref() else {
            if at_path.is_none() {
                return Ok(CheckOutcome::Missing);
            }
            self.follow_file(engine, Follow::Passive)?;
            return Ok(CheckOutcome::Applied);
        };
        match at_path {
            None => {
                self.release_lost_file(engine);
                return Ok(CheckOutcome::Missing);
            }
            Some(file) if file != connections.file || connections.needs_reopen() => {
                self.follow_file(engine, Follow::Passive)?;
                return Ok(CheckOutcome::Applied);
            }
            Some(_) => {}
        }
        if engine.force_next.is_none() && !connections.reader.changed(&self.path)? {
            return Ok(CheckOutcome::Unchanged);
        }
        self.foreign_pass(engine, None)
    }

    /// A pass over foreign commits on the read connection.
    fn foreign_pass(
        &self,
        engine: &mut Engine,
        force: Option<ReloadReason>,
    ) -> Result<CheckOutcome> {
        let started = Instant::now();
        let path = &self.path;
        let Engine {
            connections,
            position,
            force_next,
            validators,
            refused,
            ..
        } = engine;
        let Some(connections) = connections.as_mut() else {
            return Err(Error::DatabaseMissing { path: path.clone() });
        };
        let base = self.snapshot.load_full();
        let (tx, schema_reload) = connections.reader.begin_pass(path)?;
        let mut pass = catch_up(
            &tx,
            path,
            &base,
            position,
            force.or(schema_reload).or(*force_next),
            &self.session,
        )?;
        validators.enforce(&tx, path, &base, &mut pass)?;
        drop(tx);
        if pass.is_empty(position) {
            *position = pass.position;
            return Ok(CheckOutcome::NothingNew);
        }
        *force_next = None;
        *position = pass.position.clone();
        note_refusals(refused, &pass);
        let pending = all_rejections(validators, refused);
        self.publish(pass, pending, started);
        Ok(CheckOutcome::Applied)
    }

    /// The file was deleted: close both connections (without letting SQLite
    /// delete side files by name), remove the side files that are provably
    /// theirs so the next database at the path cannot mistake them for its
    /// own, and keep serving the snapshot.
    fn release_lost_file(&self, engine: &mut Engine) {
        if let Some(connections) = engine.connections.take() {
            let _follow = self.follow_lock(&engine.resolved);
            log::warn!(
                "{}: the database file is gone; keeping the last loaded settings and waiting for it to come back",
                self.path.display()
            );
            connections.close_left();
        }
    }

    /// Makes the connections follow the file at the path: close the old
    /// ones as orphans, open new ones, reload everything and publish.
    fn follow_file(&self, engine: &mut Engine, follow: Follow) -> Result<()> {
        let _follow = self.follow_lock(&engine.resolved);
        let old_instance = engine
            .connections
            .as_ref()
            .and_then(|old| old.instance.clone());
        if let Some(old) = engine.connections.take() {
            let replaced = !old.is_current(&self.path).unwrap_or(false);
            if replaced {
                log::info!(
                    "{}: a different database file is at the path; reopening",
                    self.path.display()
                );
                old.close_left();
            } else {
                old.close();
            }
        }
        if file_at(&self.path)?.is_none() {
            return Err(Error::DatabaseMissing {
                path: self.path.clone(),
            });
        }
        engine.resolved = resolved(&self.path);
        let connections = open_connections(&self.path, &engine.resolved, &self.options, follow)?;
        let show =
            |instance: &Option<String>| instance.clone().unwrap_or_else(|| "none".to_owned());
        log::info!(
            "{}: following database instance {} (was {})",
            self.path.display(),
            show(&connections.instance),
            show(&old_instance)
        );
        engine.connections = Some(connections);
        self.foreign_pass(engine, Some(ReloadReason::FileReplaced))?;
        Ok(())
    }

    /// The lock that serializes following a replaced file; a read-only
    /// store takes none (it would create the lock file, and it never
    /// removes side files).
    fn follow_lock(&self, resolved: &Path) -> Option<FollowLock> {
        if self.options.is_read_only() {
            None
        } else {
            FollowLock::acquire(resolved)
        }
    }

    /// After a panic during a check: the next pass reloads everything.
    pub(crate) fn recover_after_panic(&self) {
        lock(&self.engine)
            .force_next
            .get_or_insert(ReloadReason::Recovery);
    }

    /// Registers validators, all inside the engine so no pass can slip in
    /// between. A validator that refuses what readers see now gets the
    /// section served from a state it accepts (`engine/fallback.rs`), a
    /// pending rejection, and a published `Rejected` event; the database is
    /// not changed.
    pub(crate) fn add_validators(&self, registrations: Vec<Registration>) -> Result<()> {
        let started = Instant::now();
        let mut guard = self.enter("validate")?;
        if guard.engine.connections.is_none() && file_at(&self.path)?.is_some() {
            // Best effort: without the file only defaults or withholding
            // remain, which is still a start.
            if let Err(error) = self.follow_file(&mut guard.engine, Follow::Passive) {
                log::debug!("registering without the change log: {error}");
            }
        }
        let Engine {
            connections,
            position,
            validators,
            refused,
            ..
        } = &mut *guard.engine;
        let base = self.snapshot.load_full();
        let mut working = (*base).clone();
        let mut rejections = Vec::new();
        let read = match connections.as_mut() {
            Some(connections) => Some(connections.reader.read(&self.path)?),
            None => None,
        };
        for registration in registrations {
            let pending = match check_once(&registration.check, &working, &self.layers) {
                Ok(()) => None,
                Err(reason) => {
                    let served = fallback::serve(
                        read.as_deref(),
                        &self.path,
                        &working,
                        &registration,
                        &self.layers,
                        &self.secrets,
                    )?;
                    let prefix = registration.prefix.as_str();
                    let keys = validators::changed_keys(&working, &served.snapshot, prefix);
                    log::warn!(
                        "the stored section '{prefix}' is refused by its validator ({reason}); {}",
                        served.how
                    );
                    // At the position, like every event published now (the
                    // refused rows are older).
                    let newest = served
                        .refused_seq
                        .map(|seq| format!(" (its newest change is seq {seq})"))
                        .unwrap_or_default();
                    let rejection = Rejection {
                        seq: position.seq,
                        keys,
                        reason: format!("section '{prefix}'{newest} {reason}; {}", served.how),
                    };
                    working = served.snapshot;
                    rejections.push(rejection.clone());
                    Some(rejection)
                }
            };
            validators.add(registration, pending);
        }
        drop(read);
        if rejections.is_empty() {
            return Ok(());
        }
        // No change events: the served values are not what the log holds
        // at any seq after the position. The `Rejected` events name the
        // keys whose value readers now see differently.
        let mut pass = Pass::unchanged(&working, position);
        pass.rejected = rejections.len();
        pass.events = rejections.into_iter().map(Event::Rejected).collect();
        let pending = all_rejections(validators, refused);
        self.publish(pass, pending, started);
        Ok(())
    }

    /// The pending rejections.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        lock(&self.rejections).clone()
    }

    /// Runs `op` inside the engine: no pass publishes meanwhile.
    pub(crate) fn exclusive<R>(
        &self,
        operation: &'static str,
        op: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let _guard = self.enter(operation)?;
        op()
    }

    /// Runs `query` in a read transaction on the read connection, inside
    /// the engine (history, replays): no pass publishes meanwhile.
    pub(crate) fn read<R>(
        &self,
        operation: &'static str,
        query: impl FnOnce(&Transaction<'_>, &Path) -> Result<R>,
    ) -> Result<R> {
        let mut guard = self.enter(operation)?;
        if guard.engine.connections.is_none() {
            self.follow_file(&mut guard.engine, Follow::Passive)?;
        }
        let Some(connections) = guard.engine.connections.as_mut() else {
            return Err(Error::DatabaseMissing {
                path: self.path.clone(),
            });
        };
        let tx = connections.reader.read(&self.path)?;
        query(&tx, &self.path)
    }

    fn publish(&self, pass: Pass, pending: Vec<Rejection>, started: Instant) {
        let external_changes = pass.external_changes();
        let Pass {
            snapshot,
            events,
            reload,
            rejected,
            ..
        } = pass;
        let seq = snapshot.seq();
        let snapshot = std::sync::Arc::new(snapshot);
        self.snapshot.store(std::sync::Arc::clone(&snapshot));
        let (snapshot, events) = if self.layers.is_empty() {
            (snapshot, events)
        } else {
            let before = self.effective.load_full();
            let (after, events) = self
                .layers
                .apply(&before, &snapshot, &events, reload.is_some());
            let after = std::sync::Arc::new(after);
            self.effective.store(std::sync::Arc::clone(&after));
            (after, events)
        };
        *lock(&self.rejections) = pending;
        // A rejection's keys may be served differently too (a registration's
        // fallback), so typed live values re-read them.
        let changed = events
            .iter()
            .flat_map(|event| match event {
                Event::Change(change) => std::slice::from_ref(&change.key),
                Event::Rejected(rejection) => rejection.keys.as_slice(),
                _ => &[],
            })
            .map(String::as_str);
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
        self.refuse_reentry("wait_for_seq")?;
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

    /// Closes both connections (the watcher must be stopped first).
    pub(crate) fn close_connections(&self) {
        let mut engine = lock(&self.engine);
        if let Some(connections) = engine.connections.take() {
            if connections.is_current(&self.path).unwrap_or(false) {
                connections.close();
            } else {
                let _follow = self.follow_lock(&engine.resolved);
                connections.close_left();
            }
        }
    }
}

/// Applies a pass's refusals to the set of refused rows.
fn note_refusals(refused: &mut BTreeMap<String, Rejection>, pass: &Pass) {
    if let Some(all) = &pass.refused_all {
        refused.clear();
        for rejection in all {
            for key in &rejection.keys {
                refused.insert(key.clone(), rejection.clone());
            }
        }
    }
    for (key, rejection) in &pass.refused {
        match rejection {
            Some(rejection) => {
                refused.insert(key.clone(), rejection.clone());
            }
            None => {
                refused.remove(key);
            }
        }
    }
}

/// What `rejected()` lists: the validators' pending rejections, then the
/// rows refused on their own.
fn all_rejections(
    validators: &Validators,
    refused: &BTreeMap<String, Rejection>,
) -> Vec<Rejection> {
    let mut all = validators.pending();
    all.extend(refused.values().cloned());
    all
}

fn begin<'c>(conn: &'c mut rusqlite::Connection, path: &Path) -> Result<Transaction<'c>> {
    use crate::error::SqliteContext;
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context(path, "cannot begin a write transaction")
}

/// Opens the connections, again when the file is replaced while opening.
fn open_connections(
    path: &Path,
    resolved: &Path,
    options: &Options,
    follow: Follow,
) -> Result<Connections> {
    let mut attempts = 0;
    loop {
        match Connections::open(path, resolved, options, follow) {
            Err(Error::FileReplaced { .. }) if attempts < REPLACED_RETRIES => attempts += 1,
            outcome => return outcome,
        }
    }
}

/// Locks a mutex, recovering from poisoning: every guarded state here stays
/// consistent between statements, so a panicking holder leaves nothing torn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
