//! The settings routes: read a key or section, set one value, merge a
//! nested document, delete a key or section; each write optionally
//! conditional on `If-Match`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::key::{validate_key, validate_prefix};
use crate::serve::Shared;
use crate::serve::body::{etag, if_match, json};
use crate::serve::error::ApiError;
use crate::store::Commit;
use crate::store::conditional::{Conditional, Write};

/// The dotted key or prefix of a `{*key}` route, checked.
pub(crate) fn path_key(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|rejection| {
        ApiError::bad_request(format!("malformed path: {}", rejection.body_text()), None)
    })?;
    validate_prefix(&key).map_err(|error| ApiError::from_store(error, |_| None))?;
    Ok(key)
}

/// `GET /api/settings`: every setting as nested JSON.
pub(crate) async fn get_all(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    read(&shared, "")
}

/// `GET /api/settings/{prefix}`: the value of a key, or the section below
/// a prefix as nested JSON; the `ETag` is the seq the answer reflects.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    read(&shared, &path_key(path)?)
}

fn read(shared: &Shared, prefix: &str) -> Result<Response, ApiError> {
    let snapshot = shared.store.snapshot();
    let tree = snapshot
        .subtree(prefix)
        .map_err(|error| ApiError::from_store(error, |_| None))?;
    let tree = match tree {
        Some(tree) => shared.store.secrets().tree(prefix, &tree),
        None if prefix.is_empty() => Value::Object(Map::new()),
        None => {
            return Err(ApiError::not_found(
                format!("no key or section '{prefix}'"),
                Some(prefix),
            ));
        }
    };
    Ok(with_etag(Json(tree).into_response(), snapshot.seq()))
}

/// `PUT /api/settings/{key}`: sets one value (the body, any JSON but an
/// object; PATCH merges sections).
pub(crate) async fn put(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = path_key(path)?;
    validate_key(&key).map_err(|error| ApiError::from_store(error, |_| None))?;
    let since = if_match(&headers, &key)?;
    let value = json(body, shared.max_body, &key).await?;
    if value.is_object() {
        return Err(ApiError::bad_request(
            format!(
                "PUT sets one value, and an object is a section: PATCH /api/settings/{key} merges it"
            ),
            Some(&key),
        ));
    }
    let mut tree = Map::new();
    tree.insert(key.clone(), value);
    let tree = Value::Object(tree);
    write(shared, key, since, tree, Kind::Set).await
}

/// `PATCH /api/settings`: merges a nested document into the settings, in
/// one transaction.
pub(crate) async fn patch_all(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    merge(shared, String::new(), headers, body).await
}

/// `PATCH /api/settings/{prefix}`: merges a nested document into the
/// section below `prefix`.
pub(crate) async fn patch_one(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let prefix = path_key(path)?;
    merge(shared, prefix, headers, body).await
}

async fn merge(
    shared: Arc<Shared>,
    prefix: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let since = if_match(&headers, &prefix)?;
    let document = json(body, shared.max_body, "").await?;
    let tree = if prefix.is_empty() {
        if !document.is_object() {
            return Err(ApiError::bad_request(
                "the document must be a JSON object of settings, e.g. {\"physics\":{\"damping\":0.95}}",
                None,
            ));
        }
        document
    } else {
        let mut tree = Map::new();
        tree.insert(prefix.clone(), document);
        Value::Object(tree)
    };
    if !has_leaf(&tree) {
        return Err(ApiError::bad_request(
            "nothing to merge: the document holds no value",
            Some(&prefix)
                .filter(|prefix| !prefix.is_empty())
                .map(String::as_str),
        ));
    }
    write(shared, prefix, since, tree, Kind::Merge).await
}

/// `DELETE /api/settings/{key}` (`?recursive=true`: the key and every key
/// below it).
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = path_key(path)?;
    let recursive = match query.get("recursive").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("recursive must be true or false, not {other:?}"),
                Some(&key),
            ));
        }
    };
    let since = if_match(&headers, &key)?;
    if !recursive {
        validate_key(&key).map_err(|error| ApiError::from_store(error, |_| None))?;
        let snapshot = shared.store.snapshot();
        if !snapshot.contains(&key) && snapshot.keys(&key).next().is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("'{key}' is a section: DELETE it with ?recursive=true"),
                Some(&key),
            ));
        }
    }
    let kind = if recursive {
        Kind::UnsetSection
    } else {
        Kind::Unset
    };
    write(shared, key, since, Value::Null, kind).await
}

#[derive(Clone, Copy)]
enum Kind {
    Set,
    Merge,
    Unset,
    UnsetSection,
}

/// Runs a write off the async threads (SQLite may wait for a lock) and
/// answers with its seq.
async fn write(
    shared: Arc<Shared>,
    scope: String,
    since: Option<i64>,
    tree: Value,
    kind: Kind,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&shared.store);
    let (scope, tree, outcome) = tokio::task::spawn_blocking(move || {
        let write = match kind {
            Kind::Set => match tree.get(&scope) {
                Some(value) => Write::Set(&scope, value),
                None => Write::Merge(&tree),
            },
            Kind::Merge => Write::Merge(&tree),
            Kind::Unset => Write::Unset(&scope),
            Kind::UnsetSection => Write::UnsetSection(&scope),
        };
        let outcome = store.write_unless_changed(&scope, since, write);
        (scope, tree, outcome)
    })
    .await
    .map_err(|error| {
        log::error!("a write task failed: {error}");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the write failed inside the server",
            None,
        )
    })?;
    let secrets = shared.store.secrets();
    let commit = match outcome {
        Ok(Conditional::Committed(commit)) => commit,
        Ok(Conditional::Stale { changed_at }) => {
            return Err(ApiError::stale(
                &scope,
                since.unwrap_or_default(),
                changed_at,
            ));
        }
        Err(error) => {
            return Err(ApiError::from_store(error, |key| {
                leaf(&tree, key).map(|value| secrets.value(key, value))
            }));
        }
    };
    if matches!(kind, Kind::Unset | Kind::UnsetSection) && commit.changes == 0 {
        return Err(ApiError::not_found(
            if matches!(kind, Kind::UnsetSection) {
                format!("no key at or below '{scope}'")
            } else {
                format!("no key '{scope}'")
            },
            Some(&scope),
        ));
    }
    Ok(committed(commit))
}

/// The answer to a write: its seq and how many keys it changed.
pub(crate) fn committed(commit: Commit) -> Response {
    let body = json!({"seq": commit.seq, "changes": commit.changes});
    with_etag(Json(body).into_response(), commit.seq)
}

pub(crate) fn with_etag(mut response: Response, seq: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&etag(seq)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The leaf of a nested document at a dotted key.
fn leaf<'v>(tree: &'v Value, key: &str) -> Option<&'v Value> {
    if let Some(value) = tree.get(key) {
        return Some(value);
    }
    let map = tree.as_object()?;
    map.iter().find_map(|(name, child)| {
        key.strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| leaf(child, rest))
    })
}

/// Whether a document holds at least one value (`{}` holds none).
fn has_leaf(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().any(has_leaf),
        _ => true,
    }
}
