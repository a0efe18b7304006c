//! The inbound side: bucket entries applied to the local file, one entry
//! or one pushed commit per `BEGIN IMMEDIATE` transaction, each change
//! logged by the ordinary triggers and stamped `nats:<revision>`, the
//! revision recorded in the same transaction. Every store on the host then
//! sees it through its watcher, as any foreign commit.
//!
//! An entry at or below the revision this host already knows for its key
//! changes nothing: it is this host's own push coming back (the ack's
//! revision was recorded when it was pushed), or older than what was
//! applied. The applied revision still moves on.
//!
//! The tree shape: a value at `a.b` removes a value at `a` and the keys
//! below `a.b` first (the later revision wins the shape, as it wins the
//! value), so every host applying the same bucket order ends with the same
//! tree.

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::codec::Op;
use super::state::{self, Known, NewReport};
use crate::db::writes;
use crate::error::{Result, SqliteContext};

/// One bucket entry, as read from the stream.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub(crate) revision: u64,
    /// The KV key of the subject.
    pub(crate) subject_key: String,
    /// The livesettings key and what the entry does, or why it is not a
    /// livesettings setting.
    pub(crate) change: std::result::Result<(String, Op), String>,
}

/// What applying a group did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Entries that changed the local file (or its knowledge of a key).
    pub(crate) applied: usize,
    /// Entries already known (own pushes coming back, older revisions).
    pub(crate) known: usize,
    /// Entries that are not livesettings settings.
    pub(crate) invalid: usize,
}

/// Applies `entries` (one entry, or the entries of one pushed commit) in
/// one transaction and records `through` as the applied revision.
pub(crate) fn apply(
    conn: &mut Connection,
    path: &Path,
    bucket: &str,
    entries: &[Incoming],
    through: u64,
) -> Result<Applied> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(path, "cannot begin an inbound transaction")?;
    let mut outcome = Applied::default();
    for entry in entries {
        match &entry.change {
            Err(reason) => {
                log::warn!(
                    "bucket entry {} ('{}') is not a livesettings setting: {reason}",
                    entry.revision,
                    entry.subject_key
                );
                state::report(
                    &tx,
                    path,
                    bucket,
                    &NewReport {
                        kind: "invalid",
                        key: &entry.subject_key,
                        local_seq: None,
                        local_value: None,
                        fleet_revision: Some(entry.revision),
                        fleet_value: None,
                        undo_seq: None,
                        reason,
                    },
                )?;
                outcome.invalid += 1;
            }
            Ok((key, op)) => {
                let origin = format!("{}{}", state::ORIGIN_PREFIX, entry.revision);
                if apply_entry(&tx, path, bucket, key, entry.revision, op, &origin)? {
                    outcome.applied += 1;
                } else {
                    outcome.known += 1;
                }
            }
        }
    }
    state::set_applied(&tx, path, bucket, through)?;
    tx.commit()
        .context(path, "cannot commit an inbound transaction")?;
    Ok(outcome)
}

/// Applies one entry inside `tx` unless this host already knows the key at
/// `revision` or later; `true` when applied. The rows it logs are stamped
/// with `origin`.
pub(crate) fn apply_entry(
    tx: &Transaction<'_>,
    path: &Path,
    bucket: &str,
    key: &str,
    revision: u64,
    op: &Op,
    origin: &str,
) -> Result<bool> {
    if state::known(tx, path, bucket, key)?.is_some_and(|known| known.revision >= revision) {
        return Ok(false);
    }
    let before = state::log_position(tx, path)?;
    write_op(tx, key, op)?;
    state::stamp(tx, path, before, origin)?;
    let after = state::log_position(tx, path)?;
    let value = match op {
        Op::Put(text) => Some(text.clone()),
        Op::Delete => None,
    };
    state::set_known(
        tx,
        path,
        bucket,
        key,
        &Known {
            revision,
            seq: after,
            value,
        },
    )?;
    Ok(true)
}

/// Makes `key` hold what `op` says, clearing what stands in the tree's way.
pub(crate) fn write_op(tx: &Transaction<'_>, key: &str, op: &Op) -> Result<()> {
    match op {
        Op::Put(text) => {
            for above in crate::key::ancestors(key) {
                writes::delete_key(tx, above)?;
            }
            tx.prepare_cached("DELETE FROM settings WHERE key >= ?1 || '.' AND key < ?1 || '/'")?
                .execute([key])?;
            writes::upsert(tx, key, text)
        }
        Op::Delete => writes::delete_key(tx, key),
    }
}
