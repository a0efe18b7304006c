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
use crate::key::validate_prefix;
use crate::shared::lock;
use crate::snapshot::Snapshot;
use crate::store::Store;
use serde::de::DeserializeOwned;

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
    /// snapshot readers see, `touched` the keys of the log rows the write
    /// made, and `read_section` reads a section inside the write's
    /// transaction, so the check sees exactly what would be committed
    /// (including foreign values a pending rejection keeps out of the
    /// snapshot).
    pub(crate) fn check_local<'k>(
        &self,
        before: &Snapshot,
        touched: impl Iterator<Item = &'k str> + Clone,
        mut read_section: impl FnMut(&str) -> Result<Vec<(Arc<str>, Arc<Value>)>>,
    ) -> Result<()> {
        for section in self.sections() {
            let Some(key) = touched.clone().find(|key| is_under(&section.prefix, key)) else {
                continue;
            };
            let candidate = before.with_section(&section.prefix, read_section(&section.prefix)?);
            if let Err(reason) = run_check(&section, &candidate) {
                let value = candidate
                    .get_json(key)
                    .map_or_else(|| "removed".to_owned(), |value| format!("value {value}"));
                return Err(Error::Rejected {
                    key: key.to_owned(),
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
            let was_pending = lock(&self.pending).contains_key(prefix);
            // A pass touches a section when one of its log rows falls under
            // it, even if the row changed nothing in the snapshot (restoring
            // the last good value must clear a pending rejection).
            let touched = everything || applied.touched.iter().any(|key| is_under(prefix, key));
            if !touched {
                continue;
            }
            if was_pending && !everything {
                working = working.with_section(prefix, read_section(prefix)?);
            }
            match run_check(&section, &working) {
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
            // The section's events become the difference between what
            // readers saw and what they will see. A key whose pass event
            // still describes that difference keeps the event (its own seq
            // and source); a key changed only by the re-read gets one at the
            // pass's seq.
            let mut originals: HashMap<String, Change> = HashMap::new();
            applied.events.retain(|event| match event {
                Event::Change(change) if is_under(prefix, &change.key) => {
                    originals.insert(change.key.clone(), change.clone());
                    false
                }
                _ => true,
            });
            let diff = diff_section(current, &working, prefix, seq).map(|change| {
                match originals.remove(&change.key) {
                    Some(original) if original.new == change.new => Event::Change(original),
                    Some(original) => Event::Change(Change {
                        source: original.source,
                        ..change
                    }),
                    None => Event::Change(change),
                }
            });
            applied.events.extend(diff);
        }
        // Keep publishing in seq order (stable: a reload's `Reloaded` event
        // stays ahead of its changes, which share its seq).
        applied.events.sort_by_key(Event::seq);
        applied.snapshot = working;
        Ok(())
    }
}

/// Runs a user's check; a panic is a refusal, not the end of the watcher.
fn run_check(section: &Section, snapshot: &Snapshot) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (section.check)(snapshot)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(format!("validator panicked: {message}"))
        })
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

impl Store {
    /// Registers a typed schema and a validator for the section under
    /// `prefix`: from now on a write that leaves the section undecodable as
    /// `T`, or that `validate` refuses, is not applied (see the README).
    ///
    /// # Errors
    /// [`Error::Rejected`] when the section is invalid already (nothing is
    /// registered then).
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Range { min: f64, max: f64 }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.merge_json(&serde_json::json!({"range": {"min": 0.0, "max": 1.0}}))?;
    /// store.validate_section::<Range>("range", |range| {
    ///     if range.min <= range.max { Ok(()) } else { Err("needs min <= max".into()) }
    /// })?;
    /// assert!(store.set("range.min", &5.0).is_err());
    /// assert_eq!(store.get::<f64>("range.min")?, Some(0.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn validate_section<T: DeserializeOwned + 'static>(
        &self,
        prefix: &str,
        validate: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<()> {
        validate_prefix(prefix)?;
        let owned = prefix.to_owned();
        let check: Check = Box::new(move |snapshot: &Snapshot| {
            let section = snapshot
                .section::<T>(&owned)
                .map_err(|error| format!("does not fit its schema: {error}"))?;
            validate(&section).map_err(|reason| format!("is invalid: {reason}"))
        });
        // Check and register with writes held, so none slips in between.
        self.shared.with_writes_held(|| {
            if let Err(reason) = check(&self.shared.snapshot.load()) {
                return Err(Error::Rejected {
                    key: prefix.to_owned(),
                    reason: format!("the stored section {reason}"),
                });
            }
            self.shared.validators.add(prefix, check);
            Ok(())
        })
    }

    /// Registers a validator over the raw JSON of the section under
    /// `prefix` (the nested object, or the value when `prefix` is a key).
    ///
    /// # Errors
    /// As [`Store::validate_section`].
    pub fn validate_json<F>(&self, prefix: &str, validate: F) -> Result<()>
    where
        F: Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    {
        self.validate_section::<Value>(prefix, validate)
    }

    /// Registers declarative [`Rules`](crate::Rules): each rule validates
    /// the keys it matches, as [`Store::validate_section`] does for a section.
    ///
    /// # Errors
    /// [`Error::Rejected`] naming the first violation when the stored
    /// settings break a rule already (nothing is registered then).
    pub fn validate_rules(&self, rules: &crate::Rules) -> Result<()> {
        self.shared.with_writes_held(|| {
            if let Some(violation) = rules.check(&self.shared.snapshot.load()).first() {
                return Err(Error::Rejected {
                    key: violation.key.clone(),
                    reason: format!("stored value {} is {}", violation.value, violation.reason),
                });
            }
            for rule in &rules.rules {
                let rule = rule.clone();
                let prefix = rule.fixed_prefix();
                let check: Check =
                    Box::new(
                        move |snapshot: &Snapshot| match rule.violations(snapshot).first() {
                            None => Ok(()),
                            Some(violation) => Err(format!(
                                "has '{}' = {}: {}",
                                violation.key, violation.value, violation.reason
                            )),
                        },
                    );
                self.shared.validators.add(&prefix, check);
            }
            Ok(())
        })
    }

    /// The foreign writes currently refused by a validator (each cleared
    /// when a later write makes its section valid).
    pub fn rejected(&self) -> Vec<crate::Rejection> {
        self.shared.validators.pending()
    }
}
