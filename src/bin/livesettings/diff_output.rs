//! Printing per-key differences: a dry run's plan, and `diff`.

use livesettings::{PlannedChange, Secrets};
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

/// One line per change, as text or JSON, secret values redacted.
pub fn lines<'c>(
    changes: &'c [PlannedChange],
    as_json: bool,
    secrets: &'c Secrets,
) -> impl Iterator<Item = String> + 'c {
    changes.iter().map(move |change| {
        let mut shown = change.clone();
        shown.old = secrets.optional(&change.key, change.old.as_ref());
        shown.new = secrets.optional(&change.key, change.new.as_ref());
        if as_json {
            object(&shown).to_string()
        } else {
            line(&shown)
        }
    })
}
