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

/// Deepest nesting of arrays and objects inside one value, in levels.
///
/// A level is one array or object: a scalar (`1`, `"x"`, `null`) has 0
/// levels, `[1]` and `{"a": 1}` have 1, `[[1]]` has 2 and `[{"a": [1]}]`
/// has 3; a value's depth is that of its deepest member. Values of at most
/// `MAX_VALUE_DEPTH` (64) levels are accepted, deeper ones refused with
/// [`Error::InvalidValue`]: by [`Store::set`](crate::Store::set), by
/// [`Store::merge`](crate::Store::merge) (where the objects of the
/// document above a leaf are sections, not levels of the leaf) and when a
/// value written to the database by another program is read back.
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

/// Checks a leaf's nesting depth (see [`MAX_VALUE_DEPTH`]) without
/// recursion.
pub(crate) fn check_value(key: &str, value: &Value) -> Result<()> {
    check_depth(key, value).map(|_| ())
}

/// Checks the depth like [`check_value`] and tells whether the value holds
/// a floating-point number (the only kind an oversized integer literal can
/// have become).
fn check_depth(key: &str, value: &Value) -> Result<bool> {
    // Each entry: a node and the number of arrays and objects around it.
    let mut stack = vec![(value, 0usize)];
    let mut has_float = false;
    while let Some((node, around)) = stack.pop() {
        match node {
            Value::Array(_) | Value::Object(_) => {
                let level = around + 1;
                if level > MAX_VALUE_DEPTH {
                    return Err(Error::InvalidValue {
                        key: shorten(key),
                        reason: format!("nested deeper than {MAX_VALUE_DEPTH} levels"),
                    });
                }
                match node {
                    Value::Array(items) => stack.extend(items.iter().map(|item| (item, level))),
                    Value::Object(map) => stack.extend(map.values().map(|item| (item, level))),
                    _ => {}
                }
            }
            Value::Number(number) => has_float |= number.is_f64(),
            _ => {}
        }
    }
    Ok(has_float)
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

/// Parses JSON text read from the database: at most [`MAX_VALUE_BYTES`],
/// [`MAX_VALUE_DEPTH`] levels, and no integer that a JSON number cannot
/// hold exactly (see [`parse_json_value`]).
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
    // Reasons name the key and the problem, never the stored text: they go
    // to logs and rejection reasons, and the key may be secret.
    let value: Value = serde_json::from_str(text).map_err(|error| Error::InvalidValue {
        key: shorten(key),
        reason: format!("not valid JSON ({error})"),
    })?;
    if check_depth(key, &value)? {
        check_integers(key, text).map_err(|error| match error {
            Error::InvalidValue { key, .. } => Error::InvalidValue {
                key,
                reason: "holds an integer that does not fit a 64-bit integer (i64 or u64), \
                         which JSON numbers would round"
                    .to_owned(),
            },
            other => other,
        })?;
    }
    Ok(value)
}

/// Parses JSON text given by a user — one value, or a document of settings
/// for [`Store::merge`](crate::Store::merge) — refusing integers
/// that would be rounded.
///
/// `serde_json` reads an integer literal beyond the range of `i64` and `u64`
/// (such as `12345678901234567890123`) as the nearest `f64`, so the value
/// stored would silently differ from the one written
/// (`1.2345678901234568e22`). Once parsed, such a number cannot be told
/// from a float written on purpose, so text from users must go through this
/// function rather than `serde_json::from_str` to be checked. Write an
/// integer that large as a string (`"12345678901234567890123"`) or as a
/// float (`1.2345678901234567e22`, `12345678901234567890123.0`) to store it
/// knowingly.
///
/// `key` is where the text will be written (`""` for a whole document); it
/// names the value in errors, extended by the object members leading to the
/// offending number. Size and depth are checked by the write itself.
///
/// # Errors
/// [`Error::Json`] when the text is not JSON, [`Error::InvalidValue`] for an
/// integer that does not fit `i64` or `u64`.
///
/// ```
/// let value = livesettings::parse_json_value("app.ids", "[1, 18446744073709551615]")?;
/// assert_eq!(value, serde_json::json!([1, u64::MAX]));
/// let error = livesettings::parse_json_value("app.id", "12345678901234567890123").unwrap_err();
/// assert!(error.to_string().contains("app.id"), "{error}");
/// # Ok::<(), livesettings::Error>(())
/// ```
pub fn parse_json_value(key: &str, text: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(text).map_err(|source| Error::Json {
        context: if key.is_empty() {
            "the document is not valid JSON".to_owned()
        } else {
            format!("the value for '{}' is not valid JSON", shorten(key))
        },
        source,
    })?;
    if has_float(&value) {
        check_integers(key, text)?;
    }
    Ok(value)
}

/// Whether any number in `value` is a float, without recursion.
fn has_float(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(node) = stack.pop() {
        match node {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            Value::Number(number) if number.is_f64() => return true,
            _ => {}
        }
    }
    false
}

/// Refuses the first integer literal of `text` (valid JSON) that fits
/// neither `i64` nor `u64`, naming the key the literal belongs to.
fn check_integers(key: &str, text: &str) -> Result<()> {
    let Some((names, literal)) = oversized_integer(text) else {
        return Ok(());
    };
    let mut full = key.to_owned();
    for name in names {
        full = join(&full, &name);
    }
    let rounded = literal
        .parse::<f64>()
        .map(|number| format!(" and would be stored rounded as {number:e}"))
        .unwrap_or_default();
    Err(Error::InvalidValue {
        key: shorten(&full),
        reason: format!(
            "the integer {} does not fit a 64-bit integer (i64 or u64){rounded}; \
             write it as a string (\"{0}\") or as a float (with a '.' or an exponent) \
             to store it on purpose",
            shorten(literal)
        ),
    })
}

/// Finds, in valid JSON text, an integer literal (no `.`, `e` or `E`) that
/// fits neither `i64` nor `u64`. Returns it with the object member names
/// leading to it, up to the first array (arrays are leaves, so the names
/// after the key are where the leaf holding the number is stored).
fn oversized_integer(text: &str) -> Option<(Vec<String>, &str)> {
    enum Frame {
        /// The byte range of the current member's name (with its quotes),
        /// and whether the next string is a name.
        Object(Option<(usize, usize)>, bool),
        Array,
    }
    let bytes = text.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'{' => frames.push(Frame::Object(None, true)),
            b'[' => frames.push(Frame::Array),
            b'}' | b']' => {
                frames.pop();
            }
            b',' | b':' => {
                if let Some(Frame::Object(_, expect_name)) = frames.last_mut() {
                    *expect_name = byte == b',';
                }
            }
            b'"' => {
                let start = at;
                at += 1;
                while let Some(&inside) = bytes.get(at) {
                    match inside {
                        b'"' => break,
                        // Escapes are ASCII: skip the escaped byte.
                        b'\\' => at += 2,
                        _ => at += 1,
                    }
                }
                if let Some(Frame::Object(name, true)) = frames.last_mut() {
                    *name = Some((start, at + 1));
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while bytes.get(at + 1).is_some_and(|next| {
                    matches!(next, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    at += 1;
                }
                let literal = text.get(start..at + 1)?;
                if !literal.contains(['.', 'e', 'E'])
                    && literal.parse::<i64>().is_err()
                    && literal.parse::<u64>().is_err()
                {
                    let names = frames
                        .iter()
                        .map_while(|frame| match frame {
                            Frame::Object(name, _) => Some(*name),
                            Frame::Array => None,
                        })
                        .map(|name| {
                            name.and_then(|(start, end)| text.get(start..end))
                                .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
                                .unwrap_or_default()
                        })
                        .collect();
                    return Some((names, literal));
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
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
