//! The outbound side's source: the change log is the outbox. Every row
//! after the pushed position that the bridge did not write itself (origin
//! `nats:…`) is a local change to push, whoever wrote it: a `Store`, the
//! CLI, the `sqlite3` shell. Rows are read in one read transaction, so a
//! commit is never split; several rows of one key collapse to the last.
//!
//! When rows after the pushed position were pruned before they were pushed
//! (a retention shorter than an outage), the log cannot say what changed:
//! the outbox then compares the whole local tree with what it last knew of
//! the bucket, key by key.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::Connection;

use super::state;
use crate::error::{Result, SqliteContext};

/// A local change to push: the key's value (`None`: deleted) at its last
/// log row `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) key: String,
    pub(crate) seq: i64,
    pub(crate) value: Option<String>,
}

/// The outbox's contents: changes in the order of their last rows, and the
/// log position they run through.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) changes: Vec<Pending>,
    pub(crate) through: i64,
}

/// Reads the outbox (in one read transaction).
pub(crate) fn read(conn: &mut Connection, path: &Path, bucket: &str) -> Result<Outbox> {
    let tx = conn
        .transaction()
        .context(path, "cannot begin reading the outbox")?;
    let pushed = state::cursor(&tx, path, bucket)?.pushed_seq;
    let through = state::log_position(&tx, path)?;
    if through <= pushed {
        return Ok(Outbox {
            through: pushed,
            ..Outbox::default()
        });
    }
    let oldest: Option<i64> = tx
        .query_row("SELECT min(seq) FROM settings_log", [], |row| row.get(0))
        .context(path, "cannot read the change log")?;
    if oldest.is_none_or(|oldest| oldest > pushed + 1) {
        log::warn!(
            "{}: change-log rows after seq {pushed} were pruned before they were pushed: comparing every key with the bucket",
            path.display()
        );
        let changes = whole_tree_diff(&tx, path, bucket, through)?;
        return Ok(Outbox { changes, through });
    }
    let mut statement = tx
        .prepare_cached(
            "SELECT seq, key, new FROM settings_log \
             WHERE seq > ?1 AND seq <= ?2 AND origin NOT GLOB 'nats:*' ORDER BY seq",
        )
        .context(path, "cannot read the outbox")?;
    let rows: Vec<Pending> = statement
        .query_map((pushed, through), |row| {
            Ok(Pending {
                seq: row.get(0)?,
                key: row.get(1)?,
                value: row.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .context(path, "cannot read the outbox")?;
    Ok(Outbox {
        changes: collapse(rows),
        through,
    })
}

/// How many local rows wait to be pushed.
pub(crate) fn pending_rows(conn: &Connection, path: &Path, bucket: &str) -> Result<i64> {
    let pushed = state::cursor(conn, path, bucket)?.pushed_seq;
    conn.query_row(
        "SELECT count(*) FROM settings_log WHERE seq > ?1 AND origin NOT GLOB 'nats:*'",
        [pushed],
        |row| row.get(0),
    )
    .context(path, "cannot count the outbox")
}

/// The last row of each key, in the order of those rows.
fn collapse(rows: Vec<Pending>) -> Vec<Pending> {
    let mut last: HashMap<String, Pending> = HashMap::new();
    for row in rows {
        last.insert(row.key.clone(), row);
    }
    let mut changes: Vec<Pending> = last.into_values().collect();
    changes.sort_by_key(|change| change.seq);
    changes
}

/// Every key whose local value differs from the last one known in the
/// bucket, as changes at `through`.
fn whole_tree_diff(
    conn: &Connection,
    path: &Path,
    bucket: &str,
    through: i64,
) -> Result<Vec<Pending>> {
    let known: HashMap<String, Option<String>> = state::all_known(conn, path, bucket)?
        .into_iter()
        .map(|(key, known)| (key, known.value))
        .collect();
    let mut statement = conn
        .prepare("SELECT key, value FROM settings ORDER BY key")
        .context(path, "cannot read the settings")?;
    let local: HashMap<String, String> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .context(path, "cannot read the settings")?;
    let mut changes: Vec<Pending> = local
        .iter()
        .filter(|(key, value)| {
            known
                .get(*key)
                .is_none_or(|known| known.as_ref() != Some(*value))
        })
        .map(|(key, value)| Pending {
            key: key.clone(),
            seq: through,
            value: Some(value.clone()),
        })
        .collect();
    changes.extend(
        known
            .iter()
            .filter(|(key, value)| value.is_some() && !local.contains_key(*key))
            .map(|(key, _)| Pending {
                key: key.clone(),
                seq: through,
                value: None,
            }),
    );
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_rows_of_one_key_collapse_to_the_last_in_its_order() {
        let row = |seq, key: &str, value: Option<&str>| Pending {
            key: key.to_owned(),
            seq,
            value: value.map(str::to_owned),
        };
        let changes = collapse(vec![
            row(1, "a", Some("1")),
            row(2, "b", Some("1")),
            row(3, "a", None),
            row(4, "c", Some("1")),
        ]);
        assert_eq!(
            changes,
            vec![
                row(2, "b", Some("1")),
                row(3, "a", None),
                row(4, "c", Some("1"))
            ]
        );
    }
}
