//! A subscription as a `futures_core::Stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, TryRecvError};
use futures_core::Stream;
use futures_core::stream::FusedStream;

use crate::events::Event;

/// The store's side of an [`EventStream`]: woken after a publish queued
/// something for it, and once more when the subscriber is dropped (the
/// store closed), after its sender is gone.
pub(crate) struct SubscriberWaker(Arc<AtomicWaker>);

impl SubscriberWaker {
    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

impl Drop for SubscriberWaker {
    fn drop(&mut self) {
        self.0.wake();
    }
}

/// A subscription as an async [`Stream`] of [`Event`]s, for any executor.
///
/// The same subscription as [`Store::subscribe`](crate::Store::subscribe)
/// (or [`Store::subscribe_commits`](crate::Store::subscribe_commits)): the
/// same events, in the same order, with the same bounded backlog and lag
/// policy ([`Event::Lagged`], then resynchronize from
/// [`Store::snapshot`](crate::Store::snapshot)). The stream ends (`None`)
/// once the store is closed or dropped and every queued event was read.
///
/// Polling never blocks: it is a `try_recv`, and when nothing is queued the
/// task's waker is registered before a second `try_recv`, so an event
/// published in between is not missed. The store wakes the task after a
/// commit queued something for this stream.
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use livesettings::{Event, Stream};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = livesettings::Store::open(dir.path().join("s.db"))?;
/// let mut events = store.subscribe_async("physics")?;
/// store.set("physics.damping", &0.9)?;
/// // What `futures::StreamExt::next` does, written out.
/// let next = poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
/// let Some(Event::Change(change)) = next else { panic!("{next:?}") };
/// assert_eq!(change.key, "physics.damping");
///
/// store.close()?;
/// assert_eq!(poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await, None);
/// # Ok(())
/// # }
/// /// ```
pub struct EventStream {
    receiver: Receiver<Event>,
    waker: Arc<AtomicWaker>,
    ended: bool,
}

impl EventStream {
    /// A stream and the waker its subscriber keeps in the store.
    pub(crate) fn new(register: impl FnOnce(SubscriberWaker) -> Receiver<Event>) -> EventStream {
        let waker = Arc::new(AtomicWaker::new());
        let receiver = register(SubscriberWaker(Arc::clone(&waker)));
        EventStream {
            receiver,
            waker,
            ended: false,
        }
    }

    /// The next queued event, without waiting: `Ok(None)` when nothing is
    /// queued.
    ///
    /// # Errors
    /// [`Closed`](crate::Closed) once the store is gone and everything
    /// queued was read.
    pub fn try_next(&mut self) -> Result<Option<Event>, crate::Closed> {
        match self.receiver.try_recv() {
            Ok(event) => Ok(Some(event)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.ended = true;
                Err(crate::Closed)
            }
        }
    }

    /// How many events are queued.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.try_next() {
            Ok(Some(event)) => return Poll::Ready(Some(event)),
            Ok(None) => {}
            Err(crate::Closed) => return Poll::Ready(None),
        }
        self.waker.register(cx.waker());
        // A publish between the first look and the registration woke no
        // one: look again.
        match self.try_next() {
            Ok(Some(event)) => Poll::Ready(Some(event)),
            Ok(None) => Poll::Pending,
            Err(crate::Closed) => Poll::Ready(None),
        }
    }
}

impl FusedStream for EventStream {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.receiver.len())
            .field("ended", &self.ended)
            .finish()
    }
}
