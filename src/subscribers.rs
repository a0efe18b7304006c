//! Per-prefix subscriber channels.
//!
//! Policy: each subscriber has a bounded channel. Publishing uses `try_send`
//! and never blocks; when a subscriber's channel is full its events are
//! dropped and counted, and the next event that fits is preceded by an
//! [`Event::Lagged`] telling it how many it missed, so it can resynchronize
//! from [`Store::snapshot`](crate::Store::snapshot). A dropped receiver is
//! removed at the next publish.

use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::events::Event;
use crate::key::is_under;

struct Subscriber {
    prefix: String,
    sender: Sender<Event>,
    missed: u64,
    last_missed_seq: i64,
}

impl Subscriber {
    fn wants(&self, event: &Event) -> bool {
        match event {
            Event::Change(change) => is_under(&self.prefix, &change.key),
            Event::Rejected(rejection) => {
                rejection.keys.iter().any(|key| is_under(&self.prefix, key))
            }
            Event::Reloaded { .. } | Event::Lagged { .. } => true,
        }
    }

    /// Sends one event. Returns `None` when the receiver is gone, else how
    /// many events were dropped (0 or 1).
    fn offer(&mut self, event: &Event) -> Option<u64> {
        if self.missed > 0 {
            let lagged = Event::Lagged {
                missed: self.missed,
                seq: self.last_missed_seq,
            };
            match self.sender.try_send(lagged) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => return Some(self.drop_event(event)),
                Err(TrySendError::Disconnected(_)) => return None,
            }
        }
        match self.sender.try_send(event.clone()) {
            Ok(()) => Some(0),
            Err(TrySendError::Full(_)) => Some(self.drop_event(event)),
            Err(TrySendError::Disconnected(_)) => None,
        }
    }

    fn drop_event(&mut self, event: &Event) -> u64 {
        self.missed += 1;
        self.last_missed_seq = event.seq();
        1
    }
}

/// The registry of subscribers.
pub(crate) struct Subscribers {
    list: Mutex<Vec<Subscriber>>,
    capacity: usize,
}

impl Subscribers {
    pub(crate) fn new(capacity: usize) -> Self {
        Subscribers {
            list: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// Adds a subscriber for keys at or below `prefix`.
    pub(crate) fn add(&self, prefix: &str) -> Receiver<Event> {
        self.add_after(prefix, Vec::new())
    }

    /// Adds a subscriber whose channel first holds `backlog` (a replay),
    /// with room for it on top of the usual capacity.
    pub(crate) fn add_after(&self, prefix: &str, backlog: Vec<Event>) -> Receiver<Event> {
        let (sender, receiver) = crossbeam_channel::bounded(self.capacity + backlog.len());
        for event in backlog {
            // Cannot fail: the channel has room for the whole backlog and
            // the receiver is still here.
            let _ = sender.try_send(event);
        }
        self.lock().push(Subscriber {
            prefix: prefix.to_owned(),
            sender,
            missed: 0,
            last_missed_seq: 0,
        });
        receiver
    }

    /// Delivers `events` in order to every interested subscriber; returns how
    /// many deliveries were dropped because a subscriber was full.
    pub(crate) fn publish(&self, events: &[Event]) -> u64 {
        let mut list = self.lock();
        let mut dropped = 0;
        list.retain_mut(|subscriber| {
            for event in events {
                if subscriber.wants(event) {
                    match subscriber.offer(event) {
                        Some(lost) => dropped += lost,
                        None => return false,
                    }
                }
            }
            true
        });
        dropped
    }

    /// How many subscribers are registered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Change, Source};

    fn change(seq: i64, key: &str) -> Event {
        Event::Change(Change {
            seq,
            key: key.to_owned(),
            old: None,
            new: Some(serde_json::json!(seq)),
            source: Source::Local,
        })
    }

    #[test]
    fn prefix_filtering_and_order() {
        let subscribers = Subscribers::new(16);
        let physics = subscribers.add("a.physics");
        let all = subscribers.add("");
        subscribers.publish(&[
            change(1, "a.physics.damping"),
            change(2, "a.render"),
            change(3, "a.physics"),
        ]);
        let seqs: Vec<i64> = physics.try_iter().map(|e| e.seq()).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(all.try_iter().count(), 3);
    }

    #[test]
    fn a_full_subscriber_is_told_it_lagged_and_never_blocks() {
        let subscribers = Subscribers::new(2);
        let slow = subscribers.add("");
        let events: Vec<Event> = (1..=10).map(|seq| change(seq, "k")).collect();
        assert_eq!(subscribers.publish(&events), 8);
        assert_eq!(slow.try_iter().map(|e| e.seq()).collect::<Vec<_>>(), [1, 2]);
        subscribers.publish(&[change(11, "k")]);
        let next: Vec<Event> = slow.try_iter().collect();
        assert_eq!(next[0], Event::Lagged { missed: 8, seq: 10 });
        assert_eq!(next[1].seq(), 11);
    }

    #[test]
    fn dropped_receivers_are_removed() {
        let subscribers = Subscribers::new(2);
        drop(subscribers.add(""));
        subscribers.publish(&[change(1, "k")]);
        assert_eq!(subscribers.len(), 0);
    }
}
