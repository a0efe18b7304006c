//! The API's one error type: `{"error": MESSAGE, "key": KEY}` (plus the
//! refused value and rule for a validation failure) with the status that
//! fits, mapped from the library's [`Error`] in one `match`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::Error;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    key: Option<String>,
    /// For a validation failure: the refused value (redacted when secret)
    /// and the rule's reason.
    refused: Option<(Value, String)>,
}

impl ApiError {
    /// An error with `status` and `message`, naming `key` when given.
    pub fn new(status: StatusCode, message: impl Into<String>, key: Option<&str>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            key: key.map(str::to_owned),
            refused: None,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `400 Bad Request`.
    pub(crate) fn bad_request(message: impl Into<String>, key: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message, key)
    }

    /// `404 Not Found`.
    pub(crate) fn not_found(message: impl Into<String>, key: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message, key)
    }

    /// `412 Precondition Failed`: `scope` changed after the `If-Match` seq.
    pub(crate) fn stale(scope: &str, since: i64, changed_at: i64) -> ApiError {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "'{scope}' changed at seq {changed_at}, after the If-Match seq {since}; nothing was written (read it again, then retry)"
            ),
            Some(scope),
        )
    }

    /// The library's error as an answer. `value_of` gives the value the
    /// request meant for a key (already redacted when secret), so that a
    /// validation failure can show it.
    pub(crate) fn from_store(error: Error, value_of: impl Fn(&str) -> Option<Value>) -> ApiError {
        let message = error.to_string();
        let (status, key) = match &error {
            Error::InvalidKey { key, .. } => (StatusCode::BAD_REQUEST, Some(key.clone())),
            Error::Json { .. } => (StatusCode::BAD_REQUEST, None),
            Error::InvalidValue { key, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(key.clone()).filter(|key| !key.is_empty()),
            ),
            Error::Rejected { key, reason } => {
                return ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message,
                    key: Some(key.clone()),
                    refused: Some((value_of(key).unwrap_or(Value::Null), reason.clone())),
                };
            }
            Error::Conflict { key, .. } => (StatusCode::CONFLICT, Some(key.clone())),
            Error::Misplaced { .. } => (StatusCode::CONFLICT, None),
            Error::UnknownSeq { .. } => (StatusCode::NOT_FOUND, None),
            Error::Busy { .. } | Error::DatabaseMissing { .. } | Error::FileReplaced { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            Error::ReadOnly { .. } | Error::CannotWrite { .. } => (StatusCode::FORBIDDEN, None),
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            log::error!("request failed: {message}");
        }
        ApiError {
            status,
            message,
            key,
            refused: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "key": self.key});
        if let Some((value, rule)) = self.refused {
            body["value"] = value;
            body["rule"] = Value::String(rule);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
