//! Temporary overrides: `Store::set_for` sets a value now and puts the
//! previous one back when the time is up (see `engine/overrides.rs` for who
//! restores it, and when).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::db::{overrides, writes};
use crate::engine::overrides::now_ms;
use crate::error::{Error, Result, shorten};
use crate::key::validate_key;
use crate::store::{Commit, Store};
use crate::value::{parse_stored_text, to_stored_text};

/// A temporary override waiting to expire.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PendingOverride {
    /// The key.
    pub key: String,
    /// The value the override set.
    pub value: Option<Value>,
    /// The value put back when it expires (`None`: the key is removed).
    pub restore: Option<Value>,
    /// When it expires.
    pub until: SystemTime,
    /// The origin of the store that set it.
    pub by: String,
}

impl Store {
    /// Sets `key` to `value` for `duration`, then puts the previous value
    /// back (removes the key if it was absent) as a new logged change with
    /// origin `override-expired`. Any running store with a watcher restores
    /// it on time; if none runs, the next store to open the database (not
    /// read-only) does it at once. Any later write, by any writer, that
    /// leaves the key with a different value cancels it (it is no longer
    /// pending, and the restore is compare-and-restore); a write of the same
    /// value does not.
    /// Setting an override over a pending one keeps the original value to
    /// restore and moves the expiry.
    ///
    /// # Errors
    /// As [`Store::set`]; [`Error::InvalidOption`] for a zero duration.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("log.level", &"info")?;
    /// store.set_for("log.level", &"debug", std::time::Duration::from_secs(900))?;
    /// assert_eq!(store.get::<String>("log.level")?.as_deref(), Some("debug"));
    /// let pending = store.pending_overrides()?;
    /// assert_eq!(pending[0].restore, Some(serde_json::json!("info")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_for<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        duration: Duration,
    ) -> Result<Commit> {
        validate_key(key)?;
        if duration.is_zero() {
            return Err(Error::InvalidOption {
                option: "duration",
                reason: "a temporary override needs a duration above zero".to_owned(),
            });
        }
        let value = serde_json::to_value(value).map_err(|error| Error::InvalidValue {
            key: shorten(key),
            reason: error.to_string(),
        })?;
        if value.is_object() {
            return Err(Error::InvalidValue {
                key: key.to_owned(),
                reason: "a temporary override sets one value, not a section".to_owned(),
            });
        }
        let text = to_stored_text(key, &value)?;
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let until_ms = now_ms().saturating_add(millis);
        let path = self.core.path.clone();
        let by = self.core.options.origin().to_owned();
        let commit = self.commit("set_for", |tx, snapshot| {
            writes::check_placement(snapshot, std::iter::once(key))?;
            // Over an override still in force, keep what it will restore;
            // one a later write cancelled restores nothing any more.
            let restore = match overrides::get_in_force(tx, &path, key)? {
                Some(pending) => pending.restore,
                None => overrides::current_text(tx, &path, key)?,
            };
            writes::upsert(tx, key, &text)?;
            let stored = overrides::StoredOverride {
                value: text.clone(),
                restore,
                until_ms,
                by: by.clone(),
            };
            overrides::put(tx, &path, key, &stored)
        })?;
        self.core.note_override_due(until_ms);
        Ok(commit)
    }

    /// The temporary overrides waiting to expire, by key.
    ///
    /// # Errors
    /// An error reading the database.
    pub fn pending_overrides(&self) -> Result<Vec<PendingOverride>> {
        let stored = self.core.read("pending_overrides", |tx, path| {
            overrides::in_force(tx, path)
        })?;
        Ok(stored
            .into_iter()
            .map(|(key, stored)| {
                let decode = |text: &str| parse_stored_text(&key, text).ok();
                PendingOverride {
                    value: decode(&stored.value),
                    restore: stored.restore.as_deref().and_then(decode),
                    until: UNIX_EPOCH
                        + Duration::from_millis(u64::try_from(stored.until_ms).unwrap_or(0)),
                    by: stored.by,
                    key,
                }
            })
            .collect())
    }
}
