//! Cached typed sections, rebuilt only when a key under their prefix changes.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::{ArcSwap, Guard};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::key::is_under;
use crate::snapshot::Snapshot;

/// A typed view of one section that follows every change.
///
/// Reading is a pointer load: the value is rebuilt by the store, once per
/// commit that touches a key under the prefix, not by readers. When a change
/// leaves the section undecodable as `T`, the handle keeps its last good
/// value and [`Live::last_error`] says why.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Physics { damping: f64 }
///
/// # let dir = tempfile::tempdir()?;
/// let store = livesettings::Store::open(dir.path().join("s.db"))?;
/// store.set("physics.damping", &0.6)?;
/// let physics = store.live::<Physics>("physics")?;
/// assert_eq!(physics.load().damping, 0.6);
/// store.set("physics.damping", &0.9)?;
/// assert_eq!(physics.load().damping, 0.9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Live<T> {
    pub(crate) slot: Arc<LiveSlot<T>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T> Live<T> {
    /// The current value: a lock-free pointer load.
    pub fn load(&self) -> Guard<Arc<T>> {
        self.slot.value.load()
    }

    /// The current value as an owned `Arc`.
    pub fn get(&self) -> Arc<T> {
        self.slot.value.load_full()
    }

    /// The prefix this handle follows.
    pub fn prefix(&self) -> &str {
        &self.slot.prefix
    }

    /// Why the last rebuild failed, if it did (cleared by a good rebuild).
    pub fn last_error(&self) -> Option<String> {
        self.slot
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) struct LiveSlot<T> {
    prefix: String,
    value: ArcSwap<T>,
    error: Mutex<Option<String>>,
    /// The rebuild count and the async watchers to wake (feature `async`).
    #[cfg(feature = "async")]
    pub(crate) versions: crate::async_api::Versions,
}

/// The type-erased side the store keeps to refresh handles.
pub(crate) trait Refresh: Send + Sync {
    fn prefix(&self) -> &str;
    fn refresh(&self, snapshot: &Snapshot);
    /// The store is gone: no rebuild will come (wakes async watchers).
    #[cfg(feature = "async")]
    fn close(&self);
}

impl<T: DeserializeOwned + Send + Sync> Refresh for LiveSlot<T> {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn refresh(&self, snapshot: &Snapshot) {
        // A panicking `Deserialize` keeps the last good value, like an error.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            snapshot.section::<T>(&self.prefix)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Rejected {
                key: self.prefix.clone(),
                reason: "deserializing the section panicked".to_owned(),
            })
        });
        let mut error = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(value) => {
                self.value.store(Arc::new(value));
                *error = None;
                #[cfg(feature = "async")]
                self.versions.bump();
            }
            Err(failure) => {
                log::warn!(
                    "live section '{}' keeps its last good value: {failure}",
                    self.prefix
                );
                *error = Some(failure.to_string());
            }
        }
    }

    #[cfg(feature = "async")]
    fn close(&self) {
        self.versions.close();
    }
}

/// The handles a store keeps up to date.
#[derive(Default)]
pub(crate) struct LiveRegistry {
    slots: Mutex<Vec<Weak<dyn Refresh>>>,
}

impl LiveRegistry {
    /// Builds a handle from `snapshot` and registers it.
    pub(crate) fn register<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        prefix: &str,
        snapshot: &Snapshot,
    ) -> Result<Live<T>, Error> {
        let value = snapshot.section::<T>(prefix)?;
        let slot = Arc::new(LiveSlot {
            prefix: prefix.to_owned(),
            value: ArcSwap::from_pointee(value),
            error: Mutex::new(None),
            #[cfg(feature = "async")]
            versions: crate::async_api::Versions::default(),
        });
        let erased: Arc<dyn Refresh> = slot.clone();
        self.lock().push(Arc::downgrade(&erased));
        Ok(Live { slot })
    }

    /// Rebuilds the handles whose prefix covers one of `keys` (every handle
    /// when `everything`), and forgets dropped ones.
    pub(crate) fn refresh<'k>(
        &self,
        snapshot: &Snapshot,
        everything: bool,
        keys: impl Iterator<Item = &'k str> + Clone,
    ) {
        self.lock().retain(|weak| {
            let Some(slot) = weak.upgrade() else {
                return false;
            };
            if everything || keys.clone().any(|key| is_under(slot.prefix(), key)) {
                slot.refresh(snapshot);
            }
            true
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Refresh>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The store owns the registry: when it is dropped, async watchers learn
/// that no rebuild will come.
#[cfg(feature = "async")]
impl Drop for LiveRegistry {
    fn drop(&mut self) {
        for slot in self.lock().iter().filter_map(Weak::upgrade) {
            slot.close();
        }
    }
}
