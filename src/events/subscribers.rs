//! Per-prefix subscriber channels.
//!
//! Policy: each subscriber has a bounded channel and one slot more, kept for
//! the lag notice. Publishing uses `try_send` and never blocks. When a
//! subscriber's channel is full, the rest of that batch is dropped (counted)
//! and [`Event::Lagged`] goes into the spare slot at once, so the subscriber
//! learns it lagged without waiting for another commit; it resynchronizes
//! from [`Store::snapshot`](crate::Store::snapshot). Until it has read
//! everything queued (the notice included), later events are dropped too:
//! the snapshot it takes after reading the notice covers them. A dropped
//! receiver is removed at the next publish.

use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::events::Event;
use crate::key::is_under;

struct Subscriber {
    prefix: String,
    sender: Sender<Event>,
    /// How many events the channel holds at most (the notice's slot aside).
    limit: usize,
    /// Events at or below this seq are not delivered (a resumed
    /// subscription that already has them).
    floor: i64,
    /// A lag notice is queued and not read yet.
    lagging: bool,
}

impl Subscriber {
    fn wants(&self, event: &Event) -> bool {
        if event.seq() <= self.floor {
            return false;
        }
        match event {
            Event::Change(change) => is_under(&self.prefix, &change.key),
            Event::Rejected(rejection) => {
                rejection.keys.iter().any(|key| is_under(&self.prefix, key))
            }
            Event::Reloaded { .. } | Event::Lagged { .. } => true,
        }
    }

    /// Delivers a batch; returns `None` when the receiver is gone, else how
    /// many events were dropped.
    fn offer_batch(&mut self, events: &[Event]) -> Option<u64> {
        if self.lagging && self.sender.is_empty() {
            self.lagging = false;
        }
        let mut dropped = 0u64;
        let mut last_dropped = 0;
        for event in events.iter().filter(|event| self.wants(event)) {
            if self.lagging || dropped > 0 || self.sender.len() >= self.limit {
                dropped += 1;
                last_dropped = event.seq();
                continue;
            }
            match self.sender.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    last_dropped = event.seq();
                }
                Err(TrySendError::Disconnected(_)) => return None,
            }
        }
        if dropped > 0 && !self.lagging {
            let notice = Event::Lagged {
                missed: dropped,
                seq: last_dropped,
            };
            match self.sender.try_send(notice) {
                Ok(()) => self.lagging = true,
                // Cannot happen (the spare slot), but a lost notice would be
                // silent: keep trying at the next batch.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return None,
            }
        }
        Some(dropped)
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
        self.add_after(prefix, Vec::new(), i64::MIN)
    }

    /// Adds a subscriber whose channel first holds `backlog` (a replay),
    /// with room for it on top of the usual capacity, and that gets no
    /// event at or below `floor`.
    pub(crate) fn add_after(
        &self,
        prefix: &str,
        backlog: Vec<Event>,
        floor: i64,
    ) -> Receiver<Event> {
        let limit = self.capacity + backlog.len();
        let (sender, receiver) = crossbeam_channel::bounded(limit + 1);
        for event in backlog {
            // Cannot fail: the channel has room for the whole backlog and
            // the receiver is still here.
            let _ = sender.try_send(event);
        }
        self.lock().push(Subscriber {
            prefix: prefix.to_owned(),
            sender,
            limit,
            floor,
            lagging: false,
        });
        receiver
    }

    /// Delivers `events` in order to every interested subscriber; returns how
    /// many deliveries were dropped because a subscriber was full.
    pub(crate) fn publish(&self, events: &[Event]) -> u64 {
        if events.is_empty() {
            return 0;
        }
        let mut list = self.lock();
        let mut dropped = 0;
        list.retain_mut(|subscriber| match subscriber.offer_batch(events) {
            Some(lost) => {
                dropped += lost;
                true
            }
            None => false,
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
    fn a_full_subscriber_is_told_it_lagged_at_once_and_never_blocks() {
        let subscribers = Subscribers::new(2);
        let slow = subscribers.add("");
        let events: Vec<Event> = (1..=10).map(|seq| change(seq, "k")).collect();
        assert_eq!(subscribers.publish(&events), 8);
        let queued: Vec<Event> = slow.try_iter().collect();
        assert_eq!(queued.len(), 3, "{queued:?}");
        assert_eq!(queued[0].seq(), 1);
        assert_eq!(queued[1].seq(), 2);
        assert_eq!(queued[2], Event::Lagged { missed: 8, seq: 10 });
        // Read everything: delivery resumes with the next commit.
        subscribers.publish(&[change(11, "k")]);
        assert_eq!(slow.try_iter().map(|e| e.seq()).collect::<Vec<_>>(), [11]);
    }

    #[test]
    fn a_lagging_subscriber_gets_nothing_until_it_read_the_notice() {
        let subscribers = Subscribers::new(1);
        let slow = subscribers.add("");
        subscribers.publish(&[change(1, "k"), change(2, "k")]);
        subscribers.publish(&[change(3, "k")]);
        assert_eq!(slow.recv().unwrap().seq(), 1);
        subscribers.publish(&[change(4, "k")]);
        assert_eq!(slow.recv().unwrap(), Event::Lagged { missed: 1, seq: 2 });
        subscribers.publish(&[change(5, "k")]);
        assert_eq!(slow.try_iter().map(|e| e.seq()).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn events_at_or_below_the_floor_are_not_delivered() {
        let subscribers = Subscribers::new(8);
        let resumed = subscribers.add_after("", Vec::new(), 5);
        subscribers.publish(&[change(4, "a"), change(5, "b"), change(6, "c")]);
        assert_eq!(resumed.try_iter().map(|e| e.seq()).collect::<Vec<_>>(), [6]);
    }

    #[test]
    fn dropped_receivers_are_removed() {
        let subscribers = Subscribers::new(2);
        drop(subscribers.add(""));
        subscribers.publish(&[change(1, "k")]);
        assert_eq!(subscribers.len(), 0);
    }
}
