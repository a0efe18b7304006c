//! Temporary overrides coming due: whichever store runs restores them on
//! time (its watcher thread), and when none runs, the next store to open
//! does it at once. Each restore is a compare-and-restore write of its own:
//! the previous value comes back only while the key still holds the
//! override's value (a later write by anyone cancels it), and two stores
//! racing to restore cannot both do it (the override's row is read and
//! removed inside the write transaction).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::{overrides, writes};
use crate::engine::Core;
use crate::error::Result;

/// The origin of the log rows that put an expired override's previous
/// value back.
pub(crate) const RESTORE_ORIGIN: &str = "override-expired";

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Core {
    /// Restores every override due by now and learns when the next one is
    /// due. Returns how many were restored.
    pub(crate) fn restore_due_overrides(&self) -> Result<usize> {
        if self.options.is_read_only() {
            return Ok(0);
        }
        let pending = self.read("overrides", |tx, path| overrides::all(tx, path))?;
        let mut next = i64::MAX;
        let mut restored = 0;
        for (key, stored) in pending {
            if stored.until_ms > now_ms() {
                next = next.min(stored.until_ms);
                continue;
            }
            let path = &self.path;
            let (outcome, _) = self.write_as(
                "restore_override",
                Some(RESTORE_ORIGIN),
                true,
                |tx, _| {
                    let Some(current) = overrides::get(tx, path, &key)? else {
                        return Ok(None); // Another store restored it.
                    };
                    if current.until_ms > now_ms() {
                        return Ok(Some(current.until_ms)); // Moved meanwhile.
                    }
                    overrides::remove(tx, path, &key)?;
                    let now = overrides::current_text(tx, path, &key)?;
                    if now.as_deref() != Some(current.value.as_str()) {
                        log::info!("the temporary override of '{key}' was replaced meanwhile; nothing to restore");
                        return Ok(None);
                    }
                    match &current.restore {
                        Some(text) => writes::upsert(tx, &key, text)?,
                        None => writes::delete_key(tx, &key)?,
                    }
                    restored += 1;
                    Ok(None)
                },
            )?;
            if let Some(moved) = outcome {
                next = next.min(moved);
            }
        }
        self.next_override_due.store(next, Ordering::Release);
        Ok(restored)
    }

    /// For a store that cannot write: an override that expired while no
    /// store ran is over all the same, so readers are served the value it
    /// would restore (the database is not touched; the next store with
    /// write access logs the restore, and this store then applies it like
    /// any foreign change). Returns how many keys are served so.
    pub(crate) fn serve_expired_overrides(&self) -> Result<usize> {
        let now = now_ms();
        let path = &self.path;
        let due: Vec<(String, Option<String>)> = self.read("overrides", |tx, path| {
            Ok(overrides::in_force(tx, path)?
                .into_iter()
                .filter(|(_, stored)| stored.until_ms <= now)
                .map(|(key, stored)| (key, stored.restore))
                .collect())
        })?;
        if due.is_empty() {
            return Ok(0);
        }
        self.exclusive("serve_expired_overrides", || {
            let mut served = (*self.snapshot.load_full()).clone();
            for (key, restore) in &due {
                let value = match restore {
                    Some(text) => Some(crate::value::parse_stored_text(key, text)?),
                    None => None,
                };
                served = served.with_change(key, value)?;
            }
            log::info!(
                "{}: {} temporary overrides expired while no store ran; serving the values they restore",
                path.display(),
                due.len()
            );
            self.replace_snapshot(served);
            Ok(due.len())
        })
    }

    /// Notes an override due at `until_ms` (set by this store).
    pub(crate) fn note_override_due(&self, until_ms: i64) {
        self.next_override_due.fetch_min(until_ms, Ordering::AcqRel);
    }

    /// After a failed restore: try again in a second, not in a busy loop.
    pub(crate) fn retry_overrides_later(&self) {
        self.next_override_due
            .store(now_ms().saturating_add(1000), Ordering::Release);
    }

    /// How long until the next known override is due (`None`: none).
    pub(crate) fn override_due_in(&self) -> Option<Duration> {
        let due = self.next_override_due.load(Ordering::Acquire);
        (due != i64::MAX).then(|| {
            Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0))
        })
    }
}
