//! Flattening nested JSON into dotted keys and rebuilding it.
//!
//! Objects are sections and become dotted keys; everything else (numbers,
//! strings, booleans, null, arrays) is a leaf. An empty object holds no leaf
//! and so disappears when flattened.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result, shorten};
use crate::key::{join, validate_key};

/// Largest value, in bytes of JSON text.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays and objects inside one value.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Flattens a nested JSON object into sorted `(dotted key, leaf)` pairs, each
/// key prefixed by `prefix` (which may be empty). Object keys may themselves
/// contain dots.
///
/// # Errors
/// [`Error::InvalidValue`] when `tree` is not an object (or a leaf under a
/// non-empty prefix is too large), [`Error::InvalidKey`] for a bad key, and
/// [`Error::Conflict`] when one key is both a leaf and a section
/// (`{"a": 1, "a.b": 2}`).
pub fn flatten(prefix: &str, tree: &Value) -> Result<BTreeMap<String, Value>> {
    let Value::Object(map) = tree else {
        return Err(Error::InvalidValue {
            key: prefix.to_owned(),
            reason: format!("expected a JSON object of settings, found {}", kind(tree)),
        });
    };
    let mut leaves = BTreeMap::new();
    let mut stack: Vec<(String, &Map<String, Value>)> = vec![(prefix.to_owned(), map)];
    while let Some((base, map)) = stack.pop() {
        for (name, value) in map {
            let key = join(&base, name);
            match value {
                Value::Object(child) => stack.push((key, child)),
                leaf => {
                    validate_key(&key)?;
                    check_value(&key, leaf)?;
                    if leaves.insert(key.clone(), leaf.clone()).is_some() {
                        return Err(Error::Conflict {
                            key,
                            reason: "the key appears twice in the document".to_owned(),
                        });
                    }
                }
            }
        }
    }
    check_no_leaf_is_a_section(leaves.keys().map(String::as_str))?;
    Ok(leaves)
}

/// Fails when a key in the sorted sequence is also the section of a later one.
pub(crate) fn check_no_leaf_is_a_section<'k>(sorted: impl Iterator<Item = &'k str>) -> Result<()> {
    // In sorted order a section's members do not always follow it directly
    // (`a.b-c` sorts between `a.b` and `a.b.c`), so keep the open leaves on a
    // stack of ancestors.
    let mut open: Vec<&str> = Vec::new();
    for key in sorted {
        while let Some(last) = open.last() {
            if key.len() > last.len() && key.starts_with(last) && key.as_bytes()[last.len()] == b'.'
            {
                return Err(Error::Conflict {
                    key: (*last).to_owned(),
                    reason: format!("it holds a value and also the section of '{key}'"),
                });
            }
            if key.starts_with(last) {
                break;
            }
            open.pop();
        }
        open.push(key);
    }
    Ok(())
}

/// Rebuilds a nested object from `(relative key, leaf)` pairs. A pair with an
/// empty relative key is the section's own value, allowed only alone.
///
/// # Errors
/// [`Error::Conflict`] when one key is both a leaf and a section.
pub fn unflatten<'a>(
    prefix: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Result<Value> {
    let mut root = Map::new();
    for (relative, value) in entries {
        if relative.is_empty() {
            return Err(Error::Conflict {
                key: prefix.to_owned(),
                reason: "it holds a value and also a section".to_owned(),
            });
        }
        let mut node = &mut root;
        let mut segments = relative.split('.').peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                if node.insert(segment.to_owned(), value.clone()).is_some() {
                    return Err(conflict_at(prefix, relative));
                }
                break;
            }
            let child = node
                .entry(segment.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match child {
                Value::Object(map) => node = map,
                _ => return Err(conflict_at(prefix, relative)),
            }
        }
    }
    Ok(Value::Object(root))
}

fn conflict_at(prefix: &str, relative: &str) -> Error {
    Error::Conflict {
        key: join(prefix, relative),
        reason: "a key on its path holds a value and also a section".to_owned(),
    }
}

/// Checks a leaf's size and nesting depth without recursion.
pub(crate) fn check_value(key: &str, value: &Value) -> Result<()> {
    let mut stack = vec![(value, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return Err(Error::InvalidValue {
                key: shorten(key),
                reason: format!("nested deeper than {MAX_VALUE_DEPTH} levels"),
            });
        }
        match node {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|item| (item, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Serializes a checked leaf to the JSON text stored in the `value` column.
pub(crate) fn to_stored_text(key: &str, value: &Value) -> Result<String> {
    check_value(key, value)?;
    let text = value.to_string();
    if text.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidValue {
            key: shorten(key),
            reason: format!(
                "a value is at most {MAX_VALUE_BYTES} bytes of JSON, this one has {}",
                text.len()
            ),
        });
    }
    Ok(text)
}

/// Parses JSON text read from the database or given by a user.
pub(crate) fn parse_stored_text(key: &str, text: &str) -> Result<Value> {
    if text.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidValue {
            key: shorten(key),
            reason: format!(
                "{} bytes of JSON exceed the {MAX_VALUE_BYTES}-byte limit",
                text.len()
            ),
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|error| Error::InvalidValue {
        key: shorten(key),
        reason: format!("not valid JSON ({error}): {}", shorten(text)),
    })?;
    check_value(key, &value)?;
    Ok(value)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_then_unflatten_round_trips() {
        let tree = json!({"a": {"b": 1, "c": {"d": [1, 2], "e": "x"}}, "f": null});
        let flat = flatten("", &tree).unwrap();
        assert_eq!(
            flat.keys().collect::<Vec<_>>(),
            ["a.b", "a.c.d", "a.c.e", "f"]
        );
        let rebuilt = unflatten("", flat.iter().map(|(k, v)| (k.as_str(), v))).unwrap();
        assert_eq!(rebuilt, tree);
    }

    #[test]
    fn dotted_object_keys_are_split_and_conflicts_caught() {
        let flat = flatten("p", &json!({"a.b": 1})).unwrap();
        assert!(flat.contains_key("p.a.b"));
        let error = flatten("", &json!({"a": 1, "a.b": 2})).unwrap_err();
        assert!(
            matches!(error, Error::Conflict { ref key, .. } if key == "a"),
            "{error}"
        );
        let error = flatten("", &json!({"a": {"b": 1}, "a.b": 2})).unwrap_err();
        assert!(matches!(error, Error::Conflict { .. }), "{error}");
        let error = flatten("", &json!({"a": 1, "a-b": 3, "a.c": 2})).unwrap_err();
        assert!(matches!(error, Error::Conflict { .. }), "{error}");
    }

    #[test]
    fn non_objects_and_bad_keys_are_refused() {
        assert!(matches!(
            flatten("", &json!([1])),
            Err(Error::InvalidValue { .. })
        ));
        assert!(matches!(
            flatten("", &json!({"a b": 1})),
            Err(Error::InvalidKey { .. })
        ));
    }

    #[test]
    fn deep_and_large_values_are_refused() {
        let mut deep = json!(1);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(matches!(
            check_value("k", &deep),
            Err(Error::InvalidValue { .. })
        ));
        // Drop iteratively so the test does not overflow the stack.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
        let big = Value::String("x".repeat(MAX_VALUE_BYTES + 1));
        assert!(matches!(
            to_stored_text("k", &big),
            Err(Error::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_stored_text("k", "{bad"),
            Err(Error::InvalidValue { .. })
        ));
    }
}
