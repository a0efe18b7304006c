//! The full reload: every row read again and diffed against the snapshot,
//! for when the change log cannot be trusted.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use crate::engine::pass::{Pass, Position};
use crate::error::{Result, SqliteContext};
use crate::events::{Change, Event, Rejection, ReloadReason, Source};
use crate::key::validate_key;
use crate::snapshot::{Builder, Snapshot};
use crate::value::parse_stored_text;

/// Reads every row, keeps the last good value of undecodable ones, and diffs
/// against `current` so subscribers still get per-key events.
pub(crate) fn full_reload(
    conn: &Connection,
    path: &Path,
    current: &Snapshot,
    seq_max: i64,
    reason: ReloadReason,
    emit: bool,
) -> Result<Pass> {
    let started = std::time::Instant::now();
    if emit {
        log::info!("{}: full reload ({reason})", path.display());
    }
    let mut statement = conn
        .prepare_cached("SELECT key, value FROM settings")
        .context(path, "cannot read the settings")?;
    let mut rows = statement
        .query([])
        .context(path, "cannot read the settings")?;
    let mut events = vec![Event::Reloaded {
        reason,
        seq: seq_max,
    }];
    let mut refused: Vec<Rejection> = Vec::new();
    let mut pairs = Builder::with_capacity(current.len());
    while let Some(row) = rows.next().context(path, "cannot read the settings")? {
        // Borrow the row's text instead of copying it into Strings: a full
        // reload of 100 000 keys spends most of its time here.
        let key = row.get_ref(0).context(path, "cannot read a settings key")?;
        let key = match key.as_str() {
            Ok(key) => key,
            Err(_) => {
                // Only possible if someone bypassed the CHECK constraint.
                refused.push(Rejection {
                    seq: seq_max,
                    keys: vec![format!("{key:?}")],
                    reason: "a key that is not text".to_owned(),
                });
                continue;
            }
        };
        let text = row.get_ref(1).ok().and_then(|value| value.as_str().ok());
        let decoded = validate_key(key).and_then(|()| match text {
            Some(text) => parse_stored_text(key, text),
            None => Err(crate::Error::InvalidValue {
                key: key.to_owned(),
                reason: "the stored value is not text".to_owned(),
            }),
        });
        match decoded {
            Ok(value) => pairs.push(key, Arc::new(value)),
            Err(error) => {
                if let Some(previous) = current.entry(key) {
                    pairs.push(key, previous);
                }
                refused.push(Rejection {
                    seq: seq_max,
                    keys: vec![key.to_owned()],
                    reason: error.to_string(),
                });
            }
        }
    }
    drop(rows);
    drop(statement);
    // Reads come from memory: the page cache the scan filled (up to 2 MiB
    // at SQLite's default) would only hold pages nobody reads again soon.
    if let Err(error) = conn.execute_batch("PRAGMA shrink_memory") {
        log::debug!("{}: cannot shrink SQLite's cache: {error}", path.display());
    }
    let mut snapshot = pairs.finish(seq_max);
    for misplaced in misplaced_keys(&snapshot, current) {
        snapshot.put(Arc::from(misplaced.as_str()), None);
        refused.push(Rejection {
            seq: seq_max,
            keys: vec![misplaced.clone()],
            reason: format!(
                "'{misplaced}' and another stored key make one key both a value and a section"
            ),
        });
    }
    let rejected = refused.len();
    if emit {
        events.extend(refused.iter().cloned().map(Event::Rejected));
    }
    if !emit {
        // The initial load: nobody has seen anything yet, nothing to diff
        // (refused rows are kept in the pass for `rejected()`).
        events.clear();
    }
    if emit {
        events.extend(current.diff(&snapshot).map(|(key, old, new)| {
            Event::Change(Change {
                seq: seq_max,
                key: key.to_owned(),
                old: old.and_then(|_| current.entry(key)),
                new: new.and_then(|_| snapshot.entry(key)),
                source: Source::External,
            })
        }));
    }
    log::debug!(
        "{}: loaded {} keys in {:.1} ms",
        path.display(),
        snapshot.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(Pass {
        snapshot,
        events,
        touched: Vec::new(),
        reload: emit.then_some(reason),
        rejected,
        refused: Vec::new(),
        refused_all: Some(refused),
        position: Position::default(),
    })
}

/// The keys to leave out so that no key is both a value and a section:
/// where a stored leaf has keys below it, the side the snapshot already
/// serves stays (the leaf, or the section below it); otherwise the leaf
/// stays and the keys below it are refused.
///
/// One ordered walk: the keys below `p` sort in `[p + ".", p + "/")`, so a
/// stack holds the keys whose range the walk is still inside (a handful:
/// `a.b-x` sorts between `a.b` and `a.b.c`, so it cannot simply be the last
/// key seen).
fn misplaced_keys(entries: &Snapshot, current: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    for key in entries.keys("") {
        while let Some(top) = open.last() {
            let past = key.len() >= top.len()
                && key.as_bytes()[..top.len()] == *top.as_bytes()
                && key
                    .as_bytes()
                    .get(top.len())
                    .is_some_and(|&byte| byte > b'/');
            let after = !key.starts_with(*top) && key > *top;
            if past || after {
                open.pop();
            } else {
                break;
            }
        }
        if let Some(holder) = open.iter().find(|holder| {
            key.len() > holder.len()
                && key.starts_with(**holder)
                && key.as_bytes()[holder.len()] == b'.'
        }) {
            let section_served = !current.contains(holder)
                && current.keys(holder).any(|below| below.len() > holder.len());
            out.push(if section_served {
                (*holder).to_owned()
            } else {
                key.to_owned()
            });
        }
        open.push(key);
    }
    out.sort_unstable();
    out.dedup();
    out
}
