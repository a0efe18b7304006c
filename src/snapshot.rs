//! The immutable, persistent snapshot that readers load.

use std::cmp::Ordering;
use std::fmt;
use std::hash::BuildHasher;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use hashbrown::HashTable;
use imbl::OrdMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::relative;
use crate::value::unflatten;

/// An immutable view of every setting at one point of the change log.
///
/// Cloning is cheap (two reference counts), and applying one change to a
/// copy costs O(log c), c the changes since the last compaction. Load it
/// once per unit of work to read several keys from the same commit:
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
/// # store.set("physics.damping", &0.6)?;
/// # store.set("physics.springK", &0.1)?;
/// // Right: both values come from the same commit.
/// let snapshot = store.snapshot();
/// let damping: f64 = snapshot.get("physics.damping")?.unwrap_or(0.5);
/// let spring: f64 = snapshot.get("physics.springK")?.unwrap_or(0.1);
/// // Wrong for related values: two loads may straddle a commit.
/// let _torn = (store.get::<f64>("physics.damping")?, store.get::<f64>("physics.springK")?);
/// # let _ = (damping, spring);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Inside, a compact immutable base (every key's text in one buffer, in
/// order, with a hash table of positions) holds the bulk, shared by every
/// copy; the changes since it was built sit in a small persistent ordered
/// `overlay`. When the overlay outgrows an eighth of the base, the two are
/// merged into a new base: an O(n) step every n/8 changes, so a change
/// costs O(log c) plus a constant amortized share, whatever n is.
#[derive(Clone, Default)]
pub struct Snapshot {
    seq: i64,
    base: Arc<Base>,
    /// Changes since `base`, in key order: `Some` sets a key, `None`
    /// removes a key of the base.
    overlay: OrdMap<Arc<str>, Option<Stored>>,
    /// One bit per hash of the keys in the overlay (set, never cleared
    /// until a compaction empties it): a point read of a key the overlay
    /// does not hold skips its ordered search, which costs ~70 ns at 1 000
    /// changes. `None` while the overlay is empty.
    filter: Option<Arc<Vec<u64>>>,
    len: usize,
}

/// The overlay filter's size in 64-bit words: 32 768 bits, 4 KiB copied
/// once per commit that changes keys (copy on write). Its false positives
/// (a bit set by another key) grow with the overlay: 3 % at 1 000 changes.
const FILTER_WORDS: usize = 512;

fn filter_bit(hash: u64) -> (usize, u64) {
    (((hash >> 6) as usize) % FILTER_WORDS, 1 << (hash & 63))
}

/// A value as a snapshot holds it: a scalar inline (no allocation of its
/// own), anything else behind a shared pointer that events and other
/// snapshots share.
#[derive(Clone, Debug, PartialEq)]
enum Stored {
    Scalar(Value),
    Shared(Arc<Value>),
}

impl Stored {
    fn from_shared(value: Arc<Value>) -> Stored {
        match &*value {
            Value::Null | Value::Bool(_) | Value::Number(_) => Stored::Scalar((*value).clone()),
            Value::String(_) | Value::Array(_) | Value::Object(_) => Stored::Shared(value),
        }
    }

    fn value(&self) -> &Value {
        match self {
            Stored::Scalar(value) => value,
            Stored::Shared(value) => value,
        }
    }

    fn to_shared(&self) -> Arc<Value> {
        match self {
            Stored::Scalar(value) => Arc::new(value.clone()),
            Stored::Shared(value) => Arc::clone(value),
        }
    }
}

/// Below this many changes the overlay is never merged into the base (a
/// handful in unit tests, so that they merge often).
const OVERLAY_MIN: usize = if cfg!(test) { 8 } else { 128 };

/// The immutable bulk of a snapshot: keys in order, their text in one
/// buffer (no allocation per key), values shared with events and other
/// snapshots, and a hash table of positions for point reads.
#[derive(Default)]
struct Base {
    /// Every key's text, concatenated in key order.
    text: String,
    /// `ends[i]`: where key `i` ends in `text` (it starts where `i - 1`
    /// ends).
    ends: Vec<usize>,
    values: Vec<Stored>,
    /// Positions, hashed by key.
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Base {
    /// From `(key, value)` pairs in strictly increasing key order.
    /// From `(key, value)` pairs in strictly increasing key order;
    /// `keys`: how many there are (a capacity hint).
    fn from_sorted<'a>(keys: usize, pairs: impl Iterator<Item = (&'a str, Stored)>) -> Base {
        let mut base = Base {
            ends: Vec::with_capacity(keys),
            values: Vec::with_capacity(keys),
            ..Base::default()
        };
        for (key, value) in pairs {
            debug_assert!(base.len() == 0 || base.key(base.len() - 1) < key);
            base.text.push_str(key);
            base.ends.push(base.text.len());
            base.values.push(value);
        }
        base.text.shrink_to_fit();
        base.ends.shrink_to_fit();
        base.values.shrink_to_fit();
        let mut index = HashTable::with_capacity(base.len());
        for at in 0..base.len() {
            let hash = base.hasher.hash_one(base.key(at));
            // Positions fit in u32: a snapshot never holds 4 billion keys
            // (each key takes a row of a SQLite table and memory here).
            let position = u32::try_from(at).unwrap_or(u32::MAX);
            index.insert_unique(hash, position, |&other| {
                base.hasher.hash_one(base.key(other as usize))
            });
        }
        base.index = index;
        base
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn key(&self, at: usize) -> &str {
        let start = at.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[at]]
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.position_hashed(key, self.hash(key))
    }

    fn position_hashed(&self, key: &str, hash: u64) -> Option<usize> {
        self.index
            .find(hash, |&at| self.key(at as usize) == key)
            .map(|&at| at as usize)
    }

    /// The first position whose key is not below `bound`.
    fn lower_bound(&self, bound: &str) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.key(mid) < bound {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

/// Collects a snapshot's entries in any order without an allocation per
/// key: the keys' text goes to one buffer, sorted once at the end. A full
/// reload of 100 000 keys would otherwise leave 100 000 freed key
/// allocations scattered between the live values, memory the process keeps.
#[derive(Default)]
pub(crate) struct Builder {
    text: String,
    spans: Vec<(usize, usize)>,
    values: Vec<Stored>,
}

impl Builder {
    pub(crate) fn with_capacity(keys: usize) -> Self {
        Builder {
            text: String::with_capacity(keys * 48),
            spans: Vec::with_capacity(keys),
            values: Vec::with_capacity(keys),
        }
    }

    pub(crate) fn push(&mut self, key: &str, value: Arc<Value>) {
        let start = self.text.len();
        self.text.push_str(key);
        self.spans.push((start, self.text.len()));
        self.values.push(Stored::from_shared(value));
    }

    /// The snapshot at `seq`; of two entries with one key the last pushed
    /// wins.
    pub(crate) fn finish(self, seq: i64) -> Snapshot {
        let Builder {
            text,
            spans,
            values,
        } = self;
        let key = |at: usize| &text[spans[at].0..spans[at].1];
        let mut order: Vec<usize> = (0..spans.len()).collect();
        if !order.is_sorted_by(|&a, &b| key(a) < key(b)) {
            // Stable: of equal keys the last pushed comes last.
            order.sort_by(|&a, &b| key(a).cmp(key(b)));
            let mut unique: Vec<usize> = Vec::with_capacity(order.len());
            for at in order {
                match unique.last_mut() {
                    Some(last) if key(*last) == key(at) => *last = at,
                    _ => unique.push(at),
                }
            }
            order = unique;
        }
        let base = Base::from_sorted(
            order.len(),
            order.into_iter().map(|at| (key(at), values[at].clone())),
        );
        Snapshot {
            seq,
            len: base.len(),
            base: Arc::new(base),
            overlay: OrdMap::new(),
            filter: None,
        }
    }
}

impl Snapshot {
    /// From `(key, value)` pairs in any order; of two pairs with one key
    /// the last wins.
    pub(crate) fn new(seq: i64, pairs: impl IntoIterator<Item = (Arc<str>, Arc<Value>)>) -> Self {
        let mut builder = Builder::default();
        for (key, value) in pairs {
            builder.push(&key, value);
        }
        builder.finish(seq)
    }

    /// Sets (`Some`) or removes (`None`) one key: O(log c), c the changes
    /// since the last compaction, plus the amortized compaction.
    pub(crate) fn put(&mut self, key: Arc<str>, value: Option<Arc<Value>>) {
        let hash = self.base.hash(&key);
        let in_base = self.base.position_hashed(&key, hash).is_some();
        let was = match self.overlay.get(&*key) {
            Some(entry) => entry.is_some(),
            None => in_base,
        };
        let now = value.is_some();
        match value {
            None if !in_base => {
                self.overlay.remove(&*key);
            }
            value => {
                self.overlay.insert(key, value.map(Stored::from_shared));
                let filter = self
                    .filter
                    .get_or_insert_with(|| Arc::new(vec![0; FILTER_WORDS]));
                let (word, bit) = filter_bit(hash);
                if filter[word] & bit == 0 {
                    Arc::make_mut(filter)[word] |= bit;
                }
            }
        }
        match (was, now) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
        if self.overlay.len() > OVERLAY_MIN.max(self.base.len() / 8) {
            self.compact();
        }
    }

    /// Merges the overlay into a new base.
    fn compact(&mut self) {
        let base = Base::from_sorted(
            self.len,
            self.stored_entries("")
                .map(|(key, value)| (key, value.clone())),
        );
        self.len = base.len();
        self.base = Arc::new(base);
        self.overlay = OrdMap::new();
        self.filter = None;
    }

    /// A copy with `key` set to `value` (`None` removes it), at the same
    /// seq; the original is untouched. The step the store runs per changed
    /// key (the bench report reaches it through the `bench-internals`
    /// feature).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a malformed key, [`Error::InvalidValue`]
    /// for a value too large or too deep.
    pub(crate) fn with_change(&self, key: &str, value: Option<Value>) -> Result<Snapshot> {
        crate::key::validate_key(key)?;
        if let Some(value) = &value {
            crate::value::check_value(key, value)?;
        }
        let mut next = self.clone();
        next.put(Arc::from(key), value.map(Arc::new));
        Ok(next)
    }

    pub(crate) fn set_seq(&mut self, seq: i64) {
        self.seq = seq;
    }

    /// The last change-log sequence number this snapshot reflects.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The JSON value stored at `key`.
    pub fn get_json(&self, key: &str) -> Option<&Value> {
        self.stored(key).map(Stored::value)
    }

    /// The value at `key`, deserialized. `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::Decode`] when the stored value does not fit `T`; its key is
    /// the path of the part that does not fit (`physics.sizes[2]`).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_json(key) {
            None => Ok(None),
            Some(value) => decode(key, value).map(Some),
        }
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: &str) -> bool {
        self.stored(key).is_some()
    }

    /// Every `(key, value)` at or below `prefix`, in key order. The empty
    /// prefix lists everything.
    pub fn entries<'s>(
        &'s self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'s str, &'s Value)> + use<'s> {
        self.stored_entries(prefix)
            .map(|(key, value)| (key, value.value()))
    }

    /// [`Snapshot::entries`], as stored.
    fn stored_entries<'s>(
        &'s self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'s str, &'s Stored)> + use<'s> {
        let exact = if prefix.is_empty() {
            None
        } else {
            self.entry_with_key(prefix)
        };
        // Every key strictly below `prefix` starts with `prefix.`: they sort
        // together in [`prefix.`, `prefix/`), since '/' follows '.'.
        let (from, to) = if prefix.is_empty() {
            (String::new(), None)
        } else {
            (format!("{prefix}."), Some(format!("{prefix}/")))
        };
        let base_from = self.base.lower_bound(&from);
        let base_to = to
            .as_deref()
            .map_or(self.base.len(), |to| self.base.lower_bound(to));
        let upper = match &to {
            Some(to) => Bound::Excluded(to.as_str()),
            None => Bound::Unbounded,
        };
        let overlay = self
            .overlay
            .range::<_, str>((Bound::Included(from.as_str()), upper))
            .map(|(key, value)| (&**key, value.as_ref()))
            .peekable();
        let below = Merged {
            base: &self.base,
            at: base_from,
            end: base_to,
            overlay,
        };
        exact.into_iter().chain(below)
    }

    /// The keys at or below `prefix`, in order.
    pub fn keys<'s>(&'s self, prefix: &str) -> impl Iterator<Item = &'s str> + use<'s> {
        self.stored_entries(prefix).map(|(key, _)| key)
    }

    /// The value at `prefix` when it is a key, otherwise the section below it
    /// rebuilt as nested JSON, otherwise `None`.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a key below is both a value and a section.
    pub fn subtree(&self, prefix: &str) -> Result<Option<Value>> {
        if let Some(value) = self.get_json(prefix) {
            return Ok(Some(value.clone()));
        }
        let mut below = self.entries(prefix).peekable();
        if below.peek().is_none() {
            return Ok(None);
        }
        unflatten(
            prefix,
            below.map(|(key, value)| (relative(prefix, key), value)),
        )
        .map(Some)
    }

    /// Deserializes the section under `prefix` into `T`. An absent section
    /// deserializes from an empty object, so `#[serde(default)]` structs get
    /// their defaults.
    ///
    /// # Errors
    /// [`Error::Decode`] when the section does not fit `T`, with the
    /// dotted path of the field that does not fit as its key
    /// (`server.port: invalid type: string "x", expected u16`);
    /// [`Error::Conflict`] when it cannot be rebuilt.
    pub fn section<T: DeserializeOwned>(&self, prefix: &str) -> Result<T> {
        let tree = self
            .subtree(prefix)?
            .unwrap_or_else(|| Value::Object(Default::default()));
        decode(prefix, tree)
    }

    /// The value at `key`, shared (a scalar gets an allocation of its own).
    pub(crate) fn entry(&self, key: &str) -> Option<Arc<Value>> {
        self.stored(key).map(Stored::to_shared)
    }

    fn stored(&self, key: &str) -> Option<&Stored> {
        let hash = self.base.hash(key);
        if self.may_be_in_overlay(hash) {
            if let Some(changed) = self.overlay.get(key) {
                return changed.as_ref();
            }
        }
        self.base
            .position_hashed(key, hash)
            .map(|at| &self.base.values[at])
    }

    /// Whether the overlay may hold the key of `hash` (no false negatives).
    fn may_be_in_overlay(&self, hash: u64) -> bool {
        self.filter.as_ref().is_some_and(|filter| {
            let (word, bit) = filter_bit(hash);
            filter[word] & bit != 0
        })
    }

    fn entry_with_key(&self, key: &str) -> Option<(&str, &Stored)> {
        if self.may_be_in_overlay(self.base.hash(key)) {
            if let Some((key, changed)) = self.overlay.get_key_value(key) {
                return changed.as_ref().map(|value| (&**key, value));
            }
        }
        let at = self.base.position(key)?;
        Some((self.base.key(at), &self.base.values[at]))
    }

    /// A snapshot of just `keys` (those present), at the same seq: what a
    /// per-key check judges when only those keys changed.
    pub(crate) fn only(&self, keys: &[Arc<str>]) -> Snapshot {
        let mut builder = Builder::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self.entry(key) {
                builder.push(key, value);
            }
        }
        builder.finish(self.seq)
    }

    /// The per-key difference to `after`, in key order: `(key, before,
    /// after)` for every key whose value differs (by content).
    pub(crate) fn diff<'s>(
        &'s self,
        after: &'s Snapshot,
    ) -> impl Iterator<Item = (&'s str, Option<&'s Value>, Option<&'s Value>)> + 's {
        let mut old = self.entries("").peekable();
        let mut new = after.entries("").peekable();
        std::iter::from_fn(move || {
            loop {
                let order = match (old.peek(), new.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some((a, _)), Some((b, _))) => a.cmp(b),
                };
                match order {
                    Ordering::Less => {
                        let (key, value) = old.next()?;
                        return Some((key, Some(value), None));
                    }
                    Ordering::Greater => {
                        let (key, value) = new.next()?;
                        return Some((key, None, Some(value)));
                    }
                    Ordering::Equal => {
                        let (key, before) = old.next()?;
                        let (_, now) = new.next()?;
                        if !std::ptr::eq(before, now) && before != now {
                            return Some((key, Some(before), Some(now)));
                        }
                    }
                }
            }
        })
    }

    /// The entries at or below `prefix`, sharing their allocations.
    pub(crate) fn section_pairs(&self, prefix: &str) -> Vec<(Arc<str>, Arc<Value>)> {
        self.stored_entries(prefix)
            .map(|(key, value)| (Arc::from(key), value.to_shared()))
            .collect()
    }

    /// A copy whose section at or below `prefix` is exactly `pairs`.
    pub(crate) fn with_section(
        &self,
        prefix: &str,
        pairs: Vec<(Arc<str>, Arc<Value>)>,
    ) -> Snapshot {
        let mut next = self.clone();
        for (key, _) in self.section_pairs(prefix) {
            next.put(key, None);
        }
        for (key, value) in pairs {
            next.put(key, Some(value));
        }
        next
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'a>(&'a Snapshot);
        impl fmt::Debug for Entries<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.entries("")).finish()
            }
        }
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("entries", &Entries(self))
            .finish()
    }
}

/// The base's run `[at, end)` merged with the overlay's changes over the
/// same range, in key order: a changed key shows its new value, a removed
/// one is skipped.
struct Merged<'s, O: Iterator<Item = (&'s str, Option<&'s Stored>)>> {
    base: &'s Base,
    at: usize,
    end: usize,
    overlay: Peekable<O>,
}

impl<'s, O: Iterator<Item = (&'s str, Option<&'s Stored>)>> Iterator for Merged<'s, O> {
    type Item = (&'s str, &'s Stored);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let base_key = (self.at < self.end).then(|| self.base.key(self.at));
            let order = match (base_key, self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(key), Some((changed, _))) => key.cmp(changed),
            };
            match order {
                Ordering::Less => {
                    let at = self.at;
                    self.at += 1;
                    return Some((self.base.key(at), &self.base.values[at]));
                }
                Ordering::Equal => {
                    self.at += 1;
                    if let Some((key, Some(value))) = self.overlay.next() {
                        return Some((key, value));
                    }
                }
                Ordering::Greater => {
                    if let Some((key, Some(value))) = self.overlay.next() {
                        return Some((key, value));
                    }
                }
            }
        }
    }
}

/// Deserializes `value`, read at `key`, into `T`; an error names the path
/// of the part that does not fit, below `key`.
fn decode<'de, T: serde::Deserialize<'de>>(
    key: &str,
    value: impl serde::Deserializer<'de, Error = serde_json::Error>,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = match path.as_str() {
            // The value itself does not fit.
            "." => key.to_owned(),
            _ if key.is_empty() => path,
            _ if path.starts_with('[') => format!("{key}{path}"),
            _ => format!("{key}.{path}"),
        };
        Error::Decode {
            key,
            source: error.into_inner(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(pairs: &[(&str, Value)]) -> Snapshot {
        let entries: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (Arc::<str>::from(*k), Arc::new(v.clone())))
            .collect();
        Snapshot::new(1, entries)
    }

    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "a-x", "b_", "c9"]),
            1..4,
        )
        .prop_map(|segments| segments.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Sets and removals, enough to merge the overlay into the base
        /// several times, give the same reads, scans, length and diff as an
        /// ordered map fed the same changes.
        #[test]
        fn a_snapshot_reads_like_an_ordered_map_through_compactions(
            initial in prop::collection::btree_map(key_strategy(), 0i64..5, 0..40),
            changes in prop::collection::vec((key_strategy(), prop::option::of(0i64..5)), 0..600),
        ) {
            let mut model: BTreeMap<String, Value> =
                initial.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let start = Snapshot::new(
                1,
                model.iter().map(|(k, v)| (Arc::<str>::from(k.as_str()), Arc::new(v.clone()))).collect::<Vec<_>>(),
            );
            let mut snapshot = start.clone();
            for (key, value) in &changes {
                let value = value.map(|v| json!(v));
                match &value {
                    Some(v) => { model.insert(key.clone(), v.clone()); }
                    None => { model.remove(key); }
                }
                snapshot.put(Arc::from(key.as_str()), value.map(Arc::new));
            }
            prop_assert_eq!(snapshot.len(), model.len());
            let all: Vec<(String, Value)> = snapshot.entries("").map(|(k, v)| (k.to_owned(), v.clone())).collect();
            let expected: Vec<(String, Value)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(all, expected);
            for prefix in ["a", "b", "a.a", "a-x", "c9.b", "zz"] {
                let scanned: Vec<&str> = snapshot.keys(prefix).collect();
                let wanted: Vec<&str> = model
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k == prefix || k.starts_with(&format!("{prefix}.")))
                    .collect();
                prop_assert_eq!(scanned, wanted);
            }
            for (key, _) in &changes {
                prop_assert_eq!(snapshot.get_json(key), model.get(key));
            }
            let diffed: Vec<String> = start.diff(&snapshot).map(|(k, _, _)| k.to_owned()).collect();
            let mut differing: Vec<String> = initial
                .keys()
                .chain(model.keys())
                .filter(|k| initial.get(*k).map(|v| json!(v)) != model.get(*k).cloned())
                .cloned()
                .collect();
            differing.sort();
            differing.dedup();
            prop_assert_eq!(diffed, differing);
        }
    }

    #[test]
    fn prefix_scans_stop_at_segment_boundaries() {
        let s = snapshot(&[
            ("a.b", json!(0)),
            ("a.b-x", json!(1)),
            ("a.b.c", json!(2)),
            ("a.b.d.e", json!(3)),
            ("a.bc", json!(4)),
        ]);
        assert_eq!(
            s.keys("a.b").collect::<Vec<_>>(),
            ["a.b", "a.b.c", "a.b.d.e"]
        );
        assert_eq!(s.keys("").count(), 5);
        assert_eq!(s.keys("zz").count(), 0);
    }

    #[test]
    fn sections_rebuild_nested_objects() {
        #[derive(serde::Deserialize, PartialEq, Debug)]
        #[serde(rename_all = "camelCase")]
        struct Physics {
            damping: f64,
            spring_k: f64,
            sizes: Vec<u32>,
        }
        let s = snapshot(&[
            ("p.damping", json!(0.6)),
            ("p.springK", json!(0.1)),
            ("p.sizes", json!([1, 2])),
        ]);
        let physics: Physics = s.section("p").unwrap();
        assert_eq!(
            physics,
            Physics {
                damping: 0.6,
                spring_k: 0.1,
                sizes: vec![1, 2]
            }
        );
        assert_eq!(s.subtree("p.sizes").unwrap(), Some(json!([1, 2])));
        assert_eq!(s.subtree("q").unwrap(), None);
        assert!(matches!(
            s.get::<String>("p.damping"),
            Err(Error::Decode { .. })
        ));
    }
}
