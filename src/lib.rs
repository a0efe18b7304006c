//! Hot-reloadable application settings stored in SQLite.
//!
//! Settings are dotted keys (`visualisation.graphs.logseq.physics.damping`)
//! with JSON values, one row each in a SQLite table that operators can edit
//! with the `sqlite3` shell. A [`Store`] keeps them in an immutable
//! in-memory [`Snapshot`] that readers load without blocking, and applies
//! every change — its own writes, other processes' commits, an operator's
//! `UPDATE`, a replaced file — key by key, within milliseconds:
//!
//! - in-process writes go through one writer connection whose `update_hook`
//!   points at the change-log rows the transaction wrote; they are in the
//!   snapshot before the write call returns;
//! - SQL triggers record every change in `settings_log`, whoever made it;
//! - a watcher thread, woken by file events and confirmed by
//!   `PRAGMA data_version`, applies foreign commits from that log, and falls
//!   back to a full reload and diff when the log cannot be trusted.
//!
//! ```
//! use livesettings::{Event, Store};
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("settings.db"))?;
//! let changes = store.subscribe("visualisation.graphs.logseq.physics")?;
//!
//! store.set("visualisation.graphs.logseq.physics.damping", &0.95)?;
//! let damping: Option<f64> = store.get("visualisation.graphs.logseq.physics.damping")?;
//! assert_eq!(damping, Some(0.95));
//!
//! let Event::Change(change) = changes.recv()? else { unreachable!() };
//! assert_eq!(change.key, "visualisation.graphs.logseq.physics.damping");
//! assert_eq!(change.new_value(), Some(&serde_json::json!(0.95)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The README covers the CLI, the watcher's guarantees and known problems.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "async")]
mod async_api;
mod consumers;
mod db;
mod engine;
mod error;
mod events;
#[cfg(feature = "nats")]
pub mod fleet;
mod key;
mod layers;
mod live;
mod options;
mod rules;
pub mod secrets;
#[cfg(feature = "serve")]
pub mod serve;
mod snapshot;
mod stats;
mod store;
mod value;
mod watch;

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals;

#[cfg(feature = "async")]
pub use crate::async_api::{Closed, EventStream, LiveWatch};
pub use crate::consumers::{
    CONSUMER_RECORD_VERSION, Consumer, ConsumerState, REMOTE_STALE_AFTER, STALE_GRACE, SWEEP_EVERY,
    consumers, consumers_folder, expire_consumers,
};
pub use crate::db::checkpoints::{Checkpoint, MAX_CHECKPOINT_NAME_BYTES, validate_checkpoint_name};
pub use crate::db::history::{HistoryEntry, Retention};
pub use crate::db::schema::SCHEMA_VERSION;
pub use crate::error::{Error, Result};
pub use crate::layers::Layer;

// The dependency types that appear in this crate's signatures, re-exported so
// that callers name exactly the versions the store uses (`livesettings::
// Receiver`, `livesettings::rusqlite::params!` in a `write` closure). A major
// bump of one of these crates is a breaking change of livesettings and is
// released as one.
pub use crate::events::{Change, ChangeSet, Event, Rejection, ReloadReason, Source};
pub use crate::key::{MAX_KEY_BYTES, validate_key, validate_prefix};
pub use crate::live::Live;
pub use crate::options::{Durability, Options, WatchMode};
pub use crate::rules::{Rule, Rules, Violation};
pub use crate::secrets::{REDACTED, Secrets, is_redacted, redact, redacted};
pub use crate::snapshot::Snapshot;
pub use crate::stats::Stats;
pub use crate::store::explain::Explanation;
pub use crate::store::history::Resumed;
pub use crate::store::overrides::PendingOverride;
pub use crate::store::plan::{Plan, PlannedChange};
pub use crate::store::{Commit, Store};
pub use crate::value::parse_json_value;
pub use crate::value::{MAX_VALUE_BYTES, MAX_VALUE_DEPTH, flatten, unflatten};
pub use arc_swap::Guard;
pub use crossbeam_channel::Receiver;
#[cfg(feature = "async")]
pub use futures_core::Stream;
pub use rusqlite;
pub use rusqlite::Transaction;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
