//! What a section is served as when a validator is registered over stored
//! values it refuses: start-up must not fail on a bad edit.
//!
//! In this order, the first that the validator accepts:
//! 1. **the newest logged state**: the change log is undone newest row
//!    first (for per-key rules, each refused key's own rows; for a section
//!    validator, the section's rows), at most [`SEARCH_ROWS`] rows back;
//! 2. **the registered defaults** (`Options::with_defaults`, `with_defaults_of`) for the
//!    section or key;
//! 3. **withheld**: the refused keys (per-key rules) or the whole section
//!    are left out of the snapshot.
//!
//! The database is not changed: the refusal is pending, reported by
//! `rejected()` and a `Rejected` event, and cleared by the first write that
//! makes the section valid.

use std::path::Path;

use rusqlite::Connection;

use crate::db::change_log::UNDER_PREFIX;
use crate::engine::validators::{KeyCheck, Registration, check_once};
use crate::error::{Result, SqliteContext};
use crate::layers::Layers;
use crate::secrets::SharedSecrets;
use crate::snapshot::Snapshot;
use crate::value::parse_stored_text;

/// How many change-log rows a registration reads back, per refused key or
/// per section, looking for a state the validator accepts.
pub(crate) const SEARCH_ROWS: usize = 1000;

/// The snapshot with the refused section served from a state the validator
/// accepts, how (for the rejection's reason), and the seq of the newest
/// refused row.
pub(crate) struct Served {
    pub(crate) snapshot: Snapshot,
    pub(crate) how: String,
    pub(crate) refused_seq: Option<i64>,
}

/// Finds what to serve for `registration`, whose check refuses `current`.
/// `conn` reads the log (`None` when the file is gone: only defaults or
/// withholding remain).
pub(crate) fn serve(
    conn: Option<&Connection>,
    path: &Path,
    current: &Snapshot,
    registration: &Registration,
    layers: &Layers,
    secrets: &SharedSecrets,
) -> Result<Served> {
    match &registration.per_key {
        Some(per_key) => serve_keys(conn, path, current, registration, per_key, layers, secrets),
        None => serve_section(conn, path, current, registration, layers),
    }
}

fn serve_keys(
    conn: Option<&Connection>,
    path: &Path,
    current: &Snapshot,
    registration: &Registration,
    per_key: &KeyCheck,
    layers: &Layers,
    secrets: &SharedSecrets,
) -> Result<Served> {
    let refused: Vec<String> = current
        .entries(&registration.prefix)
        .filter(|(key, value)| per_key(key, value).is_some())
        .map(|(key, _)| key.to_owned())
        .collect();
    let mut snapshot = current.clone();
    let mut how = Vec::new();
    let mut refused_seq = None;
    for key in refused {
        let rows = match conn {
            Some(conn) => key_rows(conn, path, &key, current.seq())?,
            None => Vec::new(),
        };
        refused_seq = refused_seq.max(rows.first().map(|(seq, _)| *seq));
        let logged = rows.into_iter().find_map(|(seq, old)| {
            let value = match old {
                None => None,
                Some(text) => Some(parse_stored_text(&key, &text).ok()?),
            };
            let accepted = value
                .as_ref()
                .is_none_or(|value| per_key(&key, value).is_none());
            accepted.then_some((seq, value))
        });
        let (value, served) = match logged {
            Some((seq, Some(value))) => {
                let served = format!(
                    "'{key}' = {} (its value as of seq {})",
                    secrets.display(&key, &value),
                    seq - 1
                );
                (Some(value), served)
            }
            Some((seq, None)) => (None, format!("'{key}' absent (as of seq {})", seq - 1)),
            // Left out of the database's view: readers see the default
            // through the defaults layer, if there is one.
            None => match layers.defaults.get(&key) {
                Some(value) => {
                    let served = format!(
                        "'{key}' = {} from the defaults",
                        secrets.display(&key, value)
                    );
                    (None, served)
                }
                None => (None, format!("'{key}' withheld (no accepted value logged)")),
            },
        };
        snapshot = snapshot.with_change(&key, value)?;
        how.push(served);
    }
    Ok(Served {
        snapshot,
        how: format!("serving {}", how.join(", ")),
        refused_seq,
    })
}

fn serve_section(
    conn: Option<&Connection>,
    path: &Path,
    current: &Snapshot,
    registration: &Registration,
    layers: &Layers,
) -> Result<Served> {
    let prefix = registration.prefix.as_str();
    let rows = match conn {
        Some(conn) => section_rows(conn, path, prefix, current.seq())?,
        None => Vec::new(),
    };
    let refused_seq = rows.first().map(|(seq, _, _)| *seq);
    let mut candidate = current.clone();
    for (seq, key, old) in rows {
        let value = match old {
            None => None,
            Some(text) => match parse_stored_text(&key, &text) {
                Ok(value) => Some(value),
                // An older value no reader could use: that state is not one
                // to serve; keep undoing.
                Err(_) => continue,
            },
        };
        let Ok(next) = candidate.with_change(&key, value) else {
            continue;
        };
        candidate = next;
        if candidate.keys(prefix).next().is_none() {
            // Undone to nothing stored: that is the withheld state below.
            break;
        }
        if check_once(&registration.check, &candidate, layers).is_ok() {
            return Ok(Served {
                snapshot: candidate,
                how: format!("serving the section as of seq {}", seq - 1),
                refused_seq,
            });
        }
    }
    // Left out of the database's view: readers see the section's defaults
    // through the defaults layer, if it has any.
    let candidate = current.with_section(prefix, Vec::new());
    let has_defaults = layers
        .defaults
        .keys()
        .any(|key| crate::key::is_under(prefix, key));
    let how = if has_defaults && check_once(&registration.check, &candidate, layers).is_ok() {
        "serving the section from the defaults".to_owned()
    } else {
        format!(
            "the section is withheld (no state within its newest {SEARCH_ROWS} logged changes, \
             nor the defaults, passes)"
        )
    };
    Ok(Served {
        snapshot: candidate,
        how,
        refused_seq,
    })
}

/// The key's rows at or before `upto`, newest first: (seq, old value).
fn key_rows(
    conn: &Connection,
    path: &Path,
    key: &str,
    upto: i64,
) -> Result<Vec<(i64, Option<String>)>> {
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, old FROM settings_log WHERE key = ?1 AND seq <= ?2 \
             ORDER BY seq DESC LIMIT ?3",
        )
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map((key, upto, SEARCH_ROWS as i64), |row| {
            Ok((row.get(0)?, row.get::<_, Option<String>>(1).ok().flatten()))
        })
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}

/// The section's rows at or before `upto`, newest first: (seq, key, old).
fn section_rows(
    conn: &Connection,
    path: &Path,
    prefix: &str,
    upto: i64,
) -> Result<Vec<(i64, String, Option<String>)>> {
    let sql = format!(
        "SELECT seq, key, old FROM settings_log WHERE {UNDER_PREFIX} AND seq <= ?2 \
         ORDER BY seq DESC LIMIT ?3"
    );
    let mut statement = conn
        .prepare_cached(&sql)
        .context(path, "cannot read the change log")?;
    let rows = statement
        .query_map((prefix, upto, SEARCH_ROWS as i64), |row| {
            Ok((
                row.get(0)?,
                row.get::<_, Option<String>>(1)
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                row.get::<_, Option<String>>(2).ok().flatten(),
            ))
        })
        .context(path, "cannot read the change log")?;
    rows.collect::<rusqlite::Result<_>>()
        .context(path, "cannot read the change log")
}
