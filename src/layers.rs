//! Layers: environment overrides above the database, registered defaults
//! below it. Readers see the effective value of each key; the engine keeps
//! the database's own view, and the effective view is derived from it when
//! a pass publishes.
//!
//! How a key resolves, highest first:
//! 1. an environment override of the key itself;
//! 2. hidden, when an override holds a value above it or keys below it (an
//!    override's shape wins, so the effective tree is always a tree);
//! 3. the database's value;
//! 4. the registered default, unless the database holds a value above it or
//!    keys below it (then the database's shape wins).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::events::{Change, Event};
use crate::key::{ancestors, is_under, validate_key};
use crate::snapshot::Snapshot;
use crate::value::{flatten, parse_json_value};

/// Where an effective value comes from.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Layer {
    /// An environment variable (its name).
    Env(String),
    /// The database.
    Database,
    /// The registered defaults.
    Default,
}

/// One environment override.
#[derive(Clone, Debug)]
pub(crate) struct Override {
    pub(crate) variable: String,
    pub(crate) value: Arc<Value>,
}

/// The fixed layers of a store, read at open.
#[derive(Debug, Default)]
pub(crate) struct Layers {
    pub(crate) env: BTreeMap<String, Override>,
    pub(crate) defaults: BTreeMap<String, Arc<Value>>,
}

impl Layers {
    pub(crate) fn is_empty(&self) -> bool {
        self.env.is_empty() && self.defaults.is_empty()
    }

    /// Adds the leaves of a defaults tree (a later tree wins per key).
    pub(crate) fn add_defaults(&mut self, prefix: &str, tree: &Value) -> Result<()> {
        let leaves = if tree.is_object() {
            flatten(prefix, tree)?
        } else {
            validate_key(prefix)?;
            BTreeMap::from([(prefix.to_owned(), tree.clone())])
        };
        for (key, value) in leaves {
            self.defaults.insert(key, Arc::new(value));
        }
        crate::value::check_no_leaf_is_a_section(self.defaults.keys().map(String::as_str))
    }

    /// Reads the overrides `PREFIX_SEG__SEG=VALUE` from `vars`. `known`
    /// gives the keys that exist (database and defaults): a variable names
    /// the existing key whose segments match it ignoring ASCII case, else
    /// the key in lower case. The value is JSON when it parses, else a
    /// string.
    pub(crate) fn read_env(
        &mut self,
        prefix: &str,
        vars: impl Iterator<Item = (OsString, OsString)>,
        known: &[String],
    ) -> Result<()> {
        let start = format!("{prefix}_");
        for (name, value) in vars {
            let Some(name) = name.to_str() else {
                continue;
            };
            let Some(rest) = name.strip_prefix(&start) else {
                continue;
            };
            let invalid = |reason: String| Error::InvalidOption {
                option: "env_prefix",
                reason: format!("the environment variable {name} {reason}"),
            };
            let key = env_key(rest, known).map_err(invalid)?;
            let Some(text) = value.to_str() else {
                return Err(invalid("is not UTF-8".to_owned()));
            };
            let parsed = match parse_json_value(&key, text) {
                Ok(value) if !value.is_object() => value,
                Ok(_) => {
                    return Err(invalid(
                        "holds a JSON object; override each key of a section on its own".to_owned(),
                    ));
                }
                Err(_) => Value::String(text.to_owned()),
            };
            crate::value::check_value(&key, &parsed).map_err(|error| invalid(error.to_string()))?;
            self.env.insert(
                key,
                Override {
                    variable: name.to_owned(),
                    value: Arc::new(parsed),
                },
            );
        }
        crate::value::check_no_leaf_is_a_section(self.env.keys().map(String::as_str)).map_err(
            |error| Error::InvalidOption {
                option: "env_prefix",
                reason: format!("two environment overrides clash: {error}"),
            },
        )
    }

    /// Whether an environment override above or below `key` hides it.
    pub(crate) fn hides(&self, key: &str) -> bool {
        self.env_hides(key)
    }

    /// Whether an override holds a value above `key` or keys below it.
    fn env_hides(&self, key: &str) -> bool {
        ancestors(key).any(|above| self.env.contains_key(above))
            || self
                .env
                .range(format!("{key}.")..)
                .next()
                .is_some_and(|(below, _)| is_under(key, below))
    }

    /// The effective value of `key` over `db`, and where it comes from.
    pub(crate) fn resolve(&self, db: &Snapshot, key: &str) -> Option<(Arc<Value>, Layer)> {
        if let Some(over) = self.env.get(key) {
            return Some((Arc::clone(&over.value), Layer::Env(over.variable.clone())));
        }
        if self.env_hides(key) {
            return None;
        }
        if let Some(value) = db.entry(key) {
            return Some((value, Layer::Database));
        }
        let default = self.defaults.get(key)?;
        let db_shape_wins =
            ancestors(key).any(|above| db.contains(above)) || db.keys(key).next().is_some();
        (!db_shape_wins).then(|| (Arc::clone(default), Layer::Default))
    }

    /// The effective view of `db`, computed whole.
    pub(crate) fn effective(&self, db: &Snapshot) -> Snapshot {
        let mut view = db.clone();
        let mut touched: Vec<&str> = Vec::new();
        for key in self.env.keys() {
            touched.push(key);
            touched.extend(ancestors(key));
            touched.extend(db.keys(key));
        }
        touched.extend(self.defaults.keys().map(String::as_str));
        touched.sort_unstable();
        touched.dedup();
        let updates: Vec<(Arc<str>, Option<Arc<Value>>)> = touched
            .into_iter()
            .map(|key| {
                (
                    Arc::from(key),
                    self.resolve(db, key).map(|(value, _)| value),
                )
            })
            .collect();
        for (key, value) in updates {
            view.put(key, value);
        }
        view
    }

    /// The keys whose effective value may change when the database's `key`
    /// changes: the key, and the defaults above and below it.
    fn affected<'k>(&'k self, key: &'k str) -> impl Iterator<Item = &'k str> {
        let above = ancestors(key).filter(|above| self.defaults.contains_key(*above));
        let below = self
            .defaults
            .range(format!("{key}.")..)
            .map(|(below, _)| below.as_str())
            .take_while(move |below| is_under(key, below));
        std::iter::once(key).chain(above).chain(below)
    }

    /// The effective view after a pass: `before` was the effective view,
    /// `db` the database's new view, `events` the pass's events (in the
    /// database's terms). Returns the new view and the events in effective
    /// terms: a change an override shadows is dropped, a removal a default
    /// fills becomes a change to the default.
    pub(crate) fn apply(
        &self,
        before: &Snapshot,
        db: &Snapshot,
        events: &[Event],
        reload: bool,
    ) -> (Snapshot, Vec<Event>) {
        if reload {
            let after = self.effective(db);
            let translated = events
                .iter()
                .filter_map(|event| self.translate(event, before, &after))
                .collect();
            return (after, translated);
        }
        let mut after = before.clone();
        after.set_seq(db.seq());
        for event in events {
            let keys: &[String] = match event {
                Event::Change(change) => std::slice::from_ref(&change.key),
                // A registration's fallback changes the database's view
                // with no change events.
                Event::Rejected(rejection) => &rejection.keys,
                _ => &[],
            };
            for changed in keys {
                for key in self.affected(changed) {
                    let value = self.resolve(db, key).map(|(value, _)| value);
                    after.put(Arc::from(key), value);
                }
            }
        }
        let mut translated = Vec::new();
        let mut announced: HashSet<(&str, i64)> = HashSet::new();
        for event in events {
            let Event::Change(change) = event else {
                translated.push(event.clone());
                continue;
            };
            for key in self.affected(&change.key) {
                let (old, new) = (before.get_json(key), after.get_json(key));
                if old != new && announced.insert((key, change.seq)) {
                    translated.push(Event::Change(Change {
                        seq: change.seq,
                        key: key.to_owned(),
                        old: before.entry(key),
                        new: after.entry(key),
                        source: change.source,
                    }));
                }
            }
        }
        (after, translated)
    }

    fn translate(&self, event: &Event, before: &Snapshot, after: &Snapshot) -> Option<Event> {
        let Event::Change(change) = event else {
            return Some(event.clone());
        };
        let (old, new) = (before.get_json(&change.key), after.get_json(&change.key));
        (old != new).then(|| {
            Event::Change(Change {
                old: before.entry(&change.key),
                new: after.entry(&change.key),
                ..change.clone()
            })
        })
    }
}

/// The key an environment variable's name (after the prefix) names.
fn env_key(rest: &str, known: &[String]) -> std::result::Result<String, String> {
    let segments: Vec<&str> = rest.split("__").collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(
            "has an empty segment ('__' separates segments: PREFIX_SERVER__PORT names server.port)"
                .to_owned(),
        );
    }
    if let Some(bad) = segments.iter().find(|segment| {
        !segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    }) {
        return Err(format!(
            "has the segment '{bad}': a key segment holds only ASCII letters, digits, '_' and '-'"
        ));
    }
    let existing = known.iter().find(|key| {
        let parts: Vec<&str> = key.split('.').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(part, segment)| part.eq_ignore_ascii_case(segment))
    });
    let key = match existing {
        Some(key) => key.clone(),
        None => segments
            .iter()
            .map(|segment| segment.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("."),
    };
    validate_key(&key).map_err(|error| format!("cannot name a key: {error}"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn read(pairs: &[(&str, &str)], known: &[&str]) -> Result<Layers> {
        let mut layers = Layers::default();
        let known: Vec<String> = known.iter().map(|key| (*key).to_owned()).collect();
        layers.read_env("APP", vars(pairs), &known)?;
        Ok(layers)
    }

    fn value_of(layers: &Layers, key: &str) -> Value {
        layers.env[key].value.as_ref().clone()
    }

    #[test]
    fn variables_with_another_prefix_are_ignored() {
        let layers = read(&[("OTHER_X", "1"), ("APPX_Y", "2"), ("APP", "3")], &[]).unwrap();
        assert!(layers.env.is_empty(), "{:?}", layers.env);
    }

    #[test]
    fn double_underscores_separate_segments_and_single_ones_stay() {
        let layers = read(
            &[("APP_SERVER__PORT", "9000"), ("APP_LOG_LEVEL", "debug")],
            &[],
        )
        .unwrap();
        assert_eq!(value_of(&layers, "server.port"), json!(9000));
        assert_eq!(value_of(&layers, "log_level"), json!("debug"));
        assert_eq!(layers.env["server.port"].variable, "APP_SERVER__PORT");
    }

    #[test]
    fn a_variable_names_the_existing_key_that_matches_ignoring_case() {
        let layers = read(
            &[("APP_XR__MOVEMENTAXES__HORIZONTAL", "3")],
            &["xr.movementAxes.horizontal", "xr.other"],
        )
        .unwrap();
        assert_eq!(value_of(&layers, "xr.movementAxes.horizontal"), json!(3));
    }

    #[test]
    fn values_are_json_when_they_parse_else_strings() {
        let layers = read(
            &[
                ("APP_A", "true"),
                ("APP_B", "[1,2]"),
                ("APP_C", "\"9000\""),
                ("APP_D", "hello world"),
                ("APP_E", "0.10"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(value_of(&layers, "a"), json!(true));
        assert_eq!(value_of(&layers, "b"), json!([1, 2]));
        assert_eq!(value_of(&layers, "c"), json!("9000"));
        assert_eq!(value_of(&layers, "d"), json!("hello world"));
        assert_eq!(value_of(&layers, "e"), json!(0.1));
    }

    #[test]
    fn variables_that_cannot_name_a_key_are_refused_with_their_name() {
        for (name, value) in [
            ("APP_A____B", "1"),
            ("APP_", "1"),
            ("APP_A.B", "1"),
            ("APP_SECTION", "{\"x\": 1}"),
        ] {
            let error = read(&[(name, value)], &[]).unwrap_err().to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
        let clash = read(&[("APP_A", "1"), ("APP_A__B", "2")], &[]).unwrap_err();
        assert!(clash.to_string().contains("clash"), "{clash}");
    }

    #[test]
    fn an_override_hides_database_keys_of_the_other_shape_and_defaults_yield_to_the_database() {
        let mut layers = read(&[("APP_A", "1")], &[]).unwrap();
        layers
            .add_defaults("", &json!({"d": {"x": 1}, "e": 5}))
            .unwrap();
        let mut db = Snapshot::default();
        db.put(Arc::from("a.below"), Some(Arc::new(json!(2))));
        db.put(Arc::from("d"), Some(Arc::new(json!(3))));
        let view = layers.effective(&db);
        assert_eq!(view.get_json("a"), Some(&json!(1)));
        assert_eq!(view.get_json("a.below"), None, "hidden by the override");
        assert_eq!(view.get_json("d"), Some(&json!(3)));
        assert_eq!(view.get_json("d.x"), None, "the database's shape wins");
        assert_eq!(view.get_json("e"), Some(&json!(5)));
    }
}
