//! `livesettings serve`: an HTTP API over a [`Store`], a live change
//! stream (Server-Sent Events, resumable by seq) and a web console, on axum
//! and tokio (feature `serve`). The rest of the library stays runtime-free:
//! [`Server::run`] builds its own tokio runtime.
//!
//! Every request needs the bearer token ([`token`] creates and reads the
//! token file); the `Host` header must name the listen address; no CORS
//! unless origins are allowed; request bodies are capped. The README's
//! "Serving" section lists the routes, the stream's events and the security
//! model.
//!
//! ```no_run
//! use std::sync::Arc;
//! use livesettings::serve::Server;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(livesettings::Store::open("data/settings.db")?);
//! let token = livesettings::serve::token::load_or_create("data/settings.db.token".as_ref())?;
//! Server::new(store, token)
//!     .with_listen("127.0.0.1:7878".parse()?)
//!     .run(|address| println!("listening on http://{address}/"))?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod body;
mod console;
mod error;
mod events;
mod history;
mod router;
mod settings;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::Store;

pub use crate::serve::error::ApiError;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The default cap on a request body, in bytes (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// An HTTP server over a store: the settings API, the event stream and the
/// console. Build it with [`Server::new`], adjust it with the `with_*`
/// setters, start it with [`Server::run`].
#[derive(Clone)]
pub struct Server {
    store: Arc<Store>,
    token: String,
    listen: SocketAddr,
    allowed_origins: Vec<String>,
    max_body: usize,
}

impl Server {
    /// A server over `store` that accepts requests carrying `token`,
    /// listening on [`DEFAULT_LISTEN`].
    pub fn new(store: Arc<Store>, token: String) -> Server {
        Server {
            store,
            token,
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            allowed_origins: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Listens on `address` (port 0: any free port; [`Server::run`] reports
    /// the one bound). Anything but loopback exposes the settings to the
    /// network: the token is then the only protection, over plain HTTP.
    #[must_use]
    pub fn with_listen(mut self, address: SocketAddr) -> Server {
        self.listen = address;
        self
    }

    /// Allows cross-origin requests from `origin` (e.g.
    /// `https://ops.example.com`): CORS headers are sent for it only. None
    /// is allowed by default.
    #[must_use]
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Server {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Caps request bodies at `bytes` (larger ones get `413`).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Server {
        self.max_body = bytes;
        self
    }

    /// Binds the listen address, calls `ready` with the address bound, and
    /// serves until Ctrl-C (SIGINT) or SIGTERM; then open event streams are
    /// ended and the server returns once every connection is closed.
    ///
    /// # Errors
    /// [`Error::Io`] when the runtime cannot start or the address cannot be
    /// bound; [`Error::InvalidOption`] for an allowed origin that is not a
    /// valid header value or an empty token.
    pub fn run(self, ready: impl FnOnce(SocketAddr)) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("livesettings-serve")
            .build()
            .map_err(|source| Error::Io {
                context: "cannot start the HTTP server's runtime".to_owned(),
                source,
            })?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .map_err(|source| Error::Io {
                    context: format!("cannot listen on {}", self.listen),
                    source,
                })?;
            let address = listener.local_addr().map_err(|source| Error::Io {
                context: "cannot read the bound address".to_owned(),
                source,
            })?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let app = router::build(&self, address, stopped)?;
            ready(address);
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    shutdown_signal().await;
                    log::info!("shutting down: ending the event streams");
                    let _ = stop.send(true);
                })
                .await
                .map_err(|source| Error::Io {
                    context: format!("the HTTP server on {address} failed"),
                    source,
                })
        })
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never shown.
        f.debug_struct("Server")
            .field("listen", &self.listen)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            log::error!("cannot listen for Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                log::error!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// The state every handler shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    /// Flips to `true` when the server shuts down: event streams end.
    pub(crate) stopped: tokio::sync::watch::Receiver<bool>,
    /// The cap on request bodies, in bytes.
    pub(crate) max_body: usize,
}
