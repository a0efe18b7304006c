//! Request bodies (read whole up to the cap, parsed as JSON with the
//! library's number rules) and the `If-Match` precondition.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::serve::error::ApiError;

/// Reads `body` (at most `limit` bytes) and parses it as one JSON value for
/// `key` (`""` for a document).
pub(crate) async fn json(body: Body, limit: usize, key: &str) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes (or was cut short); nothing was written"),
            Some(key).filter(|key| !key.is_empty()),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|error| {
        ApiError::bad_request(
            format!(
                "the request body is not UTF-8 text (invalid byte at offset {}); nothing was written",
                error.valid_up_to()
            ),
            Some(key).filter(|key| !key.is_empty()),
        )
    })?;
    crate::value::parse_json_value(key, text).map_err(|error| {
        let mut answer = ApiError::from_store(error, |_| None);
        if answer.status() == StatusCode::BAD_REQUEST && !key.is_empty() {
            answer = ApiError::bad_request(
                format!(
                    "the request body is not JSON for '{key}' (a string needs JSON quotes); nothing was written"
                ),
                Some(key),
            );
        }
        answer
    })
}

/// The seq of an `If-Match` header: `5`, `"5"` or `W/"5"`; `None` without
/// the header; `*` (any current version) is no condition.
pub(crate) fn if_match(headers: &HeaderMap, key: &str) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.strip_prefix("W/").unwrap_or(text);
    let bare = bare
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(bare);
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            format!("If-Match must be a seq as the ETag gave it (e.g. \"42\"), not {text:?}"),
            Some(key).filter(|key| !key.is_empty()),
        )
    })
}

/// The `ETag` of a seq.
pub(crate) fn etag(seq: i64) -> String {
    format!("\"{seq}\"")
}
