//! The fleet bridge: one settings tree shared by many hosts through a NATS
//! JetStream KV bucket, every host's processes still reading their local
//! SQLite file through [`Store`](crate::Store) (feature `nats`).
//!
//! One bridge runs per database file ([`run`], `livesettings sync`):
//! - **outbound**, the change log is the outbox: every local commit (any
//!   row the bridge did not write) is pushed in seq order, one commit's
//!   keys as one atomic batch;
//! - **inbound**, the bucket's history is applied in revision order from the
//!   last revision applied, one entry (or pushed commit) per transaction,
//!   with origin `nats:<revision>` and the revision recorded in the same
//!   transaction;
//! - **conflicts** follow [`Mode`]; **echoes** (the bridge's own pushes
//!   coming back) change nothing; a host whose recorded revision the
//!   bucket's history no longer reaches **resynchronises** key by key.
//!
//! [`status`] reads what `livesettings sync status` prints. The README's
//! "Fleet" section has the deployment recipe and the guarantees.

mod bridge;
mod bucket;
mod codec;
mod error;
mod inbox;
mod lock;
mod outbox;
mod resync;
mod rule;
mod state;
mod status;

pub use bridge::{Stopper, SyncEvent, SyncOptions, run};
pub use error::{SyncError, SyncResult};
pub use lock::lock_path;
pub use rule::Mode;
pub use state::Cursor;
pub use status::{BridgeRecord, Report, SyncStatus, record_path, status};
