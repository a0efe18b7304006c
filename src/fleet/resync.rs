//! Resynchronising from the bucket's current state, when its history no
//! longer reaches the revision this host applied last (a purge, an expiry,
//! a recreated bucket), and when a host joins (it has applied nothing yet).
//!
//! The latest entry of every key is read, and the difference is applied
//! key by key in one transaction:
//! - a key whose bucket revision is newer than this host knew takes the
//!   bucket's value (or is deleted, for a delete marker); a local change
//!   logged before is then reported by the outbox as overwritten;
//! - a key this host knew in the bucket but that has no entry any more
//!   (its history was purged) is deleted locally, unless it was changed
//!   locally since (then the outbox pushes it again);
//! - a key the bucket never had is local only: kept, and pushed by the
//!   outbox (this is how a joining host adopts the bucket and adds to it).

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::codec::Op;
use super::inbox::{Incoming, apply_entry, write_op};
use super::state::{self, Known};
use crate::error::{Result, SqliteContext};

/// What a resync changed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Resynced {
    /// Keys set or deleted from the bucket's entries.
    pub(crate) applied: usize,
    /// Keys deleted because the bucket lost them.
    pub(crate) removed: usize,
}

/// Applies the bucket's latest entries (`latest`, any order) as the per-key
/// difference, and records `through` as the applied revision. `reset`: the
/// bucket's revisions started again (forget every key's revision first).
pub(crate) fn resync(
    conn: &mut Connection,
    path: &Path,
    bucket: &str,
    mut latest: Vec<Incoming>,
    through: u64,
    reset: bool,
) -> Result<Resynced> {
    latest.sort_by_key(|entry| entry.revision);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(path, "cannot begin the resync transaction")?;
    if reset {
        state::forget_keys(&tx, path, bucket)?;
    }
    let mut outcome = Resynced::default();
    let mut in_bucket = HashSet::new();
    for entry in &latest {
        in_bucket.insert(entry.subject_key.clone());
        let Ok((key, op)) = &entry.change else {
            continue;
        };
        let origin = format!("{}{}", state::ORIGIN_PREFIX, entry.revision);
        if apply_entry(&tx, path, bucket, key, entry.revision, op, &origin)? {
            outcome.applied += 1;
        }
    }
    let origin = format!("{}resync", state::ORIGIN_PREFIX);
    for (key, known) in state::all_known(&tx, path, bucket)? {
        if in_bucket.contains(&key) || known.value.is_none() {
            continue;
        }
        if state::local_change_after(&tx, path, &key, known.seq)? {
            continue;
        }
        let before = state::log_position(&tx, path)?;
        write_op(&tx, &key, &Op::Delete)?;
        state::stamp(&tx, path, before, &origin)?;
        let after = state::log_position(&tx, path)?;
        state::set_known(
            &tx,
            path,
            bucket,
            &key,
            &Known {
                revision: known.revision,
                seq: after,
                value: None,
            },
        )?;
        outcome.removed += 1;
    }
    state::reset_applied(&tx, path, bucket, through)?;
    tx.commit().context(path, "cannot commit the resync")?;
    Ok(outcome)
}
