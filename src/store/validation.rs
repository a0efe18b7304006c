//! Registering validators: typed schemas, closures over a section's JSON,
//! and declarative rules (the engine judges with them, see
//! `engine/validators.rs`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::validators::{Check, check_once};
use crate::error::{Error, Result};
use crate::key::validate_prefix;
use crate::snapshot::Snapshot;
use crate::store::Store;

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
        // Checked and registered inside the engine: no write or pass can
        // slip in between.
        self.core.add_validators(|snapshot| {
            if let Err(reason) = check_once(&check, snapshot) {
                return Err(Error::Rejected {
                    key: prefix.to_owned(),
                    reason: format!("the stored section {reason}"),
                });
            }
            Ok(vec![(prefix.to_owned(), check)])
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
        self.core.add_validators(|snapshot| {
            if let Some(violation) = rules.check(snapshot).first() {
                return Err(Error::Rejected {
                    key: violation.key.clone(),
                    reason: format!("stored value {} is {}", violation.value, violation.reason),
                });
            }
            let mut checks = Vec::new();
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
                checks.push((prefix, check));
            }
            Ok(checks)
        })
    }

    /// The foreign writes currently refused by a validator (each cleared
    /// when a later write makes its section valid).
    pub fn rejected(&self) -> Vec<crate::Rejection> {
        self.core.rejections()
    }
}
