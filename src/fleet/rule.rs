//! The conflict rule: what to do with a local change before pushing it.
//!
//! Default ([`Mode::FleetWins`]): a push is conditional on the revision
//! this host last knew for the key. When another host changed the key
//! since, the bucket refuses the push; the fleet's value wins, is put back
//! locally as a new logged change (origin `nats:<revision>:conflict`), and
//! the lost local change is reported. A local change that the fleet had
//! already overwritten on this host before it could be pushed (the bridge
//! applied a newer entry for the key after the local commit, e.g. while
//! catching up) is not pushed either, and is reported the same way.
//!
//! [`Mode::LastWriterWins`]: pushes are unconditional and the bucket's
//! order alone decides: the change with the higher revision wins on every
//! host. A local change the fleet overwrote on this host before it was
//! pushed is still pushed (it reaches the bucket last, so it wins), and put
//! back locally once acknowledged.

use super::outbox::Pending;
use super::state::Known;

/// How concurrent changes of one key are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A push is conditional on the last revision seen; on a conflict the
    /// fleet's value wins and the local change is undone and reported.
    #[default]
    FleetWins,
    /// Unconditional pushes: the bucket's revision order alone decides.
    LastWriterWins,
}

/// What to do with one pending local change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Push it: `Some(revision)` conditionally, `None` unconditionally.
    Push(Option<u64>),
    /// The fleet already overwrote it on this host (at `Known::seq`): report
    /// it, push nothing.
    Superseded,
    /// The fleet already holds this value: nothing to push.
    Unchanged,
}

/// The decision for `pending`, given what this host knew of the key.
pub(crate) fn decide(mode: Mode, pending: &Pending, known: Option<&Known>) -> Decision {
    let fleet_value = known.and_then(|known| known.value.as_deref());
    let same = match known {
        Some(_) => fleet_value == pending.value.as_deref(),
        // A delete of a key the fleet never had.
        None => pending.value.is_none(),
    };
    if same {
        return Decision::Unchanged;
    }
    let overwritten = known.is_some_and(|known| known.seq > pending.seq);
    match mode {
        Mode::FleetWins if overwritten => Decision::Superseded,
        Mode::FleetWins => Decision::Push(Some(known.map_or(0, |known| known.revision))),
        Mode::LastWriterWins => Decision::Push(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seq: i64, value: Option<&str>) -> Pending {
        Pending {
            key: "a.b".to_owned(),
            seq,
            value: value.map(str::to_owned),
        }
    }

    fn known(revision: u64, seq: i64, value: Option<&str>) -> Known {
        Known {
            revision,
            seq,
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn a_push_is_conditional_on_the_last_revision_seen_and_a_new_key_on_none() {
        let seen = known(7, 10, Some("1"));
        assert_eq!(
            decide(Mode::FleetWins, &pending(12, Some("2")), Some(&seen)),
            Decision::Push(Some(7))
        );
        assert_eq!(
            decide(Mode::FleetWins, &pending(12, Some("2")), None),
            Decision::Push(Some(0))
        );
        assert_eq!(
            decide(Mode::LastWriterWins, &pending(12, Some("2")), Some(&seen)),
            Decision::Push(None)
        );
    }

    #[test]
    fn a_change_the_fleet_overwrote_before_its_push_loses_by_default_and_wins_with_lww() {
        let seen = known(7, 15, Some("1"));
        assert_eq!(
            decide(Mode::FleetWins, &pending(12, Some("2")), Some(&seen)),
            Decision::Superseded
        );
        assert_eq!(
            decide(Mode::LastWriterWins, &pending(12, Some("2")), Some(&seen)),
            Decision::Push(None)
        );
    }

    #[test]
    fn what_the_fleet_already_holds_is_not_pushed() {
        let seen = known(7, 15, Some("1"));
        assert_eq!(
            decide(Mode::FleetWins, &pending(20, Some("1")), Some(&seen)),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Mode::FleetWins, &pending(20, None), None),
            Decision::Unchanged
        );
        let deleted = known(9, 15, None);
        assert_eq!(
            decide(Mode::FleetWins, &pending(20, None), Some(&deleted)),
            Decision::Unchanged
        );
    }
}
