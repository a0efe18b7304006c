//! Who may talk to the server: the `Host` header must name the listen
//! address (against DNS rebinding), and every request must carry the bearer
//! token: `Authorization: Bearer TOKEN`, or `?token=TOKEN` on the console
//! page and the event stream only (a browser's `EventSource` cannot set
//! headers). Tokens are compared in constant time and never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::serve::error::ApiError;

/// The routes that accept the token in the query string.
const QUERY_TOKEN_ROUTES: [&str; 2] = ["/", "/api/events"];

/// What the checks compare against.
pub(crate) struct Gate {
    token: String,
    /// `Host` values accepted (lowercase, with the port).
    hosts: Vec<String>,
    /// The bound port, for a server listening on every interface (which
    /// then accepts any IP literal with it).
    any_ip_port: Option<u16>,
}

impl Gate {
    pub(crate) fn new(token: String, address: SocketAddr) -> Gate {
        let port = address.port();
        let ip = address.ip();
        let mut hosts = vec![address.to_string()];
        if ip.is_loopback() {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                hosts.push(format!("{name}:{port}"));
            }
        }
        Gate {
            token,
            hosts,
            any_ip_port: ip.is_unspecified().then_some(port),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        // Bound to every interface: any IP literal (never a DNS name, which
        // is what a rebinding attack needs) with the bound port.
        self.any_ip_port.is_some_and(|port| {
            host.parse::<SocketAddr>()
                .is_ok_and(|address| address.port() == port)
        })
    }

    fn token_matches(&self, offered: &str) -> bool {
        bool::from(offered.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

/// The middleware: Host, then token; adds `nosniff` and `no-store` to
/// every answer.
pub(crate) async fn check(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match host {
        None => {
            return ApiError::bad_request("the request has no Host header", None).into_response();
        }
        Some(host) if !gate.host_allowed(host) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Host {host:?} is not this server's address (requests must name the address it listens on)"),
                None,
            )
            .into_response();
        }
        Some(_) => {}
    }
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let from_query = QUERY_TOKEN_ROUTES
        .contains(&request.uri().path())
        .then(|| query_token(request.uri().query().unwrap_or_default()))
        .flatten();
    let authorized = match from_header.or(from_query.as_deref()) {
        Some(offered) => gate.token_matches(offered),
        None => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing token: send Authorization: Bearer TOKEN (the token is in the token file beside the database)",
                None,
            )
            .into_response();
        }
    };
    if !authorized {
        return ApiError::new(StatusCode::UNAUTHORIZED, "wrong token", None).into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The `token` parameter of a query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        percent_decode(value)
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = text.get(at + 1..at + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_server_accepts_its_own_names_only() {
        let gate = Gate::new("t".into(), "127.0.0.1:4000".parse().unwrap());
        assert!(gate.host_allowed("127.0.0.1:4000"));
        assert!(gate.host_allowed("LOCALHOST:4000"));
        assert!(!gate.host_allowed("localhost:4001"));
        assert!(!gate.host_allowed("evil.example:4000"));
        let any = Gate::new("t".into(), "0.0.0.0:4000".parse().unwrap());
        assert!(any.host_allowed("192.0.2.7:4000"));
        assert!(!any.host_allowed("rebind.example:4000"));
    }

    #[test]
    fn tokens_match_exactly() {
        let gate = Gate::new("secret".into(), "127.0.0.1:1".parse().unwrap());
        assert!(gate.token_matches("secret"));
        assert!(!gate.token_matches("secre"));
        assert!(!gate.token_matches("secret2"));
        assert_eq!(query_token("a=1&token=x%2By").as_deref(), Some("x+y"));
        assert_eq!(query_token("tokens=1"), None);
    }
}
