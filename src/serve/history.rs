//! History, revert and the store's counters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::serve::Shared;
use crate::serve::error::ApiError;
use crate::serve::settings::{committed, path_key};

/// How many history rows are returned unless `?limit=` says otherwise.
const DEFAULT_HISTORY: usize = 50;
/// The most `?limit=` may ask for.
const MAX_HISTORY: usize = 10_000;

/// `GET /api/history/{key}` (`?limit=N`, `?section=true` for every key
/// below a prefix): the newest changes, oldest first, values redacted when
/// secret.
pub(crate) async fn history(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let key = path_key(path)?;
    let limit = match query.get("limit") {
        None => DEFAULT_HISTORY,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| *limit <= MAX_HISTORY)
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("limit must be a number from 0 to {MAX_HISTORY}, not {text:?}"),
                    Some(&key),
                )
            })?,
    };
    let section = query.get("section").is_some_and(|value| value == "true");
    let store = Arc::clone(&shared.store);
    let lookup = key.clone();
    let entries = blocking(move || {
        if section {
            store.section_history(&lookup, limit)
        } else {
            store.history(&lookup, limit)
        }
    })
    .await?
    .map_err(|error| ApiError::from_store(error, |_| None))?;
    let secrets = shared.store.secrets();
    let rows: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let entry = secrets.history_entry(entry);
            json!({
                "seq": entry.seq,
                "key": entry.key,
                "old": entry.old,
                "new": entry.new,
                "at": entry.at,
                "origin": entry.origin,
            })
        })
        .collect();
    Ok(Json(json!({"key": key, "entries": rows})).into_response())
}

/// `POST /api/revert/{seq}`: undoes the change logged at `seq` as a new
/// forward change.
pub(crate) async fn revert(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(text) = path.map_err(|rejection| {
        ApiError::bad_request(format!("malformed path: {}", rejection.body_text()), None)
    })?;
    let seq = text
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq > 0)
        .ok_or_else(|| ApiError::bad_request(format!("'{text}' is not a seq"), None))?;
    let store = Arc::clone(&shared.store);
    let commit = blocking(move || store.revert(seq))
        .await?
        .map_err(|error| ApiError::from_store(error, |_| None))?;
    Ok(committed(commit))
}

/// `GET /api/stats`: the store's counters.
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let store = &shared.store;
    let stats = store.stats();
    let reloads: serde_json::Map<String, Value> = stats
        .reloads_by_reason
        .iter()
        .map(|(reason, count)| (reason.as_str().to_owned(), json!(count)))
        .collect();
    Json(json!({
        "path": store.path().display().to_string(),
        "read_only": store.is_read_only(),
        "applied_seq": stats.applied_seq,
        "keys": stats.keys,
        "local_commits": stats.local_commits,
        "external_applies": stats.external_applies,
        "external_changes": stats.external_changes,
        "full_reloads": stats.full_reloads,
        "reloads_by_reason": reloads,
        "rejected_values": stats.rejected_values,
        "rejected": store.rejected().iter().map(|rejection| json!({
            "seq": rejection.seq, "keys": rejection.keys, "reason": rejection.reason,
        })).collect::<Vec<_>>(),
        "watcher_errors": stats.watcher_errors,
        "watcher_checks": stats.watcher_checks,
        "events_dropped": stats.events_dropped,
        "last_apply_us": stats.last_apply.as_micros() as u64,
    }))
    .into_response()
}

/// Runs store work that may wait on SQLite off the async threads.
pub(crate) async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        log::error!("a store task failed: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed inside the server",
            None,
        )
    })
}
