//! Conditional writes ("only if nothing changed since seq N"), for the HTTP
//! API's `If-Match`: the check and the write run in one IMMEDIATE
//! transaction, so no writer — this store, another process, the `sqlite3`
//! shell — can slip a change in between.

use rusqlite::{OptionalExtension, Transaction};
use serde_json::Value;

use crate::db::writes;
use crate::error::{Error, Result, SqliteContext};
use crate::key::{validate_key, validate_prefix};
use crate::store::{Commit, Store};

/// The outcome of a conditional write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Conditional {
    /// Nothing under the scope changed after the given seq: written.
    Committed(Commit),
    /// The scope changed after the given seq (at `changed_at`), or the log
    /// no longer reaches back to it (`changed_at` is then the oldest seq
    /// kept): nothing was written.
    Stale {
        /// The newest change under the scope (or the oldest row kept).
        changed_at: i64,
    },
}

/// What a conditional write does inside its transaction.
pub(crate) enum Write<'a> {
    /// Set one key (not an object).
    Set(&'a str, &'a Value),
    /// Merge the leaves of a nested document (keys are full dotted keys).
    Merge(&'a Value),
    /// Remove one key.
    Unset(&'a str),
    /// Remove a key and everything below it.
    UnsetSection(&'a str),
}

impl Store {
    /// Runs `write` unless a key at or below `scope` changed after `since`
    /// (`None`: unconditionally). The check reads the change log inside the
    /// write's own IMMEDIATE transaction.
    pub(crate) fn write_unless_changed(
        &self,
        scope: &str,
        since: Option<i64>,
        write: Write<'_>,
    ) -> Result<Conditional> {
        validate_prefix(scope)?;
        let leaves = match &write {
            Write::Set(key, value) => {
                validate_key(key)?;
                vec![((*key).to_owned(), crate::value::to_stored_text(key, value)?)]
            }
            Write::Merge(tree) => writes::stored_leaves(tree)?,
            Write::Unset(key) => {
                validate_key(key)?;
                Vec::new()
            }
            Write::UnsetSection(prefix) => {
                validate_prefix(prefix)?;
                Vec::new()
            }
        };
        let path = self.core.path.clone();
        let mut stale = None;
        let outcome = self.commit("write_unless_changed", |tx, snapshot| {
            stale = None;
            if let Some(since) = since {
                if let Some(changed_at) = changed_after(tx, &path, scope, since)? {
                    stale = Some(changed_at);
                    // Rolls the (empty) transaction back; mapped below.
                    return Err(Error::Conflict {
                        key: scope.to_owned(),
                        reason: format!("changed at seq {changed_at}, after seq {since}"),
                    });
                }
            }
            match &write {
                Write::Set(..) | Write::Merge(_) => {
                    writes::check_placement(snapshot, leaves.iter().map(|(key, _)| key.as_str()))?;
                    for (key, text) in &leaves {
                        writes::upsert(tx, key, text)?;
                    }
                    Ok(())
                }
                Write::Unset(key) => writes::delete_key(tx, key),
                Write::UnsetSection(prefix) => writes::delete_prefix(tx, prefix),
            }
        });
        match (outcome, stale) {
            (Err(_), Some(changed_at)) => Ok(Conditional::Stale { changed_at }),
            (outcome, _) => outcome.map(Conditional::Committed),
        }
    }
}

/// The newest log row at or below `scope` after `since`, or, when the log
/// was pruned past `since` (rows after it may be gone), the oldest row kept.
fn changed_after(
    tx: &Transaction<'_>,
    path: &std::path::Path,
    scope: &str,
    since: i64,
) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT max(seq) FROM settings_log WHERE seq > ?2 AND {}",
        crate::db::change_log::UNDER_PREFIX
    );
    let newest: Option<i64> = tx
        .prepare_cached(&sql)
        .and_then(|mut statement| statement.query_row((scope, since), |row| row.get(0)))
        .context(path, "cannot read the change log")?;
    if newest.is_some() {
        return Ok(newest);
    }
    // Nothing logged after `since`; but rows after it may have been pruned.
    let oldest: Option<i64> = tx
        .query_row("SELECT min(seq) FROM settings_log", [], |row| row.get(0))
        .optional()
        .context(path, "cannot read the change log")?
        .flatten();
    let position = crate::db::change_log::newest_seq(tx, path)?;
    Ok(match oldest {
        Some(oldest) if since + 1 < oldest => Some(oldest),
        None if since < position => Some(position),
        _ => None,
    })
}
