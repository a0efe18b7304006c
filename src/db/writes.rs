//! The SQL of the library's own writes. Keys and values are always bound as
//! parameters, never formatted into SQL text.

use rusqlite::Transaction;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::ancestors;
use crate::snapshot::Snapshot;
use crate::value::{flatten, to_stored_text};

/// Flattens a tree and serializes each leaf, checking every key and value.
pub(crate) fn stored_leaves(tree: &Value) -> Result<Vec<(String, String)>> {
    flatten("", tree)?
        .into_iter()
        .map(|(key, value)| {
            let text = to_stored_text(&key, &value)?;
            Ok((key, text))
        })
        .collect()
}

/// Refuses keys that would make one key both a value and a section: a key
/// under a key that holds a value, or a key that already has keys below it.
pub(crate) fn check_placement<'k>(
    snapshot: &Snapshot,
    keys: impl Iterator<Item = &'k str>,
) -> Result<()> {
    for key in keys {
        if let Some(holder) = ancestors(key).find(|ancestor| snapshot.contains(ancestor)) {
            return Err(Error::Conflict {
                key: key.to_owned(),
                reason: format!("'{holder}' holds a value, so it cannot have keys below it"),
            });
        }
        if let Some(below) = snapshot.keys(key).find(|found| found.len() > key.len()) {
            return Err(Error::Conflict {
                key: key.to_owned(),
                reason: format!("it is a section (it has '{below}' below it); unset it first"),
            });
        }
    }
    Ok(())
}

/// Sets `key` to `text`: an UPDATE when the key exists (only the update
/// trigger runs: the insert triggers' note-keeping for INSERT OR REPLACE
/// costs two more pages per commit), else an INSERT. Nothing runs when the
/// value is unchanged.
pub(crate) fn upsert(tx: &Transaction<'_>, key: &str, text: &str) -> Result<()> {
    let updated = tx
        .prepare_cached("UPDATE settings SET value = ?2 WHERE key = ?1 AND value IS NOT ?2")?
        .execute((key, text))?;
    if updated == 0 {
        tx.prepare_cached(
            "INSERT INTO settings (key, value) SELECT ?1, ?2 \
             WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = ?1)",
        )?
        .execute((key, text))?;
    }
    Ok(())
}

pub(crate) fn insert_missing(tx: &Transaction<'_>, key: &str, text: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO settings (key, value) SELECT ?1, ?2 \
         WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = ?1)",
    )?
    .execute((key, text))?;
    Ok(())
}

/// Writes `rows` (a value, or `None` to delete the key) as one restoration:
/// every delete first, then the values. The database refuses a key below a
/// key that holds a value, or a value at a key with keys below it, at each
/// statement (its tree-shape triggers), so a restoration that turns a value
/// back into a section, or a section into a value, must clear the old side
/// before it writes the new one.
pub(crate) fn restore(tx: &Transaction<'_>, rows: &[(String, Option<String>)]) -> Result<()> {
    for (key, _) in rows.iter().filter(|(_, text)| text.is_none()) {
        delete_key(tx, key)?;
    }
    for (key, text) in rows {
        if let Some(text) = text {
            upsert(tx, key, text)?;
        }
    }
    Ok(())
}

pub(crate) fn delete_key(tx: &Transaction<'_>, key: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM settings WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Deletes `prefix` and the keys below it: those sort in
/// `[prefix + ".", prefix + "/")` ('/' follows '.' in ASCII), so the
/// primary-key index answers it.
pub(crate) fn delete_prefix(tx: &Transaction<'_>, prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        tx.execute("DELETE FROM settings", [])?;
    } else {
        tx.prepare_cached(
            "DELETE FROM settings WHERE key = ?1 OR (key >= ?1 || '.' AND key < ?1 || '/')",
        )?
        .execute([prefix])?;
    }
    Ok(())
}
