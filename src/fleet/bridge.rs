//! The bridge's loop: a small state machine over one SQLite connection and
//! one NATS connection, on a single-threaded tokio runtime that lives only
//! inside [`run`].
//!
//! Start: lock the file, open it as a [`Store`](crate::Store) once (schema,
//! and the commit subscription that wakes the outbox), create the bridge's
//! tables, connect, then either resynchronise (a host that joins, or whose
//! revision the bucket's history no longer reaches) or catch up from the
//! recorded revision; then push what was written locally meanwhile. Then,
//! until stopped: apply each bucket entry (or pushed commit) as it arrives,
//! and push after each local commit (and once a second, to retry).
//!
//! Every position is durable in the file, in the transaction of the change
//! it accounts for, so a bridge killed at any step starts again where it
//! was: an entry applied is never applied twice (its revision is recorded
//! with it), a push acknowledged but not recorded is pushed again, found
//! refused by its own condition, and recognised by its value.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use tokio::sync::Notify;

use super::bucket::{Bucket, MAX_BATCH, NewBucket, Outgoing, PushFailure};
use super::codec::{self, Op};
use super::error::{SyncError, SyncResult};
use super::inbox::{self, Incoming};
use super::lock::BridgeLock;
use super::outbox::{self, Pending};
use super::rule::{self, Decision, Mode};
use super::state::{self, Known, NewReport};
use super::status::{self, BridgeRecord};
use crate::db::Access;
use crate::error::SqliteContext;

/// How long the start waits for the bucket's history to be delivered.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the outbox is retried and the record refreshed without a
/// local commit.
const TICK: Duration = Duration::from_secs(1);

/// How long the bucket consumer may stay silent while the stream holds
/// revisions this host has not applied before the bridge replaces it. An
/// ordered consumer lives on one server: when that server dies, async-nats
/// does not always notice (seen here: a host that never received another
/// entry after the stream leader was killed).
const CONSUMER_STALL: Duration = Duration::from_secs(3);
/// How many times one push is retried after its condition failed before
/// the pass gives up until the next one.
const STALE_ROUNDS: usize = 4;

/// How to run a bridge.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    url: String,
    bucket: String,
    mode: Mode,
    replicas: usize,
    history: i64,
    busy_timeout: Duration,
}

impl SyncOptions {
    /// A bridge to the servers at `url` (comma-separated, e.g.
    /// `nats://10.0.0.1:4222,nats://10.0.0.2:4222`) and the bucket `bucket`.
    ///
    /// ```
    /// use livesettings::fleet::{Mode, SyncOptions};
    /// let options = SyncOptions::new("nats://127.0.0.1:4222", "settings")
    ///     .with_mode(Mode::LastWriterWins)
    ///     .with_replicas(3);
    /// assert_eq!(options.bucket(), "settings");
    /// ```
    pub fn new(url: impl Into<String>, bucket: impl Into<String>) -> SyncOptions {
        SyncOptions {
            url: url.into(),
            bucket: bucket.into(),
            mode: Mode::FleetWins,
            replicas: 1,
            history: 64,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// The conflict rule (default [`Mode::FleetWins`]).
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Replicas of a bucket the bridge creates (1 to 5; default 1; an
    /// existing bucket keeps its own).
    #[must_use]
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Revisions per key kept by a bucket the bridge creates (1 to 64;
    /// default 64).
    #[must_use]
    pub fn with_history(mut self, history: i64) -> Self {
        self.history = history;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The servers.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The conflict rule.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn validate(&self) -> SyncResult<()> {
        let bucket_ok = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if !bucket_ok {
            return Err(SyncError::InvalidOption {
                name: "bucket",
                reason: format!(
                    "'{}' is not a bucket name (letters, digits, '_' and '-')",
                    self.bucket
                ),
            });
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(SyncError::InvalidOption {
                name: "replicas",
                reason: format!("{} is not between 1 and 5", self.replicas),
            });
        }
        if !(1..=64).contains(&self.history) {
            return Err(SyncError::InvalidOption {
                name: "history",
                reason: format!("{} is not between 1 and 64", self.history),
            });
        }
        Ok(())
    }
}

/// What the bridge reports as it goes (`livesettings sync` prints each as
/// one JSON line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncEvent {
    /// Caught up (or resynchronised) and pushing: the bridge is live.
    Ready {
        /// The bucket.
        bucket: String,
        /// The last revision applied.
        applied_revision: u64,
        /// Whether the start resynchronised from the bucket's state.
        resynced: bool,
        /// Whether commits of several keys are pushed as atomic batches.
        atomic_batches: bool,
    },
    /// Bucket entries were applied in one transaction.
    Applied {
        /// The last revision of the group.
        revision: u64,
        /// How many entries changed the file.
        applied: usize,
        /// How many were already known (own pushes coming back).
        known: usize,
    },
    /// Local changes were pushed (one commit, or a batch of commits).
    Pushed {
        /// The keys.
        keys: Vec<String>,
        /// Their revisions.
        revisions: Vec<u64>,
    },
    /// A local change lost to the fleet's value, which was put back.
    Conflict {
        /// The key.
        key: String,
        /// The lost local value (JSON text; `None`: a delete).
        local_value: Option<String>,
        /// The fleet's value that won (JSON text; `None`: deleted).
        fleet_value: Option<String>,
        /// Its revision.
        fleet_revision: u64,
    },
    /// A local value was not pushed (too large for the server).
    Refused {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The bridge resynchronised from the bucket's current state.
    Resynced {
        /// Why (`join`, `history_gap`, `bucket_reset`).
        reason: String,
        /// Keys taken from the bucket.
        applied: usize,
        /// Keys deleted because the bucket no longer has them.
        removed: usize,
    },
    /// The NATS connection went down or came back.
    Connection {
        /// Whether connected now.
        connected: bool,
    },
}

/// Stops a running bridge from another thread (or a signal handler).
#[derive(Clone, Debug, Default)]
pub struct Stopper(Arc<(AtomicBool, Notify)>);

impl Stopper {
    /// A stopper that has not stopped anything yet.
    pub fn new() -> Stopper {
        Stopper::default()
    }

    /// Asks the bridge to stop; [`run`] returns once it has.
    pub fn stop(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        self.0.1.notify_one();
    }

    fn stopped(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }
}

/// Runs the bridge for the database at `db` until `stop` is stopped,
/// reporting what it does to `on_event`.
///
/// # Errors
/// [`SyncError::Locked`] when another bridge runs on the file,
/// [`SyncError::InvalidOption`], [`SyncError::Store`] when the file cannot
/// be opened or written, [`SyncError::Nats`] when the bucket cannot be
/// opened or created. A connection lost later is not an error: the bridge
/// waits for it to come back.
pub fn run(
    db: &Path,
    options: SyncOptions,
    stop: Stopper,
    mut on_event: impl FnMut(&SyncEvent) + Send,
) -> SyncResult<()> {
    options.validate()?;
    let _lock = BridgeLock::acquire(db, &options.bucket)?;
    // The schema as the library sets it up, and a wake-up per commit.
    let store = crate::Store::open(db)?;
    let commits = store.subscribe_commits("")?;
    let wake = Arc::new(Notify::new());
    let forward = {
        let wake = Arc::clone(&wake);
        std::thread::Builder::new()
            .name("livesettings-sync-wake".to_owned())
            .spawn(move || {
                while commits.recv().is_ok() {
                    wake.notify_one();
                }
            })
            .map_err(|error| SyncError::io("cannot start the wake-up thread", error))?
    };
    let conn = crate::db::open_with_access(db, options.busy_timeout, 2048, Access::ReadWrite)?;
    state::ensure(&conn, db, &options.bucket)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| SyncError::io("cannot start the bridge's runtime", error))?;
    let outcome = runtime.block_on(async {
        let bucket = Bucket::open(
            &options.url,
            &options.bucket,
            NewBucket {
                replicas: options.replicas,
                history: options.history,
            },
        )
        .await?;
        let mut bridge = Bridge {
            db: db.to_owned(),
            conn,
            record: BridgeRecord {
                pid: std::process::id(),
                bucket: options.bucket.clone(),
                url: options.url.clone(),
                mode: match options.mode {
                    Mode::FleetWins => "fleet-wins".to_owned(),
                    Mode::LastWriterWins => "last-writer-wins".to_owned(),
                },
                connected: bucket.connected(),
                atomic_batches: bucket.atomic,
                updated: status::now(),
                last_error: None,
            },
            bucket,
            options,
            on_event: &mut on_event,
            group: Vec::new(),
            group_id: None,
        };
        bridge.run(&stop, &wake).await
    });
    drop(store);
    let _ = forward.join();
    let _ = std::fs::remove_file(status::record_path(db));
    outcome
}

/// A stored message read: the entry, how many messages follow it, and the
/// pushed commit it belongs to (`id`, `index`, `count`).
type Parsed = (Incoming, u64, Option<(String, usize, usize)>);

struct Bridge<'e> {
    db: PathBuf,
    conn: Connection,
    bucket: Bucket,
    options: SyncOptions,
    record: BridgeRecord,
    on_event: &'e mut (dyn FnMut(&SyncEvent) + Send),
    /// The entries of a pushed commit being gathered, and its id.
    group: Vec<Incoming>,
    group_id: Option<String>,
}

impl Bridge<'_> {
    async fn run(&mut self, stop: &Stopper, wake: &Notify) -> SyncResult<()> {
        self.write_record();
        let (mut consumer, resynced) = self.start().await?;
        let applied_revision =
            state::cursor(&self.conn, &self.db, &self.options.bucket)?.applied_revision;
        self.emit(SyncEvent::Ready {
            bucket: self.options.bucket.clone(),
            applied_revision,
            resynced,
            atomic_batches: self.bucket.atomic,
        });
        self.push_pass().await?;
        let mut tick = tokio::time::interval(TICK);
        let mut heard = tokio::time::Instant::now();
        while !stop.stopped() {
            tokio::select! {
                biased;
                () = stop.0.1.notified() => {}
                message = consumer.next() => match message {
                    Some(Ok(message)) => {
                        heard = tokio::time::Instant::now();
                        self.inbound(&message)?;
                    }
                    Some(Err(error)) => self.note_error(&SyncError::nats("bucket consumer", error)),
                    None => return Err(SyncError::nats("bucket consumer", "the consumer ended")),
                },
                () = wake.notified() => self.push_pass().await?,
                _ = tick.tick() => {
                    self.push_pass().await?;
                    self.refresh_record();
                    if heard.elapsed() >= CONSUMER_STALL {
                        if let Some(replaced) = self.replace_stalled_consumer().await? {
                            consumer = replaced;
                        }
                        heard = tokio::time::Instant::now();
                    }
                }
            }
        }
        Ok(())
    }

    /// A new bucket consumer from the first revision not applied yet, when
    /// the stream holds revisions past it and the current consumer has
    /// been silent (see [`CONSUMER_STALL`]); `None` when nothing is missing
    /// or the cluster cannot answer now (tried again later). A commit
    /// half-gathered is dropped: the new consumer delivers it again whole.
    async fn replace_stalled_consumer(
        &mut self,
    ) -> SyncResult<Option<async_nats::jetstream::consumer::push::Ordered>> {
        let applied = state::cursor(&self.conn, &self.db, &self.options.bucket)?.applied_revision;
        let last = match self.bucket.extent().await {
            Ok((_, last)) => last,
            Err(error) => {
                self.note_error(&error);
                return Ok(None);
            }
        };
        if last <= applied {
            return Ok(None);
        }
        log::warn!(
            "the bucket consumer was silent with revisions {}..={last} not applied: replacing it",
            applied + 1
        );
        match self.bucket.consumer(Some(applied + 1)).await {
            Ok(consumer) => {
                self.group.clear();
                self.group_id = None;
                Ok(Some(consumer))
            }
            Err(error) => {
                self.note_error(&error);
                Ok(None)
            }
        }
    }

    /// Resynchronises or catches up; the consumer to go on with, and
    /// whether it resynchronised.
    async fn start(
        &mut self,
    ) -> SyncResult<(async_nats::jetstream::consumer::push::Ordered, bool)> {
        let bucket = self.options.bucket.clone();
        let applied = state::cursor(&self.conn, &self.db, &bucket)?.applied_revision;
        let (first, last) = self.bucket.extent().await?;
        let reason = if applied == 0 {
            Some("join")
        } else if last < applied {
            Some("bucket_reset")
        } else if first > applied + 1 {
            Some("history_gap")
        } else {
            None
        };
        let Some(reason) = reason else {
            let mut consumer = self.bucket.consumer(Some(applied + 1)).await?;
            if last > applied {
                self.catch_up(&mut consumer).await?;
            }
            return Ok((consumer, false));
        };
        log::info!(
            "resynchronising from bucket '{bucket}' ({reason}; applied {applied}, bucket holds {first}..={last})"
        );
        let mut consumer = self.bucket.consumer(None).await?;
        let mut latest = Vec::new();
        if last > 0 {
            let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
            loop {
                let message = tokio::time::timeout_at(deadline, consumer.next())
                    .await
                    .map_err(|_| {
                        SyncError::nats("resync", "the bucket's state was not delivered in time")
                    })?;
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => return Err(SyncError::nats("resync", error)),
                    None => return Err(SyncError::nats("resync", "the consumer ended")),
                };
                let (incoming, pending, _) = self.parse(&message)?;
                latest.push(incoming);
                if pending == 0 {
                    break;
                }
            }
        }
        let through = latest
            .iter()
            .map(|entry| entry.revision)
            .max()
            .unwrap_or(last);
        let outcome = super::resync::resync(
            &mut self.conn,
            &self.db,
            &bucket,
            latest,
            through,
            reason == "bucket_reset",
        )?;
        self.emit(SyncEvent::Resynced {
            reason: reason.to_owned(),
            applied: outcome.applied,
            removed: outcome.removed,
        });
        Ok((consumer, true))
    }

    /// Applies the bucket's history until the consumer has nothing pending.
    async fn catch_up(
        &mut self,
        consumer: &mut async_nats::jetstream::consumer::push::Ordered,
    ) -> SyncResult<()> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, consumer.next())
                .await
                .map_err(|_| {
                    SyncError::nats("catch-up", "the bucket's history was not delivered in time")
                })?;
            match message {
                Some(Ok(message)) => {
                    if self.inbound(&message)? == 0 {
                        return Ok(());
                    }
                }
                Some(Err(error)) => return Err(SyncError::nats("catch-up", error)),
                None => return Err(SyncError::nats("catch-up", "the consumer ended")),
            }
        }
    }

    /// Reads one stored message: the entry, how many follow it, and the
    /// pushed commit it belongs to.
    fn parse(&self, message: &async_nats::jetstream::Message) -> SyncResult<Parsed> {
        let info = message.info().map_err(|error| {
            SyncError::nats("cannot read a message's metadata", error.to_string())
        })?;
        let (revision, pending) = (info.stream_sequence, info.pending);
        let subject = message.subject.as_str();
        let prefix = format!("$KV.{}.", self.options.bucket);
        let subject_key = subject.strip_prefix(&prefix).unwrap_or(subject).to_owned();
        let headers = message.headers.as_ref();
        let change = match codec::key_of(&self.options.bucket, subject) {
            Some(key) => codec::op_of(headers, &message.payload).map(|op| (key, op)),
            None => Err("the KV key is not a livesettings key".to_owned()),
        };
        Ok((
            Incoming {
                revision,
                subject_key,
                change,
            },
            pending,
            codec::batch_of(headers),
        ))
    }

    /// Handles one message of the live stream (gathering a pushed commit's
    /// entries into one transaction); how many messages follow it.
    fn inbound(&mut self, message: &async_nats::jetstream::Message) -> SyncResult<u64> {
        let (incoming, pending, batch) = self.parse(message)?;
        match batch {
            Some((id, index, count)) => {
                if self.group_id.as_deref() != Some(id.as_str()) {
                    self.flush()?;
                    self.group_id = Some(id);
                }
                self.group.push(incoming);
                // The rest of a commit can be missing: superseded entries
                // leave the history. Nothing pending means none will come.
                if index == count || pending == 0 {
                    self.flush()?;
                }
            }
            None => {
                self.flush()?;
                self.group.push(incoming);
                self.flush()?;
            }
        }
        Ok(pending)
    }

    fn flush(&mut self) -> SyncResult<()> {
        self.group_id = None;
        if self.group.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        let through = group.iter().map(|entry| entry.revision).max().unwrap_or(0);
        let outcome = inbox::apply(
            &mut self.conn,
            &self.db,
            &self.options.bucket,
            &group,
            through,
        )?;
        if outcome.applied > 0 {
            self.emit(SyncEvent::Applied {
                revision: through,
                applied: outcome.applied,
                known: outcome.known,
            });
        }
        Ok(())
    }

    /// One outbound pass: decide each pending change, push the rest, and
    /// record the pushed position once every change is handled (a pass the
    /// servers cannot take now is tried again on the next tick).
    async fn push_pass(&mut self) -> SyncResult<()> {
        let bucket = self.options.bucket.clone();
        let pushed = state::cursor(&self.conn, &self.db, &bucket)?.pushed_seq;
        let outbox = outbox::read(&mut self.conn, &self.db, &bucket)?;
        if outbox.through <= pushed {
            // Nothing new: an idle bridge takes no write lock.
            return Ok(());
        }
        let mut outgoing = Vec::new();
        for change in outbox.changes {
            let known = state::known(&self.conn, &self.db, &bucket, &change.key)?;
            match rule::decide(self.options.mode, &change, known.as_ref()) {
                Decision::Unchanged => {}
                Decision::Superseded => {
                    let known = known.unwrap_or(Known {
                        revision: 0,
                        seq: 0,
                        value: None,
                    });
                    self.conflict(&change, known.revision, known.value.as_deref(), known.seq)?;
                }
                Decision::Push(expected) => {
                    let limit = self.bucket.max_value();
                    if let Some(value) = change.value.as_ref().filter(|value| value.len() > limit) {
                        let reason = format!(
                            "the value is {} bytes, more than the {limit} bytes the server takes in one message: not pushed, this host keeps it alone",
                            value.len()
                        );
                        self.refused(&change, &reason)?;
                        continue;
                    }
                    let op = match &change.value {
                        Some(text) => Op::Put(text.clone()),
                        None => Op::Delete,
                    };
                    let key = change.key.clone();
                    outgoing.push((change, Outgoing { key, op, expected }));
                }
            }
        }
        let mut work: VecDeque<Vec<(Pending, Outgoing)>> =
            outgoing.chunks(MAX_BATCH).map(<[_]>::to_vec).collect();
        let mut rounds = 0;
        while let Some(items) = work.pop_front() {
            if items.is_empty() {
                continue;
            }
            let batch: Vec<Outgoing> = items.iter().map(|(_, out)| out.clone()).collect();
            match self.bucket.push_batch(&batch).await {
                Ok(revisions) => self.pushed(&items, &revisions)?,
                Err(PushFailure::Stale) => {
                    rounds += 1;
                    if rounds > STALE_ROUNDS * (1 + outbox_len(&work)) {
                        self.note_error(&SyncError::nats(
                            "push",
                            "a push kept failing its condition",
                        ));
                        return Ok(());
                    }
                    match self.resolve_stale(items).await? {
                        Some(retry) => work.push_front(retry),
                        None => return Ok(()),
                    }
                }
                Err(PushFailure::TooLarge(reason)) if items.len() == 1 => {
                    self.refused(&items[0].0, &reason)?;
                }
                Err(PushFailure::TooLarge(_)) => {
                    // Each alone fits: only the batch as a whole did not.
                    for item in items.into_iter().rev() {
                        work.push_front(vec![item]);
                    }
                }
                Err(PushFailure::Unavailable(error)) => {
                    self.note_error(&error);
                    return Ok(());
                }
            }
        }
        state::set_pushed(&self.conn, &self.db, &bucket, outbox.through)?;
        Ok(())
    }

    /// After a batch was refused by a condition: each change's key as the
    /// bucket holds it now. A change whose condition holds is tried again;
    /// one the bucket already holds (this host's own push, acknowledged but
    /// not recorded before a crash) is recorded; any other lost to another
    /// host: the fleet's value is put back and the conflict reported.
    /// `None` when the bucket cannot be read now.
    async fn resolve_stale(
        &mut self,
        items: Vec<(Pending, Outgoing)>,
    ) -> SyncResult<Option<Vec<(Pending, Outgoing)>>> {
        let bucket = self.options.bucket.clone();
        let mut retry = Vec::new();
        for (pending, out) in items {
            let latest = match self.bucket.latest(&out.key).await {
                Ok(latest) => latest,
                Err(error) => {
                    self.note_error(&error);
                    return Ok(None);
                }
            };
            let Some((revision, op)) = latest else {
                // No entry at all (its history was purged): create it.
                retry.push((
                    pending,
                    Outgoing {
                        expected: Some(0),
                        ..out
                    },
                ));
                continue;
            };
            if out.expected == Some(revision) {
                retry.push((pending, out));
                continue;
            }
            if op == out.op {
                state::set_known(
                    &self.conn,
                    &self.db,
                    &bucket,
                    &out.key,
                    &Known {
                        revision,
                        seq: pending.seq,
                        value: pending.value.clone(),
                    },
                )?;
                continue;
            }
            let fleet_value = match &op {
                Op::Put(text) => Some(text.clone()),
                Op::Delete => None,
            };
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context(&self.db, "cannot begin undoing a conflict")?;
            let origin = format!("{}{revision}:conflict", state::ORIGIN_PREFIX);
            inbox::apply_entry(&tx, &self.db, &bucket, &out.key, revision, &op, &origin)?;
            let undo_seq = state::log_position(&tx, &self.db)?;
            tx.commit()
                .context(&self.db, "cannot commit undoing a conflict")?;
            self.conflict(&pending, revision, fleet_value.as_deref(), undo_seq)?;
        }
        Ok(Some(retry))
    }

    /// Records acknowledged pushes (one transaction). A key the fleet had
    /// overwritten locally before its push went out (last-writer-wins) gets
    /// its pushed value back, as it is now the bucket's.
    fn pushed(&mut self, items: &[(Pending, Outgoing)], revisions: &[u64]) -> SyncResult<()> {
        let bucket = self.options.bucket.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(&self.db, "cannot begin recording a push")?;
        for ((pending, out), &revision) in items.iter().zip(revisions) {
            let mut known = Known {
                revision,
                seq: pending.seq,
                value: pending.value.clone(),
            };
            let local = state::local_value(&tx, &self.db, &out.key)?;
            if local != pending.value
                && !state::local_change_after(&tx, &self.db, &out.key, pending.seq)?
            {
                let before = state::log_position(&tx, &self.db)?;
                inbox::write_op(&tx, &out.key, &out.op)?;
                state::stamp(
                    &tx,
                    &self.db,
                    before,
                    &format!("{}{revision}", state::ORIGIN_PREFIX),
                )?;
                known.seq = state::log_position(&tx, &self.db)?;
            }
            state::set_known(&tx, &self.db, &bucket, &out.key, &known)?;
        }
        tx.commit()
            .context(&self.db, "cannot commit recording a push")?;
        self.emit(SyncEvent::Pushed {
            keys: items.iter().map(|(_, out)| out.key.clone()).collect(),
            revisions: revisions.to_vec(),
        });
        Ok(())
    }

    fn conflict(
        &mut self,
        pending: &Pending,
        fleet_revision: u64,
        fleet_value: Option<&str>,
        undo_seq: i64,
    ) -> SyncResult<()> {
        log::warn!(
            "conflict on '{}': the local change at seq {} lost to the fleet's revision {fleet_revision}",
            pending.key,
            pending.seq
        );
        state::report(
            &self.conn,
            &self.db,
            &self.options.bucket,
            &NewReport {
                kind: "conflict",
                key: &pending.key,
                local_seq: Some(pending.seq),
                local_value: pending.value.as_deref(),
                fleet_revision: Some(fleet_revision),
                fleet_value,
                undo_seq: Some(undo_seq),
                reason: "another host changed the key since this host last saw it: the fleet's value won",
            },
        )?;
        self.emit(SyncEvent::Conflict {
            key: pending.key.clone(),
            local_value: pending.value.clone(),
            fleet_value: fleet_value.map(str::to_owned),
            fleet_revision,
        });
        Ok(())
    }

    fn refused(&mut self, pending: &Pending, reason: &str) -> SyncResult<()> {
        log::error!(
            "not pushing '{}' (seq {}): {reason}",
            pending.key,
            pending.seq
        );
        state::report(
            &self.conn,
            &self.db,
            &self.options.bucket,
            &NewReport {
                kind: "refused",
                key: &pending.key,
                local_seq: Some(pending.seq),
                local_value: None,
                fleet_revision: None,
                fleet_value: None,
                undo_seq: None,
                reason,
            },
        )?;
        self.emit(SyncEvent::Refused {
            key: pending.key.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    fn emit(&mut self, event: SyncEvent) {
        (self.on_event)(&event);
    }

    fn note_error(&mut self, error: &SyncError) {
        log::warn!("{error}");
        self.record.last_error = Some(error.to_string());
        self.refresh_record();
    }

    /// Rewrites the record when the connection changed (and at most every
    /// tick otherwise).
    fn refresh_record(&mut self) {
        let connected = self.bucket.connected();
        if connected != self.record.connected {
            self.record.connected = connected;
            self.emit(SyncEvent::Connection { connected });
        }
        self.write_record();
    }

    fn write_record(&mut self) {
        self.record.updated = status::now();
        if let Err(error) = status::write_record(&self.db, &self.record) {
            log::warn!("{error}");
        }
    }
}

fn outbox_len(work: &VecDeque<Vec<(Pending, Outgoing)>>) -> usize {
    work.iter().map(Vec::len).sum()
}
