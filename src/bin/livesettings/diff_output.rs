//! Printing per-key differences: a dry run's plan, and `diff`.

use livesettings::PlannedChange;
use serde_json::{Value, json};

/// `key: old → new`; `(absent)` for a key that is added, `(removed)` for
/// one that is removed.
pub fn line(change: &PlannedChange) -> String {
    let side = |value: &Option<Value>, missing: &str| match value {
        Some(value) => value.to_string(),
        None => missing.to_owned(),
    };
    format!(
        "{}: {} → {}",
        change.key,
        side(&change.old, "(absent)"),
        side(&change.new, "(removed)")
    )
}

/// `{"key":..,"change":"added"|"removed"|"changed","old":..,"new":..}`;
/// `old` is left out for an added key and `new` for a removed one (a JSON
/// `null` is a value).
pub fn object(change: &PlannedChange) -> Value {
    let kind = match (&change.old, &change.new) {
        (None, _) => "added",
        (_, None) => "removed",
        _ => "changed",
    };
    let mut object = json!({"key": change.key, "change": kind});
    if let Some(old) = &change.old {
        object["old"] = old.clone();
    }
    if let Some(new) = &change.new {
        object["new"] = new.clone();
    }
    object
}

/// One line per change, as text or JSON.
pub fn lines(changes: &[PlannedChange], as_json: bool) -> impl Iterator<Item = String> + '_ {
    changes.iter().map(move |change| {
        if as_json {
            object(change).to_string()
        } else {
            line(change)
        }
    })
}
