//! Key rules: dotted keys such as `visualisation.graphs.logseq.physics.damping`.
//!
//! The same rules are enforced by a CHECK constraint in `sql/001_schema.sql`,
//! so the `sqlite3` shell cannot store a key the library cannot read.

use crate::error::{Error, Result, shorten};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Checks that `key` is a valid setting key.
///
/// A key is 1 to [`MAX_KEY_BYTES`] bytes of segments made of ASCII letters,
/// digits, `_` and `-`, separated by single dots.
///
/// # Errors
/// [`Error::InvalidKey`] naming the first problem found.
///
/// ```
/// assert!(livesettings::validate_key("visualisation.graphs.logseq.physics.damping").is_ok());
/// assert!(livesettings::validate_key("a..b").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidKey {
        key: shorten(key),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("a key cannot be empty".to_owned()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "a key is at most {MAX_KEY_BYTES} bytes, this one has {}",
            key.len()
        )));
    }
    let mut segment_start = 0;
    for (at, ch) in key.char_indices() {
        match ch {
            '.' if at == segment_start => {
                return Err(invalid(format!("empty segment at byte {at}")));
            }
            '.' => segment_start = at + 1,
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => {}
            other => {
                return Err(invalid(format!(
                    "character {:?} at byte {at} is not allowed (use letters, digits, '_', '-' and '.')",
                    other
                )));
            }
        }
    }
    if segment_start == key.len() {
        return Err(invalid("a key cannot end with '.'".to_owned()));
    }
    Ok(())
}

/// Checks a prefix: the empty prefix (the whole tree) or a valid key.
///
/// # Errors
/// [`Error::InvalidKey`] when the prefix is neither.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        Ok(())
    } else {
        validate_key(prefix)
    }
}

/// Whether `key` is `prefix` itself or lies in the section below it.
/// The empty prefix covers every key.
pub(crate) fn is_under(prefix: &str, key: &str) -> bool {
    prefix.is_empty()
        || (key.starts_with(prefix)
            && (key.len() == prefix.len() || key.as_bytes()[prefix.len()] == b'.'))
}

/// The key relative to `prefix` (`a.b.c` under `a` is `b.c`); the key itself
/// when the prefix is empty; empty when the key is the prefix.
pub(crate) fn relative<'k>(prefix: &str, key: &'k str) -> &'k str {
    if prefix.is_empty() {
        key
    } else if key.len() == prefix.len() {
        ""
    } else {
        &key[prefix.len() + 1..]
    }
}

/// Joins a prefix and a relative key.
pub(crate) fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{rest}"),
    }
}

/// The proper ancestors of a key, nearest last: `a.b.c` gives `a`, `a.b`.
pub(crate) fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('.').map(move |(at, _)| &key[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fixture_style_keys() {
        for key in [
            "a",
            "visualisation.graphs.logseq.physics.damping",
            "x-y_z.0.A9",
            &"k".repeat(MAX_KEY_BYTES),
        ] {
            validate_key(key).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_keys_with_the_reason() {
        for (key, needle) in [
            ("", "empty"),
            (".a", "empty segment"),
            ("a..b", "empty segment"),
            ("a.", "end with"),
            ("a b", "' '"),
            ("a'; DROP TABLE settings; --", "'\\''"),
            ("tab\there", "'\\t'"),
            ("é", "'é'"),
        ] {
            let message = validate_key(key).unwrap_err().to_string();
            assert!(message.contains(needle), "{key:?}: {message}");
        }
        let long = "k".repeat(10_000);
        let message = validate_key(&long).unwrap_err().to_string();
        assert!(message.contains("at most 512 bytes"), "{message}");
        assert!(message.len() < 300, "message must not echo 10 000 bytes");
    }

    #[test]
    fn prefix_relations_respect_segment_boundaries() {
        assert!(is_under("a.b", "a.b"));
        assert!(is_under("a.b", "a.b.c"));
        assert!(!is_under("a.b", "a.bc"));
        assert!(!is_under("a.b", "a.b-c"));
        assert!(is_under("", "anything"));
        assert_eq!(relative("a.b", "a.b.c.d"), "c.d");
        assert_eq!(relative("", "a.b"), "a.b");
        assert_eq!(relative("a.b", "a.b"), "");
        assert_eq!(join("a", "b.c"), "a.b.c");
        assert_eq!(join("", "b"), "b");
        assert_eq!(ancestors("a.b.c").collect::<Vec<_>>(), ["a", "a.b"]);
    }
}
