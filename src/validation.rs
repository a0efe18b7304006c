//! Per-section validators: typed schemas and closures that keep invalid
//! settings out of the snapshot.
//!
//! In-process writes that would leave a registered section invalid are
//! rolled back with an error. Foreign writes that leave it invalid are not
//! applied: the section keeps its last good values, a rejection is published
//! and stays pending until a later write makes the section valid again (the
//! section is then re-read from the database, so nothing the rejected write
//! left behind is missed).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::applier::Applied;
use crate::error::{Error, Result};
use crate::events::{Change, Event, Rejection, Source};
use crate::key::is_under;
use crate::shared::lock;
use crate::snapshot::Snapshot;

/// A section check: `Err(reason)` when the section is invalid.
pub(crate) type Check = Box<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

struct Section {
    prefix: String,
    check: Check,
}

/// The registered validators and the pending rejections.
#[derive(Default)]
pub(crate) struct Validators {
    sections: RwLock<Vec<Arc<Section>>>,
    pending: Mutex<BTreeMap<String, Rejection>>,
}

impl Validators {
    pub(crate) fn add(&self, prefix: &str, check: Check) {
        self.sections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(Section {
                prefix: prefix.to_owned(),
                check,
            }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    fn sections(&self) -> Vec<Arc<Section>> {
        self.sections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The foreign writes refused and not yet superseded by a valid state.
    pub(crate) fn pending(&self) -> Vec<Rejection> {
        lock(&self.pending).values().cloned().collect()
    }

    /// Checks an in-process write before it commits. `before` is the
    /// snapshot readers see, `events` the write's changes, and
    /// `read_section` reads a section inside the write's transaction, so
    /// the check sees exactly what would be committed (including foreign
    /// values a pending rejection keeps out of the snapshot).
    pub(crate) fn check_local(
        &self,
        before: &Snapshot,
        events: &[Event],
        mut read_section: impl FnMut(&str) -> Result<Vec<(Arc<str>, Arc<Value>)>>,
    ) -> Result<()> {
        for section in self.sections() {
            let Some(change) = events
                .iter()
                .filter_map(Event::as_change)
                .find(|change| is_under(&section.prefix, &change.key))
            else {
                continue;
            };
            let candidate = before.with_section(&section.prefix, read_section(&section.prefix)?);
            if let Err(reason) = (section.check)(&candidate) {
                let value = change
                    .new
                    .as_ref()
                    .map_or_else(|| "removed".to_owned(), |value| format!("value {value}"));
                return Err(Error::Rejected {
                    key: change.key.clone(),
                    reason: format!("{value}: section '{}' {reason}", section.prefix),
                });
            }
        }
        Ok(())
    }

    /// Keeps invalid sections out of a pass's result. `read_section` reads a
    /// section's current rows from the database.
    pub(crate) fn enforce(
        &self,
        current: &Snapshot,
        applied: &mut Applied,
        mut read_section: impl FnMut(&str) -> Result<Vec<(Arc<str>, Arc<Value>)>>,
    ) -> Result<()> {
        let sections = self.sections();
        if sections.is_empty() {
            return Ok(());
        }
        let everything = applied.reload.is_some();
        let seq = applied.snapshot.seq();
        let mut working = applied.snapshot.clone();
        for section in sections {
            let prefix = section.prefix.as_str();
            let touched = everything
                || applied
                    .events
                    .iter()
                    .filter_map(Event::as_change)
                    .any(|change| is_under(prefix, &change.key));
            if !touched {
                continue;
            }
            let was_pending = lock(&self.pending).contains_key(prefix);
            if was_pending && !everything {
                working = working.with_section(prefix, read_section(prefix)?);
            }
            match (section.check)(&working) {
                Ok(()) => {
                    if lock(&self.pending).remove(prefix).is_some() {
                        log::info!("section '{prefix}' is valid again");
                    }
                }
                Err(reason) => {
                    let refused = changed_keys(current, &working, prefix);
                    working = working.with_section(prefix, current.section_pairs(prefix));
                    log::warn!("rejected a foreign write to section '{prefix}': {reason}");
                    let rejection = Rejection {
                        seq,
                        keys: refused,
                        reason: format!("section '{prefix}' {reason}"),
                    };
                    lock(&self.pending).insert(prefix.to_owned(), rejection.clone());
                    applied.events.push(Event::Rejected(rejection));
                    applied.rejected += 1;
                }
            }
            // The section's events are now the difference between what
            // readers saw and what they will see, each keeping its source.
            let mut sources = HashMap::new();
            applied.events.retain(|event| match event {
                Event::Change(change) if is_under(prefix, &change.key) => {
                    sources.insert(change.key.clone(), change.source);
                    false
                }
                _ => true,
            });
            let diff = diff_section(current, &working, prefix, seq).map(|mut change| {
                if let Some(source) = sources.get(&change.key) {
                    change.source = *source;
                }
                Event::Change(change)
            });
            applied.events.extend(diff);
        }
        applied.snapshot = working;
        Ok(())
    }
}

fn changed_keys(before: &Snapshot, after: &Snapshot, prefix: &str) -> Vec<String> {
    diff_section(before, after, prefix, 0)
        .map(|change| change.key)
        .collect()
}

fn diff_section<'a>(
    before: &'a Snapshot,
    after: &'a Snapshot,
    prefix: &'a str,
    seq: i64,
) -> impl Iterator<Item = Change> + 'a {
    let removed = before
        .entries(prefix)
        .filter(|(key, _)| !after.contains(key))
        .map(|(key, _)| key);
    let mut keys: Vec<&str> = after.keys(prefix).chain(removed).collect();
    keys.sort_unstable();
    keys.into_iter().filter_map(move |key| {
        let old = before.get_json(key);
        let new = after.get_json(key);
        (old != new).then(|| Change {
            seq,
            key: key.to_owned(),
            old: old.cloned(),
            new: new.cloned(),
            source: Source::External,
        })
    })
}
