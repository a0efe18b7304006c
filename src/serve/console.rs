//! The web console: one page (`console/index.html` with `console.css` and
//! `console.js` inlined, so the page needs no second request and no CDN),
//! served with a strict Content-Security-Policy whose nonce changes with
//! every load.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("console/index.html");
const STYLE: &str = include_str!("console/console.css");
const SCRIPT: &str = include_str!("console/console.js");

/// `GET /`: the console.
pub(crate) async fn page() -> Response {
    let nonce = nonce();
    let html = PAGE
        .replace("{{NONCE}}", &nonce)
        .replace("/*{{STYLE}}*/", STYLE)
        .replace("//{{SCRIPT}}", SCRIPT);
    let mut response = Html(html).into_response();
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    // The address bar may still hold the token: never send it elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A fresh nonce (128 random bits, hex); a constant would defeat the
/// policy, so a failing random source fails the page instead.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        log::error!("no random source for the console's nonce");
        return "unavailable".to_owned();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
