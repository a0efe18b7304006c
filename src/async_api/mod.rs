//! Async adapters (feature `async`): thin layers over the same subscription
//! channels and live handles the sync API uses, for any executor. Nothing
//! here spawns a thread or a task, and no poll ever blocks: each one is a
//! `try_recv` or an atomic load, with a waker registered in between two
//! checks, so that a wake-up between the check and the registration is
//! never lost.
//!
//! - [`EventStream`] (from [`Store::subscribe_async`](crate::Store::subscribe_async)
//!   and [`Store::subscribe_commits_async`](crate::Store::subscribe_commits_async)):
//!   a [`Stream`](futures_core::Stream) of [`Event`](crate::Event)s, ending
//!   when the store is closed or dropped.
//! - [`LiveWatch`] (from [`Live::watch`](crate::Live::watch)): `changed().await`
//!   on a typed section, with `tokio::sync::watch` semantics.

mod changed;
mod store;
mod stream;

pub(crate) use changed::Versions;
pub use changed::{Closed, LiveWatch};
pub use stream::EventStream;
pub(crate) use stream::SubscriberWaker;
