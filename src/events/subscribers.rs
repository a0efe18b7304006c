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
//!
//! An async subscriber (feature `async`) also has a waker, woken after a
//! batch queued something for it and when the subscriber is dropped (the
//! store closed: the stream then sees the channel disconnected). Sync
//! subscribers have none, and publishing to them does exactly what it did
//! before.

use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::events::{Change, ChangeSet, Event, group_by_commit};
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
    /// Gets one [`Event::Commit`] per commit instead of one event per key.
    commits: bool,
    /// The async receiver's waker. Declared after `sender`, so that when a
    /// subscriber is dropped its sender is gone before the waker fires.
    #[cfg(feature = "async")]
    waker: Option<crate::async_api::SubscriberWaker>,
}

impl Subscriber {
    /// The event as this subscriber gets it (a commit narrowed to its
    /// prefix), or `None`.
    fn wanted(&self, event: &Event) -> Option<Event> {
        if event.seq() <= self.floor {
            return None;
        }
        if let Event::Commit(set) = event {
            let changes: Vec<Change> = set
                .changes
                .iter()
                .filter(|change| is_under(&self.prefix, &change.key))
                .cloned()
                .collect();
            if changes.is_empty() {
                return None;
            }
            return Some(Event::Commit(ChangeSet {
                seqs: set.seqs,
                source: set.source,
                changes,
            }));
        }
        self.wants(event).then(|| event.clone())
    }

    fn wants(&self, event: &Event) -> bool {
        match event {
            Event::Change(change) => is_under(&self.prefix, &change.key),
            Event::Commit(_) => true,
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
        let mut queued = false;
        for event in events.iter().filter_map(|event| self.wanted(event)) {
            if self.lagging || dropped > 0 || self.sender.len() >= self.limit {
                dropped += 1;
                last_dropped = event.seq();
                continue;
            }
            match self.sender.try_send(event) {
                Ok(()) => queued = true,
                Err(TrySendError::Full(event)) => {
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
                Ok(()) => {
                    self.lagging = true;
                    queued = true;
                }
                // Cannot happen (the spare slot), but a lost notice would be
                // silent: keep trying at the next batch.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return None,
            }
        }
        self.wake_if(queued);
        Some(dropped)
    }

    /// Wakes the async receiver, if any, when the batch queued something.
    #[cfg(feature = "async")]
    fn wake_if(&self, queued: bool) {
        if let (true, Some(waker)) = (queued, &self.waker) {
            waker.wake();
        }
    }

    /// Without the `async` feature no subscriber has a waker.
    #[cfg(not(feature = "async"))]
    #[inline(always)]
    fn wake_if(&self, _queued: bool) {}
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

    /// Adds a subscriber that gets one [`Event::Commit`] per commit.
    pub(crate) fn add_commits(&self, prefix: &str) -> Receiver<Event> {
        self.insert(prefix, Vec::new(), i64::MIN, true)
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
        self.insert(prefix, backlog, floor, false)
    }

    /// Adds an async subscriber (per key, or per commit with `commits`)
    /// whose `waker` is woken after each batch that queued something for it.
    #[cfg(feature = "async")]
    pub(crate) fn add_waking(
        &self,
        prefix: &str,
        commits: bool,
        waker: crate::async_api::SubscriberWaker,
    ) -> Receiver<Event> {
        let (mut subscriber, receiver) = self.build(prefix, Vec::new(), i64::MIN, commits);
        subscriber.waker = Some(waker);
        self.lock().push(subscriber);
        receiver
    }

    fn insert(
        &self,
        prefix: &str,
        backlog: Vec<Event>,
        floor: i64,
        commits: bool,
    ) -> Receiver<Event> {
        let (subscriber, receiver) = self.build(prefix, backlog, floor, commits);
        self.lock().push(subscriber);
        receiver
    }

    fn build(
        &self,
        prefix: &str,
        backlog: Vec<Event>,
        floor: i64,
        commits: bool,
    ) -> (Subscriber, Receiver<Event>) {
        let limit = self.capacity + backlog.len();
        let (sender, receiver) = crossbeam_channel::bounded(limit + 1);
        for event in backlog {
            // Cannot fail: the channel has room for the whole backlog and
            // the receiver is still here.
            let _ = sender.try_send(event);
        }
        let subscriber = Subscriber {
            prefix: prefix.to_owned(),
            sender,
            limit,
            floor,
            lagging: false,
            commits,
            #[cfg(feature = "async")]
            waker: None,
        };
        (subscriber, receiver)
    }

    /// Delivers `events` in order to every interested subscriber; returns how
    /// many deliveries were dropped because a subscriber was full.
    pub(crate) fn publish(&self, events: &[Event]) -> u64 {
        if events.is_empty() {
            return 0;
        }
        let mut list = self.lock();
        let grouped = if list.iter().any(|subscriber| subscriber.commits) {
            group_by_commit(events)
        } else {
            Vec::new()
        };
        let mut dropped = 0;
        list.retain_mut(|subscriber| {
            let batch = if subscriber.commits { &grouped } else { events };
            match subscriber.offer_batch(batch) {
                Some(lost) => {
                    dropped += lost;
                    true
                }
                None => false,
            }
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
    use crate::events::Source;

    fn change(seq: i64, key: &str) -> Event {
        Event::Change(Change {
            seq,
            key: key.to_owned(),
            old: None,
            new: Some(std::sync::Arc::new(serde_json::json!(seq))),
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

    fn change_from(seq: i64, key: &str, source: Source) -> Event {
        let Event::Change(mut change) = change(seq, key) else {
            unreachable!()
        };
        change.source = source;
        Event::Change(change)
    }

    #[test]
    fn a_commit_subscriber_gets_each_source_run_as_one_commit_narrowed_to_its_prefix() {
        let subscribers = Subscribers::new(8);
        let commits = subscribers.add_commits("a");
        let keys = subscribers.add("a");
        subscribers.publish(&[
            change_from(1, "a.x", Source::External),
            change_from(2, "b.y", Source::External),
            change_from(3, "a.z", Source::External),
            change_from(4, "a.x", Source::Local),
            change_from(5, "a.y", Source::Local),
        ]);
        let got: Vec<Event> = commits.try_iter().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        let Event::Commit(foreign) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(foreign.seqs, (1, 3));
        assert_eq!(foreign.source, Source::External);
        let foreign_keys: Vec<&str> = foreign.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(foreign_keys, ["a.x", "a.z"]);
        let Event::Commit(local) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (local.seqs, local.source, local.changes.len()),
            ((4, 5), Source::Local, 2)
        );
        assert_eq!(
            keys.try_iter().count(),
            4,
            "per-key subscribers are unchanged"
        );
    }

    #[test]
    fn a_lagging_commit_subscriber_loses_whole_commits_only() {
        let subscribers = Subscribers::new(1);
        let commits = subscribers.add_commits("");
        subscribers.publish(&[
            change_from(1, "k", Source::Local),
            change_from(2, "j", Source::Local),
        ]);
        subscribers.publish(&[change_from(3, "k", Source::Local)]);
        let Event::Commit(first) = commits.recv().unwrap() else {
            panic!()
        };
        assert_eq!(first.changes.len(), 2, "never split");
        assert_eq!(commits.recv().unwrap(), Event::Lagged { missed: 1, seq: 3 });
    }

    #[test]
    fn dropped_receivers_are_removed() {
        let subscribers = Subscribers::new(2);
        drop(subscribers.add(""));
        subscribers.publish(&[change(1, "k")]);
        assert_eq!(subscribers.len(), 0);
    }
}
