//! The immutable, persistent snapshot that readers load.

use std::sync::Arc;

use imbl::shared_ptr::DefaultSharedPtr;
use imbl::{GenericHashMap, OrdMap};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::relative;
use crate::value::unflatten;

/// An immutable view of every setting at one point of the change log.
///
/// Cloning is cheap (structural sharing), and applying one change to a copy
/// costs O(log n). Load it once per unit of work to read several keys from
/// the same commit:
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
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    seq: i64,
    /// Ordered, for prefix scans and sections.
    entries: OrdMap<Arc<str>, Arc<Value>>,
    /// The same entries hashed, for point reads: a lookup in the ordered map
    /// costs ~17 comparisons of keys with long shared prefixes at 100 000
    /// keys. Both maps share the key and value allocations.
    index: Index,
}

/// A persistent hash map with a fast, randomly seeded hasher.
type Index = GenericHashMap<Arc<str>, Arc<Value>, foldhash::fast::RandomState, DefaultSharedPtr>;

impl Snapshot {
    pub(crate) fn new(seq: i64, entries: OrdMap<Arc<str>, Arc<Value>>) -> Self {
        let index = entries
            .iter()
            .map(|(key, value)| (Arc::clone(key), Arc::clone(value)))
            .collect();
        Snapshot {
            seq,
            entries,
            index,
        }
    }

    /// Sets (`Some`) or removes (`None`) one key in both maps: O(log n) with
    /// structural sharing.
    pub(crate) fn put(&mut self, key: Arc<str>, value: Option<Arc<Value>>) {
        match value {
            Some(value) => {
                self.index.insert(Arc::clone(&key), Arc::clone(&value));
                self.entries.insert(key, value);
            }
            None => {
                self.index.remove(key.as_ref());
                self.entries.remove(key.as_ref());
            }
        }
    }

    /// A copy with `key` set to `value` (`None` removes it), at the same
    /// seq; the original is untouched. Costs O(log n): the copy shares all
    /// but the changed paths. The step the store runs per changed key (the
    /// bench report reaches it through the `bench-internals` feature).
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
        self.entries.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The JSON value stored at `key`.
    pub fn get_json(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(Arc::as_ref)
    }

    /// The value at `key`, deserialized. `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::Decode`] when the stored value does not fit `T`; its key is
    /// the path of the part that does not fit (`physics.sizes[2]`).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.index.get(key) {
            None => Ok(None),
            Some(value) => decode(key, value.as_ref()).map(Some),
        }
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Every `(key, value)` at or below `prefix`, in key order. The empty
    /// prefix lists everything.
    pub fn entries<'s>(
        &'s self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'s str, &'s Value)> + use<'s> {
        let exact = if prefix.is_empty() {
            None
        } else {
            self.index
                .get_key_value(prefix)
                .map(|(key, value)| (key.as_ref(), value.as_ref()))
        };
        // Every key strictly below `prefix` starts with `prefix.`; they sort
        // together because no key byte sorts between '.' and the next one
        // inside such a run.
        let start: Arc<str> = if prefix.is_empty() {
            Arc::from("")
        } else {
            Arc::from(format!("{prefix}."))
        };
        let run = Arc::clone(&start);
        let below = self
            .entries
            .range(start..)
            .take_while(move |(key, _)| key.starts_with(&*run))
            .map(|(key, value)| (key.as_ref(), value.as_ref()));
        exact.into_iter().chain(below)
    }

    /// The keys at or below `prefix`, in order.
    pub fn keys<'s>(&'s self, prefix: &str) -> impl Iterator<Item = &'s str> + use<'s> {
        self.entries(prefix).map(|(key, _)| key)
    }

    /// The value at `prefix` when it is a key, otherwise the section below it
    /// rebuilt as nested JSON, otherwise `None`.
    ///
    /// # Errors
    /// [`Error::Conflict`] when a key below is both a value and a section.
    pub fn subtree(&self, prefix: &str) -> Result<Option<Value>> {
        if let Some(value) = self.index.get(prefix) {
            return Ok(Some(value.as_ref().clone()));
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

    pub(crate) fn entry(&self, key: &str) -> Option<&Arc<Value>> {
        self.index.get(key)
    }

    pub(crate) fn map(&self) -> &OrdMap<Arc<str>, Arc<Value>> {
        &self.entries
    }

    /// The entries at or below `prefix`, sharing their allocations.
    pub(crate) fn section_pairs(&self, prefix: &str) -> Vec<(Arc<str>, Arc<Value>)> {
        self.entries(prefix)
            .filter_map(|(key, _)| self.index.get_key_value(key))
            .map(|(key, value)| (Arc::clone(key), Arc::clone(value)))
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
        let entries = pairs
            .iter()
            .map(|(k, v)| (Arc::<str>::from(*k), Arc::new(v.clone())))
            .collect();
        Snapshot::new(1, entries)
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
