//! The bucket side: connecting, creating or opening the KV bucket, pushing
//! one change or one commit's changes (an atomic batch), reading a key's
//! latest entry, the stream's extent, and the ordered consumer the inbox
//! reads.
//!
//! A push is a JetStream publish to `$KV.<bucket>.<key>` with the headers
//! the KV API itself writes (`KV-Operation: DEL` for a delete), plus
//! `Nats-Expected-Last-Subject-Sequence: <revision>` when it is conditional
//! (revision 0: the key must have no entry at all). A commit of several keys
//! is an atomic batch (ADR-50, NATS 2.12+, `allow_atomic` on the stream):
//! `Nats-Batch-Id` and `Nats-Batch-Sequence` on every message, the first
//! sent as a request (the server's early answer), the last with
//! `Nats-Batch-Commit: 1` as the acknowledged publish; all or none of them
//! are stored, at consecutive revisions.

use std::time::Duration;

use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::{HeaderMap, HeaderValue, header};
use bytes::Bytes;

use super::codec::{self, Op};
use super::error::{SyncError, SyncResult};

/// The most messages one atomic batch may hold (the server's limit).
pub(crate) const MAX_BATCH: usize = 1000;
/// Room left in a message for the subject and headers next to the value.
const HEADER_ROOM: usize = 1024;

/// How a new bucket is made when it does not exist yet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewBucket {
    pub(crate) replicas: usize,
    pub(crate) history: i64,
}

/// One change to push.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) key: String,
    pub(crate) op: Op,
    /// `Some(revision)`: only if the key's last revision is this one (0:
    /// the key has no entry); `None`: unconditional.
    pub(crate) expected: Option<u64>,
}

/// Why a push was not stored.
#[derive(Debug)]
pub(crate) enum PushFailure {
    /// A condition did not hold: the key (or, for a batch, one of them)
    /// changed in the bucket since the expected revision.
    Stale,
    /// The message is larger than the server accepts.
    TooLarge(String),
    /// Anything else (no connection, timeout, no quorum): retry later.
    Unavailable(SyncError),
}

/// The connection and the bucket.
pub(crate) struct Bucket {
    pub(crate) client: async_nats::Client,
    js: async_nats::jetstream::Context,
    kv: kv::Store,
    pub(crate) name: String,
    /// Whether the stream takes atomic batches.
    pub(crate) atomic: bool,
}

impl Bucket {
    /// Connects to `url` (a comma-separated list of servers) and opens the
    /// bucket, creating it with `new` when missing, and turns on atomic
    /// batches on its stream when the server supports them.
    pub(crate) async fn open(url: &str, name: &str, new: NewBucket) -> SyncResult<Bucket> {
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| SyncError::nats(format!("invalid server list '{url}'"), error))?;
        let client = async_nats::ConnectOptions::new()
            .name("livesettings-sync")
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|error| SyncError::nats(format!("cannot connect to {url}"), error))?;
        let js = async_nats::jetstream::new(client.clone());
        let kv = open_or_create(&js, name, new).await?;
        let atomic = enable_atomic(&js, &kv.stream_name).await;
        Ok(Bucket {
            client,
            js,
            kv,
            name: name.to_owned(),
            atomic,
        })
    }

    /// Whether the client is connected now.
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The largest value a push may carry.
    pub(crate) fn max_value(&self) -> usize {
        let limit = self
            .client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM);
        match usize::try_from(self.kv.stream.cached_info().config.max_message_size) {
            Ok(stream) if stream > 0 => limit.min(stream),
            _ => limit,
        }
    }

    /// Pushes one change; its revision on success.
    pub(crate) async fn push(&self, change: &Outgoing) -> Result<u64, PushFailure> {
        let (subject, headers, payload) = self.message(change, None);
        let ack = self
            .js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(publish_failure)?
            .await
            .map_err(publish_failure)?;
        Ok(ack.sequence)
    }

    /// Pushes `changes` (at most [`MAX_BATCH`]) as one atomic batch; their
    /// revisions, in order, on success. Without atomic batches on the
    /// stream, pushes them one by one (and says so in the log).
    pub(crate) async fn push_batch(&self, changes: &[Outgoing]) -> Result<Vec<u64>, PushFailure> {
        if changes.len() == 1 || !self.atomic {
            let mut revisions = Vec::with_capacity(changes.len());
            for change in changes {
                revisions.push(self.push(change).await?);
            }
            return Ok(revisions);
        }
        let id = batch_id();
        let count = changes.len();
        for (at, change) in changes.iter().enumerate() {
            let index = at + 1;
            let (subject, mut headers, payload) = self.message(change, Some((&id, index, count)));
            headers.insert(header::NATS_BATCH_ID, id.as_str());
            headers.insert(header::NATS_BATCH_SEQUENCE, HeaderValue::from(index));
            if index == count {
                headers.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
                let ack = self
                    .js
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(publish_failure)?
                    .await
                    .map_err(publish_failure)?;
                let last = ack.sequence;
                let first = last + 1 - count as u64;
                return Ok((first..=last).collect());
            } else if index == 1 {
                // The server answers the first message of a batch only when
                // it refuses it; an empty answer means "go on".
                let answer = self
                    .client
                    .request_with_headers(subject, headers, payload)
                    .await
                    .map_err(|error| {
                        PushFailure::Unavailable(SyncError::nats("batch start", error))
                    })?;
                batch_start_failure(&answer.payload)?;
            } else {
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|error| {
                        PushFailure::Unavailable(SyncError::nats("batch publish", error))
                    })?;
            }
        }
        Ok(Vec::new())
    }

    fn message(
        &self,
        change: &Outgoing,
        batch: Option<(&str, usize, usize)>,
    ) -> (String, HeaderMap, Bytes) {
        let mut headers = HeaderMap::new();
        if let Some(revision) = change.expected {
            headers.insert(
                header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                HeaderValue::from(revision),
            );
        }
        if let Some((id, index, count)) = batch {
            headers.insert(
                codec::BATCH_HEADER,
                codec::batch_header(id, index, count).as_str(),
            );
        }
        let payload = match &change.op {
            Op::Put(text) => Bytes::from(text.clone().into_bytes()),
            Op::Delete => {
                headers.insert(codec::KV_OPERATION, "DEL");
                Bytes::new()
            }
        };
        (codec::subject(&self.name, &change.key), headers, payload)
    }

    /// The key's latest entry (a delete marker is `Op::Delete`), `None`
    /// when the key has no entry at all.
    pub(crate) async fn latest(&self, key: &str) -> SyncResult<Option<(u64, Op)>> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|error| SyncError::nats(format!("cannot read key '{key}'"), error))?;
        Ok(entry.map(|entry| {
            let op = match entry.operation {
                kv::Operation::Put => match std::str::from_utf8(&entry.value) {
                    Ok(text) => Op::Put(text.to_owned()),
                    Err(_) => Op::Delete,
                },
                kv::Operation::Delete | kv::Operation::Purge => Op::Delete,
            };
            (entry.revision, op)
        }))
    }

    /// The stream's first and last revision now.
    pub(crate) async fn extent(&self) -> SyncResult<(u64, u64)> {
        let mut stream = self
            .js
            .get_stream(&self.kv.stream_name)
            .await
            .map_err(|error| SyncError::nats("cannot read the bucket's stream", error))?;
        let info = stream
            .info()
            .await
            .map_err(|error| SyncError::nats("cannot read the bucket's stream", error))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// An ordered consumer over every key: from revision `from` on, or
    /// (`None`) the latest entry of each key and then everything new.
    pub(crate) async fn consumer(&self, from: Option<u64>) -> SyncResult<Ordered> {
        let deliver_policy = match from {
            Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            None => DeliverPolicy::LastPerSubject,
        };
        let consumer = self
            .kv
            .stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("livesettings sync".to_owned()),
                filter_subject: codec::all_keys(&self.name),
                replay_policy: ReplayPolicy::Instant,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| SyncError::nats("cannot create the bucket consumer", error))?;
        consumer
            .messages()
            .await
            .map_err(|error| SyncError::nats("cannot consume the bucket", error))
    }
}

async fn open_or_create(
    js: &async_nats::jetstream::Context,
    name: &str,
    new: NewBucket,
) -> SyncResult<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: name.to_owned(),
            description: "livesettings fleet settings".to_owned(),
            history: new.history,
            num_replicas: new.replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another bridge created it meanwhile.
        Err(create_error) => js.get_key_value(name).await.map_err(|_| {
            SyncError::nats(
                format!("cannot open or create bucket '{name}'"),
                create_error,
            )
        }),
    }
}

/// Turns on atomic batches on the bucket's stream; `false` (logged) when the
/// server refuses (older than 2.12).
async fn enable_atomic(js: &async_nats::jetstream::Context, stream_name: &str) -> bool {
    let Ok(mut stream) = js.get_stream(stream_name).await else {
        return false;
    };
    let Ok(info) = stream.info().await else {
        return false;
    };
    if info.config.allow_atomic_publish {
        return true;
    }
    let mut config = info.config.clone();
    config.allow_atomic_publish = true;
    match js.update_stream(config).await {
        Ok(updated) if updated.config.allow_atomic_publish => true,
        Ok(_) | Err(_) => {
            log::warn!(
                "the server does not take atomic batches on {stream_name}: a commit of several keys is pushed key by key"
            );
            false
        }
    }
}

fn publish_failure(error: async_nats::jetstream::context::PublishError) -> PushFailure {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => PushFailure::Stale,
        PublishErrorKind::MaxPayloadExceeded => PushFailure::TooLarge(error.to_string()),
        _ => PushFailure::Unavailable(SyncError::nats("push", error)),
    }
}

/// The answer to a batch's first message: empty or an ack to go on, an
/// error to stop.
fn batch_start_failure(answer: &[u8]) -> Result<(), PushFailure> {
    if answer.is_empty() {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return Ok(());
    };
    let Some(error) = value.get("error") else {
        return Ok(());
    };
    // 10071: wrong last sequence.
    if error.get("err_code").and_then(serde_json::Value::as_u64) == Some(10071) {
        return Err(PushFailure::Stale);
    }
    Err(PushFailure::Unavailable(SyncError::nats(
        "batch start",
        error.to_string(),
    )))
}

/// A batch id unique to this process and moment (at most 64 characters).
fn batch_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!(
        "ls{:x}{:x}{:x}",
        std::process::id(),
        now.as_nanos(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
