//! The store's async subscriptions.

use crate::async_api::EventStream;
use crate::error::Result;
use crate::key::validate_prefix;
use crate::store::Store;

impl Store {
    /// [`Store::subscribe`] as an async [`Stream`](futures_core::Stream)
    /// (feature `async`): one [`Event::Change`](crate::Event::Change) per
    /// changed key at or below `prefix`, the same lag policy, and the end
    /// of the stream when the store is closed or dropped. See
    /// [`EventStream`].
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a malformed prefix.
    pub fn subscribe_async(&self, prefix: &str) -> Result<EventStream> {
        validate_prefix(prefix)?;
        let subscribers = &self.core.subscribers;
        Ok(EventStream::new(|waker| {
            subscribers.add_waking(prefix, false, waker)
        }))
    }

    /// [`Store::subscribe_commits`] as an async
    /// [`Stream`](futures_core::Stream) (feature `async`): one
    /// [`Event::Commit`](crate::Event::Commit) per local commit and per
    /// batch of foreign commits, never split. See [`EventStream`].
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a malformed prefix.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use livesettings::{Event, Stream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// let mut commits = store.subscribe_commits_async("range")?;
    /// store.merge(&serde_json::json!({"range": {"min": 1, "max": 9}}))?;
    /// let next = poll_fn(|cx| Pin::new(&mut commits).poll_next(cx)).await;
    /// let Some(Event::Commit(commit)) = next else { panic!("{next:?}") };
    /// assert_eq!(commit.changes.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe_commits_async(&self, prefix: &str) -> Result<EventStream> {
        validate_prefix(prefix)?;
        let subscribers = &self.core.subscribers;
        Ok(EventStream::new(|waker| {
            subscribers.add_waking(prefix, true, waker)
        }))
    }
}
