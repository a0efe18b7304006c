//! Hooks for the bench report (`examples/bench_report.rs`) only, behind the
//! `bench-internals` feature: not part of the API, and free to change in
//! any release.

use serde_json::Value;

use crate::error::Result;
use crate::snapshot::Snapshot;

/// The snapshot-apply step the store runs per changed key.
///
/// # Errors
/// As the store's own step: a malformed key or an oversized value.
pub fn apply_change(snapshot: &Snapshot, key: &str, value: Option<Value>) -> Result<Snapshot> {
    snapshot.with_change(key, value)
}
