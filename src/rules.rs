//! Declarative per-key rules, loaded from a small JSON Schema-like file, for
//! the CLI's `check` and for validating from configuration.
//!
//! ```json
//! {"rules": [
//!   {"keys": "visualisation.graphs.*.physics.damping", "type": "number", "minimum": 0, "maximum": 1},
//!   {"keys": "visualisation.rendering.context", "enum": ["desktop", "ar"]},
//!   {"keys": "system.**", "required": false, "type": "boolean"}
//! ]}
//! ```
//!
//! `keys` is a dotted pattern where `*` matches one segment and `**` one or
//! more. `type` is one of `number`, `integer`, `string`, `boolean`, `array`,
//! `null`; `minimum` / `maximum` bound numbers; `enum` lists allowed values.
//! `"secret": true` marks the matching keys (and the keys below them) as
//! secret: outputs redact their values and logs never show them (see
//! [`crate::secrets`]); a rule may be secret only, with no constraint:
//! `{"keys": "db.password", "secret": true}`.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;

/// A set of per-key rules.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rules {
    /// The rules, checked in order.
    pub rules: Vec<Rule>,
}

/// One rule: a key pattern and the constraints on matching values.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Rule {
    /// Dotted pattern: `*` is one segment, `**` one or more.
    pub keys: String,
    /// The JSON type matching values must have.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Smallest allowed number.
    pub minimum: Option<f64>,
    /// Largest allowed number.
    pub maximum: Option<f64>,
    /// The allowed values.
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    /// Whether the matching keys hold secrets (see [`crate::secrets`]).
    #[serde(default)]
    pub secret: bool,
}

/// One value that breaks a rule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The value found.
    pub value: Value,
    /// The broken constraint.
    pub reason: String,
}

impl Rules {
    /// Parses a rules document.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON or unknown fields,
    /// [`Error::InvalidOption`] for an unknown `type`, or a secret rule
    /// whose `keys` is not a key pattern.
    pub fn from_json(text: &str) -> Result<Rules> {
        let rules: Rules = serde_json::from_str(text).map_err(|source| Error::Json {
            context: "cannot read the rules".to_owned(),
            source,
        })?;
        for rule in &rules.rules {
            if rule.secret {
                // A secret pattern that matches nothing would hide nothing.
                crate::secrets::Secrets::new().add(&rule.keys)?;
            }
            if let Some(kind) = &rule.kind {
                if !matches!(
                    kind.as_str(),
                    "number" | "integer" | "string" | "boolean" | "array" | "null"
                ) {
                    return Err(Error::InvalidOption {
                        option: "type",
                        reason: format!("unknown type '{kind}' in the rule for '{}'", rule.keys),
                    });
                }
            }
        }
        Ok(rules)
    }

    /// Every violation in `snapshot`, in key order.
    pub fn check(&self, snapshot: &Snapshot) -> Vec<Violation> {
        self.rules
            .iter()
            .flat_map(|rule| rule.violations(snapshot))
            .collect()
    }
}

impl Rule {
    /// The literal part of the pattern before its first wildcard: only keys
    /// below it can match.
    pub fn fixed_prefix(&self) -> String {
        self.keys
            .split('.')
            .take_while(|segment| !segment.contains('*'))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Whether `key` matches the pattern.
    pub fn matches(&self, key: &str) -> bool {
        let pattern: Vec<&str> = self.keys.split('.').collect();
        let key: Vec<&str> = key.split('.').collect();
        segments_match(&pattern, &key)
    }

    /// The violations of this rule in `snapshot`.
    pub fn violations(&self, snapshot: &Snapshot) -> Vec<Violation> {
        let prefix = self.fixed_prefix();
        snapshot
            .entries(&prefix)
            .filter(|(key, _)| self.matches(key))
            .filter_map(|(key, value)| {
                self.problem(value).map(|reason| Violation {
                    key: key.to_owned(),
                    value: value.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Why `value` breaks this rule, or `None` (the key is not checked
    /// against the pattern).
    pub(crate) fn problem(&self, value: &Value) -> Option<String> {
        if let Some(kind) = &self.kind {
            let fits = match kind.as_str() {
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                _ => value.is_null(),
            };
            if !fits {
                return Some(format!("expected {kind}"));
            }
        }
        if let Some(number) = value.as_f64() {
            if self.minimum.is_some_and(|minimum| number < minimum) {
                return Some(format!(
                    "below the minimum {}",
                    self.minimum.unwrap_or_default()
                ));
            }
            if self.maximum.is_some_and(|maximum| number > maximum) {
                return Some(format!(
                    "above the maximum {}",
                    self.maximum.unwrap_or_default()
                ));
            }
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(value) {
                return Some(format!("not one of {}", Value::Array(allowed.clone())));
            }
        }
        None
    }

    /// Whether the rule constrains values at all (a secret-only rule does
    /// not).
    pub(crate) fn constrains(&self) -> bool {
        self.kind.is_some()
            || self.minimum.is_some()
            || self.maximum.is_some()
            || self.allowed.is_some()
    }
}

pub(crate) fn segments_match(pattern: &[&str], key: &[&str]) -> bool {
    match (pattern.first(), key.first()) {
        (None, None) => true,
        (Some(&"**"), Some(_)) => {
            (1..=key.len()).any(|taken| segments_match(&pattern[1..], &key[taken..]))
        }
        (Some(&segment), Some(&actual)) if segment == "*" || segment == actual => {
            segments_match(&pattern[1..], &key[1..])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn patterns_and_constraints() {
        let rules = Rules::from_json(
            r#"{"rules": [
                {"keys": "g.*.damping", "type": "number", "minimum": 0, "maximum": 1},
                {"keys": "ctx", "enum": ["desktop", "ar"]},
                {"keys": "flags.**", "type": "boolean"}
            ]}"#,
        )
        .unwrap();
        let snapshot = Snapshot::new(
            1,
            [
                ("g.a.damping", json!(0.5)),
                ("g.b.damping", json!(1.5)),
                ("g.b.other", json!("x")),
                ("ctx", json!("vr")),
                ("flags.x.y", json!(1)),
            ]
            .into_iter()
            .map(|(k, v)| (Arc::<str>::from(k), Arc::new(v)))
            .collect::<Vec<_>>(),
        );
        let keys: Vec<String> = rules.check(&snapshot).into_iter().map(|v| v.key).collect();
        assert_eq!(keys, ["g.b.damping", "ctx", "flags.x.y"]);
        assert!(Rules::from_json(r#"{"rules": [{"keys": "a", "type": "float"}]}"#).is_err());
        assert!(Rules::from_json(r#"{"rules": [{"keys": "a", "max": 1}]}"#).is_err());
    }

    #[test]
    fn a_rule_may_be_secret_only() {
        let rules =
            Rules::from_json(r#"{"rules": [{"keys": "db.password", "secret": true}]}"#).unwrap();
        assert!(rules.rules[0].secret && !rules.rules[0].constrains());
        assert!(Rules::from_json(r#"{"rules": [{"keys": "a b", "secret": true}]}"#).is_err());
    }
}
