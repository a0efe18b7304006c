//! Validators: per-section checks that keep invalid settings out of the
//! snapshot, judged inside the transaction of the rows they judge.
//!
//! The invariant: the snapshot equals the database except inside the
//! section of a validator with a pending rejection, where it keeps the last
//! good values. A pass that touches such a section re-reads it from the
//! database in the pass's own transaction, so the candidate is exactly what
//! the database holds at the pass's position. Rejections belong to a
//! validator, not to a prefix: two validators on one prefix each keep their
//! own, and a section enters the snapshot only when every validator whose
//! section covers a change accepts the result.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rusqlite::Connection;
use serde_json::Value;
use std::sync::Arc;

use crate::layers::Layers;

use crate::db::change_log::{read_key, read_section};
use crate::engine::pass::Pass;
use crate::error::{Error, Result};
use crate::events::{Change, Event, Rejection, Source};
use crate::key::is_under;
use crate::secrets::SharedSecrets;
use crate::snapshot::Snapshot;

/// A section check: `Err(reason)` when the section is invalid.
pub(crate) type Check = Box<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

/// A check of one key's value, for validators that judge keys one by one
/// (rules): `Some(reason)` when the value is refused. With it, a refusal
/// puts back only the refused keys, not the whole section.
pub(crate) type KeyCheck = Box<dyn Fn(&str, &Value) -> Option<String> + Send + Sync>;

/// A validator to register.
pub(crate) struct Registration {
    pub(crate) prefix: String,
    pub(crate) check: Check,
    pub(crate) per_key: Option<KeyCheck>,
}

struct Validator {
    prefix: String,
    check: Check,
    per_key: Option<KeyCheck>,
    /// The foreign write this validator refused, until a later state of its
    /// section is valid.
    pending: Option<Rejection>,
}

/// The registered validators, owned by the engine (so registering one
/// cannot race a pass).
#[derive(Default)]
pub(crate) struct Validators {
    list: Vec<Validator>,
    /// The store's layers: a section check judges the section as readers
    /// would see it (defaults filling what the database lacks, overrides on
    /// top), so a typed validator accepts a section completed by defaults.
    layers: Arc<Layers>,
}

fn overlaps(a: &str, b: &str) -> bool {
    is_under(a, b) || is_under(b, a)
}

impl Validators {
    /// No validators yet, judging through `layers`.
    pub(crate) fn new(layers: Arc<Layers>) -> Validators {
        Validators {
            list: Vec::new(),
            layers,
        }
    }

    /// Registers a validator, with the refusal its registration found
    /// (see `engine/fallback.rs`).
    pub(crate) fn add(&mut self, registration: Registration, pending: Option<Rejection>) {
        self.list.push(Validator {
            prefix: registration.prefix,
            check: registration.check,
            per_key: registration.per_key,
            pending,
        });
    }

    /// The pending rejections, one per refusing validator.
    pub(crate) fn pending(&self) -> Vec<Rejection> {
        self.list
            .iter()
            .filter_map(|validator| validator.pending.clone())
            .collect()
    }

    /// Checks the keys this store's transaction wrote: every validator whose
    /// section holds one must accept the section as the transaction would
    /// commit it (read inside it, so foreign values a pending rejection
    /// keeps out of the snapshot count too).
    pub(crate) fn check_local(
        &self,
        conn: &Connection,
        path: &Path,
        candidate: &Snapshot,
        local_keys: &[&str],
        secrets: &SharedSecrets,
    ) -> Result<()> {
        for validator in &self.list {
            if let Some(per_key) = &validator.per_key {
                // Judged key by key: a write is refused for its own value
                // only, never for another key's stored one.
                for key in local_keys
                    .iter()
                    .filter(|key| is_under(&validator.prefix, key))
                {
                    if let Some(value) = candidate.get_json(key) {
                        if let Some(reason) = per_key(key, value) {
                            return Err(Error::Rejected {
                                key: (*key).to_owned(),
                                reason: format!(
                                    "value {} is {reason}",
                                    secrets.display(key, value)
                                ),
                            });
                        }
                    }
                }
                continue;
            }
            let Some(key) = local_keys
                .iter()
                .find(|key| is_under(&validator.prefix, key))
            else {
                continue;
            };
            let committed = candidate.with_section(
                &validator.prefix,
                read_section(conn, path, &validator.prefix)?,
            );
            if let Err(reason) = run_check(validator, &committed, &self.layers) {
                let value = committed.get_json(key).map_or_else(
                    || "removed".to_owned(),
                    |value| format!("value {}", secrets.display(key, value)),
                );
                return Err(Error::Rejected {
                    key: (*key).to_owned(),
                    reason: format!("{value}: section '{}' {reason}", validator.prefix),
                });
            }
        }
        Ok(())
    }

    /// Keeps invalid sections out of a pass's candidate: `base` is what
    /// readers see now, `conn` the pass's transaction.
    pub(crate) fn enforce(
        &mut self,
        conn: &Connection,
        path: &Path,
        base: &Snapshot,
        pass: &mut Pass,
    ) -> Result<()> {
        if self.list.is_empty() {
            return Ok(());
        }
        let layers = Arc::clone(&self.layers);
        let everything = pass.reload.is_some();
        let mut affected: Vec<bool> = self
            .list
            .iter()
            .map(|validator| {
                everything
                    || pass
                        .touched
                        .iter()
                        .any(|(_, key)| is_under(&validator.prefix, key))
            })
            .collect();
        if !affected.iter().any(|&a| a) {
            return Ok(());
        }
        let mut working = pass.snapshot.clone();
        // Sections whose candidate no longer follows from the pass's events,
        // and single keys of per-key validators in the same case.
        let mut rewritten: Vec<String> = Vec::new();
        let mut rewritten_keys: Vec<Arc<str>> = Vec::new();
        if !everything {
            for (validator, _) in self
                .list
                .iter()
                .zip(&affected)
                .filter(|(v, a)| **a && v.pending.is_some())
            {
                let withheld = validator
                    .pending
                    .as_ref()
                    .map_or(&[][..], |pending| pending.keys.as_slice());
                if validator.per_key.is_some() && !withheld.is_empty() {
                    // A per-key validator withholds exactly its refusal's
                    // keys: the rest of its section is what the database
                    // holds, so only those are read again.
                    for key in withheld {
                        let stored = read_key(conn, path, key)?;
                        let key: Arc<str> = Arc::from(key.as_str());
                        working.put(Arc::clone(&key), stored);
                        rewritten_keys.push(key);
                    }
                    continue;
                }
                let current = read_section(conn, path, &validator.prefix)?;
                working = working.with_section(&validator.prefix, current);
                rewritten.push(validator.prefix.clone());
            }
            // A re-read can change what an overlapping validator sees.
            for (at, validator) in self.list.iter().enumerate() {
                if rewritten
                    .iter()
                    .any(|prefix| overlaps(prefix, &validator.prefix))
                    || rewritten_keys
                        .iter()
                        .any(|key| is_under(&validator.prefix, key))
                {
                    affected[at] = true;
                }
            }
        }
        // A per-key validator (rules) can only be broken by the keys that
        // changed in this pass (written, or read again above): it judges
        // those alone, O(keys touched) instead of O(section). A reload, a
        // section read again or a section validator's revert changes more,
        // and brings back the whole-section check.
        let judged = |validator: &Validator, extra: &[Arc<str>]| -> Vec<Arc<str>> {
            let mut keys: Vec<Arc<str>> = pass
                .touched
                .iter()
                .map(|(_, key)| key)
                .chain(extra)
                .filter(|key| is_under(&validator.prefix, key))
                .cloned()
                .collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        };
        let mut only_touched: Vec<Option<Vec<Arc<str>>>> = self
            .list
            .iter()
            .map(|validator| {
                let incremental = !everything
                    && validator.per_key.is_some()
                    && !rewritten
                        .iter()
                        .any(|prefix| overlaps(prefix, &validator.prefix));
                incremental.then(|| judged(validator, &rewritten_keys))
            })
            .collect();
        let before_reverts = working.clone();
        let mut verdicts: Vec<Option<String>> = vec![None; self.list.len()];
        // Why a validator had its section put back to the last good values.
        let mut reverted: Vec<Option<String>> = vec![None; self.list.len()];
        loop {
            let mut reverted_now = Vec::new();
            let mut reverted_keys: Vec<Arc<str>> = Vec::new();
            for (at, validator) in self.list.iter().enumerate() {
                if !affected[at] {
                    continue;
                }
                let only = only_touched[at].as_deref();
                verdicts[at] = match only {
                    Some(keys) => run_check(validator, &working.only(keys), &layers).err(),
                    None => run_check(validator, &working, &layers).err(),
                };
                if verdicts[at].is_none() {
                    continue;
                }
                if let Some(put_back) = put_back(validator, &working, base, only) {
                    match only {
                        Some(keys) => reverted_keys.extend(
                            keys.iter()
                                .filter(|key| put_back.get_json(key) != working.get_json(key))
                                .cloned(),
                        ),
                        None => reverted_now.push(validator.prefix.clone()),
                    }
                    working = put_back;
                    reverted[at] = verdicts[at].clone();
                }
            }
            if reverted_now.is_empty() && reverted_keys.is_empty() {
                break;
            }
            // A revert can change what an overlapping validator sees: the
            // keys a per-key revert put back, or a whole section.
            for (at, validator) in self.list.iter().enumerate() {
                let covers = reverted_now
                    .iter()
                    .any(|prefix| overlaps(prefix, &validator.prefix))
                    || reverted_keys
                        .iter()
                        .any(|key| is_under(&validator.prefix, key));
                if covers {
                    affected[at] = true;
                }
                if !reverted_now.is_empty() {
                    only_touched[at] = None;
                } else if let Some(keys) = &mut only_touched[at] {
                    keys.extend(
                        reverted_keys
                            .iter()
                            .filter(|key| is_under(&validator.prefix, key))
                            .cloned(),
                    );
                    keys.sort_unstable();
                    keys.dedup();
                }
            }
            rewritten.extend(reverted_now);
            rewritten_keys.extend(reverted_keys);
        }
        for (at, validator) in self.list.iter_mut().enumerate() {
            if !affected[at] {
                continue;
            }
            match reverted[at].take().map(Ok).or(verdicts[at].take().map(Err)) {
                None => {
                    if validator.pending.take().is_some() {
                        log::info!("section '{}' is valid again", validator.prefix);
                    }
                }
                Some(Ok(reason)) => {
                    let keys = match &only_touched[at] {
                        Some(judged) => judged
                            .iter()
                            .filter(|key| working.get_json(key) != before_reverts.get_json(key))
                            .map(|key| key.to_string())
                            .collect(),
                        None => changed_keys(&working, &before_reverts, &validator.prefix),
                    };
                    let seq = pass
                        .touched
                        .iter()
                        .rev()
                        .find(|(_, key)| is_under(&validator.prefix, key))
                        .map_or(pass.position.seq, |(seq, _)| *seq);
                    log::warn!(
                        "rejected a foreign write to section '{}': {reason}",
                        validator.prefix
                    );
                    let rejection = Rejection {
                        seq,
                        keys,
                        reason: format!("section '{}' {reason}", validator.prefix),
                    };
                    validator.pending = Some(rejection.clone());
                    pass.events.push(Event::Rejected(rejection));
                    pass.rejected += 1;
                }
                Some(Err(reason)) => {
                    // Invalid without any change of ours to undo: the
                    // section is what readers already see.
                    log::warn!(
                        "section '{}' stays as it is though its validator refuses it: {reason}",
                        validator.prefix
                    );
                }
            }
        }
        if !rewritten.is_empty() || !rewritten_keys.is_empty() {
            rewrite_events(pass, base, &working, &rewritten, &rewritten_keys);
        }
        pass.snapshot = working;
        Ok(())
    }
}

/// Replaces the events under `prefixes` with the difference between what
/// readers saw and what they will see. A key whose pass event still
/// describes that difference keeps it (its own seq and source); a key whose
/// value came from a re-read gets the pass's position, where the log holds
/// that value.
fn rewrite_events(
    pass: &mut Pass,
    base: &Snapshot,
    working: &Snapshot,
    prefixes: &[String],
    single: &[Arc<str>],
) {
    let single: BTreeSet<&str> = single.iter().map(|key| &**key).collect();
    let under =
        |key: &str| single.contains(key) || prefixes.iter().any(|prefix| is_under(prefix, key));
    let mut originals: HashMap<String, Change> = HashMap::new();
    pass.events.retain(|event| match event {
        Event::Change(change) if under(&change.key) => {
            originals.insert(change.key.clone(), change.clone());
            false
        }
        _ => true,
    });
    let mut keys: BTreeSet<&str> = single.clone();
    for prefix in prefixes {
        keys.extend(base.keys(prefix));
        keys.extend(working.keys(prefix));
    }
    let seq = pass.position.seq;
    for key in keys {
        let old = base.get_json(key);
        let new = working.get_json(key);
        if old == new {
            continue;
        }
        let event = match originals.remove(key) {
            Some(original) if original.new.as_deref() == new => original,
            _ => Change {
                seq,
                key: key.to_owned(),
                old: base.entry(key),
                new: working.entry(key),
                source: Source::External,
            },
        };
        pass.events.push(Event::Change(event));
    }
    // Publish in seq order (stable: a reload's `Reloaded` event stays ahead
    // of its changes, which share its seq).
    pass.events.sort_by_key(Event::seq);
}

/// `working` with the validator's refused changes put back to what readers
/// see (`base`): only the refused keys for a per-key validator (among
/// `only` when given), the whole section otherwise. `None` when that
/// changes nothing.
fn put_back(
    validator: &Validator,
    working: &Snapshot,
    base: &Snapshot,
    only: Option<&[Arc<str>]>,
) -> Option<Snapshot> {
    let Some(per_key) = &validator.per_key else {
        let last_good = base.section_pairs(&validator.prefix);
        if last_good == working.section_pairs(&validator.prefix) {
            return None;
        }
        return Some(working.with_section(&validator.prefix, last_good));
    };
    let candidates: Vec<(Arc<str>, Arc<Value>)> = match only {
        Some(keys) => keys
            .iter()
            .filter_map(|key| working.entry(key).map(|value| (Arc::clone(key), value)))
            .collect(),
        None => working.section_pairs(&validator.prefix),
    };
    let mut next = working.clone();
    let mut changed = false;
    for (key, value) in candidates {
        if per_key(&key, &value).is_none() {
            continue;
        }
        let before = base.entry(&key);
        if before.as_deref() != Some(&*value) {
            changed = true;
            next.put(key, before);
        }
    }
    changed.then_some(next)
}

/// Runs a user's check on the section as readers would see it; a panic is
/// a refusal, not the end of the watcher.
fn run_check(validator: &Validator, snapshot: &Snapshot, layers: &Layers) -> Result<(), String> {
    check_once(&validator.check, snapshot, layers)
}

/// The keys at or below `prefix` whose value differs.
pub(crate) fn changed_keys(before: &Snapshot, after: &Snapshot, prefix: &str) -> Vec<String> {
    let mut keys: BTreeSet<&str> = before.keys(prefix).collect();
    keys.extend(after.keys(prefix));
    keys.into_iter()
        .filter(|key| before.get_json(key) != after.get_json(key))
        .map(str::to_owned)
        .collect()
}

/// Runs `check` on `snapshot` (the database's view) as readers would see
/// it through `layers`; a panic is a refusal.
pub(crate) fn check_once(
    check: &Check,
    snapshot: &Snapshot,
    layers: &Layers,
) -> Result<(), String> {
    let view;
    let judged = if layers.is_empty() {
        snapshot
    } else {
        view = layers.effective(snapshot);
        &view
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(judged))).unwrap_or_else(
        |panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(format!("validator panicked: {message}"))
        },
    )
}
