//! Registering validators: typed schemas, closures over a section's JSON,
//! and declarative rules (the engine judges with them, see
//! `engine/validators.rs`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::validators::{Check, KeyCheck, Registration};
use crate::error::Result;
use crate::key::validate_prefix;
use crate::snapshot::Snapshot;
use crate::store::Store;

impl Store {
    /// Registers a typed schema and a validator for the section under
    /// `prefix`: from now on a write that leaves the section undecodable as
    /// `T`, or that `validate` refuses, is not applied (see the README).
    ///
    /// Registering over stored values the validator refuses does not fail:
    /// the section is served from the newest logged state it accepts, else
    /// from the defaults given to [`Options::with_defaults`](crate::Options::with_defaults),
    /// else withheld (see the README's "Bad stored data at start-up");
    /// [`Store::rejected`] and a [`Event::Rejected`](crate::Event::Rejected)
    /// say so until a write makes the section valid.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for a malformed prefix, or an error reading the
    /// change log.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Range { min: f64, max: f64 }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.merge(&serde_json::json!({"range": {"min": 0.0, "max": 1.0}}))?;
    /// store.add_validator::<Range>("range", |range| {
    ///     if range.min <= range.max { Ok(()) } else { Err("needs min <= max".into()) }
    /// })?;
    /// assert!(store.set("range.min", &5.0).is_err());
    /// assert_eq!(store.get::<f64>("range.min")?, Some(0.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_validator<T: DeserializeOwned + 'static>(
        &self,
        prefix: &str,
        validate: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<()> {
        validate_prefix(prefix)?;
        let owned = prefix.to_owned();
        let secrets = std::sync::Arc::clone(&self.core.secrets);
        let check: Check = Box::new(move |snapshot: &Snapshot| {
            let section = snapshot.section::<T>(&owned).map_err(|error| {
                // serde's message can quote the refused value.
                if snapshot.keys(&owned).any(|key| secrets.is_secret(key)) {
                    "does not fit its schema (the message is withheld: the section holds secret keys)".to_owned()
                } else {
                    format!("does not fit its schema: {error}")
                }
            })?;
            validate(&section).map_err(|reason| format!("is invalid: {reason}"))
        });
        self.core.add_validators(vec![Registration {
            prefix: prefix.to_owned(),
            check,
            per_key: None,
        }])
    }

    /// Registers a validator over the raw JSON of the section under
    /// `prefix` (the nested object, or the value when `prefix` is a key).
    ///
    /// # Errors
    /// As [`Store::add_validator`].
    pub fn add_json_validator<F>(&self, prefix: &str, validate: F) -> Result<()>
    where
        F: Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    {
        self.add_validator::<Value>(prefix, validate)
    }

    /// Registers declarative [`Rules`](crate::Rules): each rule validates
    /// the keys it matches, as [`Store::add_validator`] does for a section,
    /// and a rule marked `"secret": true` marks them secret, as
    /// [`Store::mark_secret`] does.
    ///
    /// Stored values a rule refuses do not make this fail: each refused
    /// key is served from its newest logged value the rule accepts, else
    /// from the defaults, else withheld, and reported as for
    /// [`Store::add_validator`].
    ///
    /// # Errors
    /// An error reading the change log;
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) for a secret
    /// rule whose pattern is malformed.
    pub fn add_rules(&self, rules: &crate::Rules) -> Result<()> {
        // Secrets first: registering a validator may log refused values.
        for rule in rules.rules.iter().filter(|rule| rule.secret) {
            self.mark_secret(&rule.keys)?;
        }
        let registrations = rules
            .rules
            .iter()
            .filter(|rule| rule.constrains())
            .map(|rule| {
                let prefix = rule.fixed_prefix();
                let for_check = rule.clone();
                let secrets = std::sync::Arc::clone(&self.core.secrets);
                let check: Check = Box::new(move |snapshot: &Snapshot| {
                    match for_check.violations(snapshot).first() {
                        None => Ok(()),
                        Some(violation) => Err(format!(
                            "has '{}' = {}: {}",
                            violation.key,
                            secrets.display(&violation.key, &violation.value),
                            violation.reason
                        )),
                    }
                });
                let for_keys = rule.clone();
                let per_key: KeyCheck = Box::new(move |key: &str, value: &Value| {
                    if for_keys.matches(key) {
                        for_keys
                            .problem(value)
                            .map(|problem| format!("{problem} (rule for '{}')", for_keys.keys))
                    } else {
                        None
                    }
                });
                Registration {
                    prefix,
                    check,
                    per_key: Some(per_key),
                }
            })
            .collect();
        self.core.add_validators(registrations)
    }

    /// The foreign writes currently refused by a validator (each cleared
    /// when a later write makes its section valid).
    pub fn rejected(&self) -> Vec<crate::Rejection> {
        self.core.rejections()
    }
}
