//! Secret keys: which settings hold values that outputs must not show and
//! logs must never contain, and the helpers every output redacts with.
//!
//! A key is secret when a registered pattern matches it **or a key above
//! it** (so `db.credentials` covers `db.credentials.password`). Patterns are
//! the rules file's: dotted, `*` one segment, `**` one or more. They come
//! from a rule's `"secret": true` ([`Store::add_rules`]) or from
//! [`Store::mark_secret`] for code without a rules file; once registered, a
//! pattern stays for the life of the store.
//!
//! # The marker
//!
//! A redacted value is replaced by the JSON object [`redacted()`]:
//! `{"<redacted>": true}`. It cannot be mistaken for a real setting:
//!
//! - a stored leaf is never an object (objects are sections), and
//! - `<redacted>` is not a valid key segment, so it is no section either.
//!
//! A marker string such as `"<redacted>"` would be a perfectly valid value
//! of a string setting, so an output could not say whether a value was
//! hidden or really is that string, and a redacted export imported back
//! would silently overwrite each secret with it. The object marker is
//! refused by `import`/`merge` (its member is not a valid key), so a
//! redacted export cannot be written back by mistake. Use [`is_redacted`] to
//! recognise it.
//!
//! # Where redaction happens
//!
//! The library never redacts what it *returns* ([`Store::get`],
//! [`Store::subtree`], events, history): callers asked for those values.
//! It redacts what it *says*: its log lines and the reasons it stores in
//! [`Rejection::reason`](crate::Rejection) and
//! [`Error::Rejected`] name a secret key's value as
//! the marker. Outputs for people (the CLI, the HTTP API, the console) call
//! [`Secrets`]'s helpers on everything they print, unless the user asked to
//! see secrets. A reason written by a caller's own validator
//! ([`Store::add_validator`]) is the caller's text, and is not rewritten.

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::{Map, Value};

use crate::db::history::HistoryEntry;
use crate::error::{Error, Result};
use crate::events::{Change, Event};
use crate::key::{ancestors, validate_key};
use crate::rules::{Rules, segments_match};
use crate::store::Store;

/// The member name of the redaction marker, `{"<redacted>": true}`.
pub const REDACTED: &str = "<redacted>";

/// The redaction marker, `{"<redacted>": true}`: what outputs show in place
/// of a secret value (see the [module documentation](self) for why an
/// object and not a string).
pub fn redacted() -> Value {
    let mut marker = Map::new();
    marker.insert(REDACTED.to_owned(), Value::Bool(true));
    Value::Object(marker)
}

/// `value` redacted: the marker [`redacted()`], whatever the value (its
/// type is not shown either). For a value that may be a section holding
/// only some secret keys, use [`Secrets::tree`].
pub fn redact(value: &Value) -> Value {
    let _ = value;
    redacted()
}

/// Whether `value` is the redaction marker.
pub fn is_redacted(value: &Value) -> bool {
    *value == redacted()
}

/// A set of secret key patterns, and the redaction of values by key.
///
/// ```
/// use livesettings::Secrets;
/// use serde_json::json;
///
/// let mut secrets = Secrets::new();
/// secrets.add("db.password")?;
/// assert!(secrets.is_secret("db.password"));
/// assert!(!secrets.is_secret("db.host"));
/// let shown = secrets.tree("db", &json!({"host": "h", "password": "hunter2"}));
/// assert_eq!(shown, json!({"host": "h", "password": {"<redacted>": true}}));
/// # Ok::<(), livesettings::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    patterns: Vec<String>,
}

impl Secrets {
    /// No secret keys.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// The patterns of the rules marked `"secret": true`.
    pub fn from_rules(rules: &Rules) -> Secrets {
        Secrets {
            patterns: rules
                .rules
                .iter()
                .filter(|rule| rule.secret)
                .map(|rule| rule.keys.clone())
                .collect(),
        }
    }

    /// Adds a pattern (dotted; `*` is one segment, `**` one or more).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when a segment is neither a wildcard nor a
    /// valid key segment.
    pub fn add(&mut self, pattern: &str) -> Result<()> {
        check_pattern(pattern)?;
        if !self.patterns.iter().any(|known| known == pattern) {
            self.patterns.push(pattern.to_owned());
        }
        Ok(())
    }

    /// The registered patterns, in registration order.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether no key is secret.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `key`'s value is secret: a pattern matches it or a key
    /// above it.
    pub fn is_secret(&self, key: &str) -> bool {
        if self.patterns.is_empty() || key.is_empty() {
            return false;
        }
        std::iter::once(key)
            .chain(ancestors(key))
            .any(|candidate| self.matches(candidate))
    }

    fn matches(&self, key: &str) -> bool {
        let key: Vec<&str> = key.split('.').collect();
        self.patterns.iter().any(|pattern| {
            let pattern: Vec<&str> = pattern.split('.').collect();
            segments_match(&pattern, &key)
        })
    }

    /// The value of `key` as an output may show it: the marker when the
    /// key is secret, else the value.
    pub fn value(&self, key: &str, value: &Value) -> Value {
        if self.is_secret(key) {
            redact(value)
        } else {
            value.clone()
        }
    }

    /// As [`Secrets::value`] for an optional value (`None`, an absent key,
    /// stays `None`: that a key is absent is not secret).
    pub fn optional(&self, key: &str, value: Option<&Value>) -> Option<Value> {
        value.map(|value| self.value(key, value))
    }

    /// The value or section at `prefix` (as [`Store::subtree`] returns it)
    /// with every secret leaf replaced by the marker, and nothing else
    /// changed. `prefix` `""` is the whole tree.
    pub fn tree(&self, prefix: &str, tree: &Value) -> Value {
        if self.patterns.is_empty() {
            return tree.clone();
        }
        match tree {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(name, child)| {
                        let key = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}.{name}")
                        };
                        (name.clone(), self.tree(&key, child))
                    })
                    .collect(),
            ),
            leaf => self.value(prefix, leaf),
        }
    }

    /// A change with its values redacted when its key is secret.
    pub fn change(&self, change: &Change) -> Change {
        let mut shown = change.clone();
        if self.is_secret(&change.key) {
            shown.old = change.old.as_deref().map(redact).map(Arc::new);
            shown.new = change.new.as_deref().map(redact).map(Arc::new);
        }
        shown
    }

    /// An event as an output may show it: the values of its changes of
    /// secret keys redacted (a [`Rejection`](crate::Rejection)'s reason
    /// already shows none).
    pub fn event(&self, event: &Event) -> Event {
        match event {
            Event::Change(change) => Event::Change(self.change(change)),
            Event::Commit(set) => {
                let mut shown = set.clone();
                shown.changes = set
                    .changes
                    .iter()
                    .map(|change| self.change(change))
                    .collect();
                Event::Commit(shown)
            }
            other => other.clone(),
        }
    }

    /// A history entry with its values redacted when its key is secret.
    pub fn history_entry(&self, entry: &HistoryEntry) -> HistoryEntry {
        let mut shown = entry.clone();
        if self.is_secret(&entry.key) {
            shown.old = entry.old.as_ref().map(redact);
            shown.new = entry.new.as_ref().map(redact);
        }
        shown
    }

    /// The value of `key` as text for a message or a log line: its JSON,
    /// or the marker's when the key is secret.
    pub fn display(&self, key: &str, value: &Value) -> String {
        self.value(key, value).to_string()
    }
}

/// Refuses a pattern that could never match a key.
fn check_pattern(pattern: &str) -> Result<()> {
    let bad = pattern.is_empty()
        || pattern
            .split('.')
            .any(|segment| segment != "*" && segment != "**" && validate_key(segment).is_err());
    if bad {
        return Err(Error::InvalidOption {
            option: "secret",
            reason: format!(
                "'{pattern}' is not a key pattern (dotted segments of letters, digits, '_' and '-', or '*' / '**')"
            ),
        });
    }
    Ok(())
}

/// A store's secret patterns, shared by the engine (its log lines and
/// rejection reasons) and the validators it registers.
#[derive(Debug, Default)]
pub(crate) struct SharedSecrets {
    secrets: RwLock<Secrets>,
}

impl SharedSecrets {
    /// A copy of the current set.
    pub(crate) fn get(&self) -> Secrets {
        self.secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn add(&self, pattern: &str) -> Result<()> {
        self.secrets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(pattern)
    }

    pub(crate) fn is_secret(&self, key: &str) -> bool {
        self.secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_secret(key)
    }

    /// See [`Secrets::display`].
    pub(crate) fn display(&self, key: &str, value: &Value) -> String {
        if self.is_secret(key) {
            redacted().to_string()
        } else {
            value.to_string()
        }
    }
}

impl Store {
    /// Marks the keys matching `pattern` (and the keys below them) as
    /// secret, for code without a rules file (a rule's `"secret": true`
    /// does the same through [`Store::add_rules`]). From then on the
    /// store's log lines and rejection reasons never show their values,
    /// and [`Store::is_secret`] / [`Store::secrets`] tell outputs to redact
    /// them (see [`crate::secrets`]). Values read through the API are
    /// not changed.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a malformed pattern.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.mark_secret("db.*.password")?;
    /// assert!(store.is_secret("db.main.password"));
    /// assert!(!store.is_secret("db.main.host"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mark_secret(&self, pattern: &str) -> Result<()> {
        self.core.secrets.add(pattern)
    }

    /// Whether `key`'s value is secret (see [`Store::mark_secret`]).
    pub fn is_secret(&self, key: &str) -> bool {
        self.core.secrets.is_secret(key)
    }

    /// The secret patterns registered so far, with the redaction helpers
    /// (see [`Secrets`]).
    pub fn secrets(&self) -> Secrets {
        self.core.secrets.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pattern_covers_matching_keys_and_the_keys_below_them() {
        let mut secrets = Secrets::new();
        secrets.add("db.*.password").unwrap();
        secrets.add("tokens").unwrap();
        assert!(secrets.is_secret("db.main.password"));
        assert!(secrets.is_secret("tokens.github"));
        assert!(!secrets.is_secret("db.main.host"));
        assert!(!secrets.is_secret("db"));
        assert!(!secrets.is_secret(""));
        assert!(secrets.add("db.pass word").is_err());
        assert!(secrets.add("").is_err());
    }

    #[test]
    fn a_section_is_redacted_leaf_by_leaf() {
        let mut secrets = Secrets::new();
        secrets.add("db.password").unwrap();
        let tree = json!({"db": {"host": "h", "password": "hunter2"}, "x": 1});
        assert_eq!(
            secrets.tree("", &tree),
            json!({"db": {"host": "h", "password": {"<redacted>": true}}, "x": 1})
        );
        assert!(is_redacted(&secrets.tree("db.password", &json!("hunter2"))));
        assert_eq!(secrets.display("db.host", &json!("h")), "\"h\"");
        assert!(
            !secrets
                .display("db.password", &json!("hunter2"))
                .contains("hunter2")
        );
    }
}
