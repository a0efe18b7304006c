//! An awaitable "changed" on a typed section (`tokio::sync::watch`
//! semantics over a [`Live`] handle).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use arc_swap::Guard;
use atomic_waker::AtomicWaker;

use crate::live::Live;

/// The store is closed or dropped: no event or rebuild will come.
///
/// Returned by [`LiveWatch::changed`] and [`EventStream::try_next`](crate::EventStream::try_next).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the store is closed")
    }
}

impl std::error::Error for Closed {}

/// A live slot's rebuild count and the watchers waiting for the next one.
#[derive(Default)]
pub(crate) struct Versions {
    /// Bumped after each rebuild stored a new value.
    version: AtomicU64,
    /// Set when the store is gone.
    closed: AtomicBool,
    /// One waker per [`LiveWatch`]; dropped watchers are pruned as found.
    watchers: Mutex<Vec<Weak<AtomicWaker>>>,
}

impl Versions {
    /// A rebuild stored a new value: count it, then wake every watcher.
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.wake_all();
    }

    /// The store is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.lock().retain(|weak| match weak.upgrade() {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        });
    }

    fn current(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn add(&self, waker: &Arc<AtomicWaker>) {
        let mut watchers = self.lock();
        watchers.retain(|weak| weak.strong_count() > 0);
        watchers.push(Arc::downgrade(waker));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<AtomicWaker>>> {
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Live<T> {
    /// An async watch on this handle (feature `async`): [`LiveWatch::changed`]
    /// resolves after the value was rebuilt since the watch last looked at
    /// it. The value as it is now counts as seen.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Physics { damping: f64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("physics.damping", &0.6)?;
    /// let mut physics = store.live::<Physics>("physics")?.watch();
    ///
    /// store.set("physics.damping", &0.9)?;
    /// physics.changed().await?; // at once: rebuilt since the watch looked
    /// assert_eq!(physics.load().damping, 0.9);
    ///
    /// store.close()?;
    /// assert!(physics.changed().await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self) -> LiveWatch<T> {
        let waker = Arc::new(AtomicWaker::new());
        let versions = &self.slot.versions;
        versions.add(&waker);
        LiveWatch {
            live: self.clone(),
            seen: versions.current(),
            waker,
        }
    }
}

/// A [`Live`] handle that can await the next rebuild, like a
/// `tokio::sync::watch::Receiver` (made by [`Live::watch`]).
///
/// Each rebuild of the section (once per applied commit or batch of foreign
/// commits touching a key under the prefix, and for every handle on a full
/// reload) that produced a new value counts as a new version; a change that
/// leaves the section undecodable keeps the old value and is not one. The
/// watch remembers the last version it saw: [`LiveWatch::changed`] resolves
/// at once when the version moved since, else when it moves. Reading with
/// [`LiveWatch::load`] or [`LiveWatch::get`] marks the version seen; reading
/// through [`LiveWatch::live`] does not.
///
/// Several rebuilds before the watch looks are seen as one change (the
/// value is the newest). Each clone has its own seen version, and any
/// number of watches can wait at once; all wake. Nothing here blocks: a
/// poll is two atomic loads around the waker's registration.
///
/// # Cancel safety
/// Dropping a `changed()` future loses nothing: the version is marked seen
/// only when it resolves.
pub struct LiveWatch<T> {
    live: Live<T>,
    seen: u64,
    waker: Arc<AtomicWaker>,
}

impl<T> LiveWatch<T> {
    /// Resolves after the value was rebuilt since this watch last saw it
    /// (at once if it already was), and marks the new version seen.
    ///
    /// # Errors
    /// [`Closed`] when the store is closed or dropped and no unseen rebuild
    /// is left.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        std::future::poll_fn(|cx| self.poll_changed(cx)).await
    }

    /// The poll behind [`LiveWatch::changed`], for hand-written futures.
    ///
    /// # Errors
    /// As [`LiveWatch::changed`].
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        if let Some(ready) = self.check() {
            return Poll::Ready(ready);
        }
        self.waker.register(cx.waker());
        // A rebuild between the first check and the registration woke no
        // one: check again.
        match self.check() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn check(&mut self) -> Option<Result<(), Closed>> {
        let versions = &self.live.slot.versions;
        let current = versions.current();
        if current != self.seen {
            self.seen = current;
            return Some(Ok(()));
        }
        versions.is_closed().then_some(Err(Closed))
    }

    /// Whether the value was rebuilt since this watch last saw it.
    ///
    /// # Errors
    /// [`Closed`] when the store is gone and nothing unseen is left.
    pub fn has_changed(&self) -> Result<bool, Closed> {
        let versions = &self.live.slot.versions;
        if versions.current() != self.seen {
            Ok(true)
        } else if versions.is_closed() {
            Err(Closed)
        } else {
            Ok(false)
        }
    }

    /// The current value, marking it seen (`borrow_and_update`).
    pub fn load(&mut self) -> Guard<Arc<T>> {
        // Version first: a rebuild in between makes the next `changed`
        // resolve at once (a spurious wake), never a missed one.
        self.seen = self.live.slot.versions.current();
        self.live.load()
    }

    /// The current value as an owned `Arc`, marking it seen.
    pub fn get(&mut self) -> Arc<T> {
        self.seen = self.live.slot.versions.current();
        self.live.get()
    }

    /// Marks the current version seen without reading it.
    pub fn mark_seen(&mut self) {
        self.seen = self.live.slot.versions.current();
    }

    /// The handle underneath: reading through it does not mark anything
    /// seen (`borrow`).
    pub fn live(&self) -> &Live<T> {
        &self.live
    }
}

impl<T> Clone for LiveWatch<T> {
    /// Another watch with the same seen version and its own waker.
    fn clone(&self) -> Self {
        let waker = Arc::new(AtomicWaker::new());
        self.live.slot.versions.add(&waker);
        LiveWatch {
            live: self.live.clone(),
            seen: self.seen,
            waker,
        }
    }
}

impl<T> fmt::Debug for LiveWatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveWatch")
            .field("prefix", &self.live.prefix())
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}
