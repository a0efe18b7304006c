//! `GET /api/events`: the live change stream as Server-Sent Events.
//!
//! One `commit` event per commit (per batch of foreign commits a pass
//! applied), `id:` its last seq. A reconnect with `Last-Event-ID` (or
//! `?from=SEQ`) resumes after that seq from the change log, with no gap and
//! no duplicate. The first event is a `snapshot` (every setting under the
//! prefix, `id:` its seq) when the client gave no position, when the log
//! was pruned past it, or when it is not this database's; a client that
//! fell behind gets a `snapshot` too (`"reason":"lagged"`) and the stream
//! goes on after it. `reloaded` and `rejected` events carry no id. The
//! store never waits for a client: each stream reads its own bounded
//! subscription.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_core::Stream;
use serde_json::{Value, json};

use crate::async_api::EventStream;
use crate::events::{Change, Event};
use crate::key::validate_prefix;
use crate::serve::Shared;
use crate::serve::error::ApiError;
use crate::serve::history::blocking;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::store::commit_feed::{FeedStart, SnapshotReason};

/// How long a browser waits before reconnecting after the stream broke.
const RETRY: Duration = Duration::from_millis(1000);
/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/events?prefix=P&from=SEQ` (or the `Last-Event-ID` header).
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    validate_prefix(&prefix).map_err(|error| ApiError::from_store(error, |_| None))?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().unwrap_or_default().trim().to_owned()),
        None => query.get("from").cloned(),
    };
    let after = match resume.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                format!("the resume position must be a seq (an event id), not {text:?}"),
                None,
            )
        })?),
    };
    let store = Arc::clone(&shared.store);
    let subscribed = prefix.clone();
    let feed = blocking(move || store.commit_feed(&subscribed, after))
        .await?
        .map_err(|error| ApiError::from_store(error, |_| None))?;
    let mut stopped = shared.stopped.clone();
    let mut stream = Feed {
        queue: VecDeque::new(),
        live: feed.live,
        // The replayed commits are those after the client's position; the
        // live ones after the feed's floor (set once the replay is queued).
        floor: after.unwrap_or(i64::MIN),
        store: Arc::clone(&shared.store),
        prefix,
        stopped: Box::pin(async move {
            // An error means the server is gone: end too.
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }),
        done: false,
    };
    match feed.start {
        FeedStart::Snapshot { snapshot, reason } => {
            let reason = match reason {
                SnapshotReason::Initial => "initial",
                SnapshotReason::Compacted => "compacted",
                SnapshotReason::UnknownSeq => "unknown_seq",
            };
            let event = stream.snapshot_event(&snapshot, reason);
            stream.queue.push_back(event);
        }
        FeedStart::Replay { backlog } => {
            for event in backlog {
                if let Some(event) = stream.convert(event) {
                    stream.queue.push_back(event);
                }
            }
        }
    }
    stream.floor = stream.floor.max(feed.floor);
    if let Some(first) = stream.queue.pop_front() {
        stream.queue.push_front(first.retry(RETRY));
    } else {
        stream
            .queue
            .push_back(SseEvent::default().comment("live").retry(RETRY));
    }
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One client's stream: what is queued (the start), then live commits.
pub(crate) struct Feed {
    queue: VecDeque<SseEvent>,
    live: EventStream,
    /// Commits at or below this seq are already covered (by the start, or
    /// by the resync snapshot after a lag).
    floor: i64,
    store: Arc<Store>,
    prefix: String,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    done: bool,
}

impl Feed {
    fn snapshot_event(&mut self, snapshot: &Snapshot, reason: &str) -> SseEvent {
        self.floor = self.floor.max(snapshot.seq());
        let settings = match snapshot.subtree(&self.prefix) {
            Ok(Some(tree)) => self.store.secrets().tree(&self.prefix, &tree),
            Ok(None) => Value::Object(serde_json::Map::new()),
            Err(error) => {
                // A key both a value and a section cannot be nested: say so
                // rather than send a partial tree.
                log::warn!("event stream snapshot: {error}");
                return SseEvent::default()
                    .event("error")
                    .data(json!({"error": error.to_string()}).to_string());
            }
        };
        SseEvent::default()
            .event("snapshot")
            .id(snapshot.seq().to_string())
            .data(
                json!({
                    "snapshot": true,
                    "reason": reason,
                    "seq": snapshot.seq(),
                    "prefix": self.prefix,
                    "settings": settings,
                })
                .to_string(),
            )
    }

    /// The SSE event for a store event, or `None` when it is covered.
    fn convert(&mut self, event: Event) -> Option<SseEvent> {
        let secrets = self.store.secrets();
        match secrets.event(&event) {
            Event::Commit(set) => {
                if set.seqs.1 <= self.floor {
                    return None;
                }
                let changes: Vec<Value> = set.changes.iter().map(change_json).collect();
                Some(
                    SseEvent::default()
                        .event("commit")
                        .id(set.seqs.1.to_string())
                        .data(
                            json!({
                                "seqs": [set.seqs.0, set.seqs.1],
                                "source": set.source.as_str(),
                                "changes": changes,
                            })
                            .to_string(),
                        ),
                )
            }
            Event::Change(change) => {
                // Not sent to a commit subscriber; shown as a one-change
                // commit should that ever change.
                if change.seq <= self.floor {
                    return None;
                }
                Some(
                    SseEvent::default()
                        .event("commit")
                        .id(change.seq.to_string())
                        .data(
                            json!({
                                "seqs": [change.seq, change.seq],
                                "source": change.source.as_str(),
                                "changes": [change_json(&change)],
                            })
                            .to_string(),
                        ),
                )
            }
            Event::Reloaded { reason, seq } => Some(
                SseEvent::default()
                    .event("reloaded")
                    .data(json!({"reason": reason.as_str(), "seq": seq}).to_string()),
            ),
            Event::Rejected(rejection) => Some(
                SseEvent::default().event("rejected").data(
                    json!({
                        "seq": rejection.seq,
                        "keys": rejection.keys,
                        "reason": rejection.reason,
                    })
                    .to_string(),
                ),
            ),
            Event::Lagged { .. } => {
                let snapshot = self.store.snapshot();
                Some(self.snapshot_event(&snapshot, "lagged"))
            }
        }
    }
}

fn change_json(change: &Change) -> Value {
    json!({
        "seq": change.seq,
        "key": change.key,
        "old": change.old_value(),
        "new": change.new_value(),
    })
}

impl Stream for Feed {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.stopped.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        if let Some(event) = self.queue.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        loop {
            match Pin::new(&mut self.live).poll_next(cx) {
                Poll::Ready(Some(event)) => {
                    if let Some(event) = self.convert(event) {
                        return Poll::Ready(Some(Ok(event)));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
