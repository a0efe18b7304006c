//! The router, built in one place: routes, the auth gate, the body cap and
//! (when configured) CORS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{Error, Result};
use crate::serve::auth::{Gate, check};
use crate::serve::error::ApiError;
use crate::serve::{Server, Shared, console, events, history, settings};

pub(crate) fn build(
    server: &Server,
    address: SocketAddr,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<Router> {
    if server.token.trim().is_empty() {
        return Err(Error::InvalidOption {
            option: "token",
            reason: "the token is empty".to_owned(),
        });
    }
    let shared = Arc::new(Shared {
        store: Arc::clone(&server.store),
        stopped,
        max_body: server.max_body,
    });
    let gate = Arc::new(Gate::new(server.token.clone(), address));
    let router = Router::new()
        .route("/", get(console::page))
        .route(
            "/api/settings",
            get(settings::get_all).patch(settings::patch_all),
        )
        .route("/api/settings/update", post(settings::patch_all))
        .route(
            "/api/settings/{*key}",
            get(settings::get_one)
                .put(settings::put)
                .patch(settings::patch_one)
                .delete(settings::delete),
        )
        .route("/api/history/{*key}", get(history::history))
        .route("/api/revert/{seq}", post(history::revert))
        .route("/api/stats", get(history::stats))
        .route("/api/events", get(events::events))
        .fallback(|| async {
            ApiError::not_found("no such route (see the README's API section)", None)
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
                None,
            )
            .into_response()
        })
        .with_state(shared)
        .layer(axum::middleware::from_fn_with_state(gate, check));
    if server.allowed_origins.is_empty() {
        return Ok(router);
    }
    let origins = server
        .allowed_origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| Error::InvalidOption {
                option: "allow-origin",
                reason: format!("{origin:?} is not a valid origin"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::PUT,
            Method::PATCH,
            Method::POST,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::ETAG]);
    Ok(router.layer(cors))
}
