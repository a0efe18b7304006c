//! One pass's result and the applied position, and applying change-log
//! rows to a pass. A pass computes everything on the side; nothing is
//! visible until the engine publishes it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::change_log::{LogRow, RowPrint, decode_row};
use crate::events::{Change, Event, Rejection, ReloadReason, Source};
use crate::snapshot::Snapshot;
use serde_json::Value;

/// Where the snapshot stands in the change log: the one applied position.
#[derive(Clone, Debug, Default)]
pub(crate) struct Position {
    /// The last seq applied.
    pub(crate) seq: i64,
    /// The row at `seq` as it was applied, to recognise a log that was
    /// rewritten underneath (`None` when that row is gone or never existed).
    pub(crate) print: Option<RowPrint>,
    /// The schema version seen by the last pass.
    pub(crate) schema_version: Option<String>,
    /// Whether the initial load is done (it publishes no events).
    pub(crate) loaded: bool,
}

/// The result of a pass, to publish.
pub(crate) struct Pass {
    /// The candidate snapshot, at `position.seq`.
    pub(crate) snapshot: Snapshot,
    pub(crate) events: Vec<Event>,
    /// The keys of every log row the pass read, changed or not (empty for a
    /// reload, which touches everything).
    pub(crate) touched: Vec<(i64, Arc<str>)>,
    pub(crate) reload: Option<ReloadReason>,
    pub(crate) rejected: usize,
    /// Rows the store cannot apply (undecodable, or a key below a key that
    /// holds a value): `Some` refuses the key's current row, `None` clears
    /// an earlier refusal because a good row for the key arrived.
    pub(crate) refused: Vec<(String, Option<Rejection>)>,
    /// A full reload's complete list of refused rows (replaces the set).
    pub(crate) refused_all: Option<Vec<Rejection>>,
    /// The position after the pass.
    pub(crate) position: Position,
}

impl Pass {
    /// A pass that changes nothing (yet).
    pub(crate) fn unchanged(current: &Snapshot, position: &Position) -> Pass {
        Pass {
            snapshot: current.clone(),
            events: Vec::new(),
            touched: Vec::new(),
            reload: None,
            rejected: 0,
            refused: Vec::new(),
            refused_all: None,
            position: position.clone(),
        }
    }

    /// Whether the pass changed anything worth publishing.
    pub(crate) fn is_empty(&self, before: &Position) -> bool {
        self.events.is_empty() && self.position.seq == before.seq && self.reload.is_none()
    }

    /// How many keys foreign writers changed.
    pub(crate) fn external_changes(&self) -> usize {
        self.events
            .iter()
            .filter(
                |event| matches!(event, Event::Change(change) if change.source == Source::External),
            )
            .count()
    }
}

/// Applies the rows this store's write transaction just logged (after the
/// pass's foreign rows), inside the same transaction.
pub(crate) fn add_own_rows(pass: &mut Pass, rows: &[LogRow], session: &str) {
    let Some(last) = rows.last() else {
        return;
    };
    pass.position.seq = last.seq;
    pass.position.print = Some(last.print());
    pass.snapshot.set_seq(last.seq);
    apply_rows(pass, rows, session);
}

/// Applies log rows in order. Rows are coalesced per key within each run of
/// one source (this store's session, or anyone else), so each key yields one
/// event per local commit and one per batch of foreign commits, carrying the
/// seq of its last row in the run.
pub(crate) fn apply_rows(pass: &mut Pass, rows: &[LogRow], session: &str) {
    let is_local = |row: &LogRow| row.session.as_deref() == Some(session);
    // Keys given a value, to check their place once the whole batch is in
    // (`INSERT a.b.c; DELETE a.b` in one commit is fine): (seq, key, old).
    let mut placed: Vec<(i64, String, Option<Arc<Value>>)> = Vec::new();
    let mut run_start = 0;
    while run_start < rows.len() {
        let source_local = is_local(&rows[run_start]);
        let run_end = rows[run_start..]
            .iter()
            .position(|row| is_local(row) != source_local)
            .map_or(rows.len(), |len| run_start + len);
        let run = &rows[run_start..run_end];
        let mut last_write: HashMap<&str, usize> = HashMap::with_capacity(run.len());
        for (at, row) in run.iter().enumerate() {
            last_write.insert(row.key.as_str(), at);
        }
        let mut order: Vec<usize> = last_write.into_values().collect();
        order.sort_unstable();
        let source = if source_local {
            Source::Local
        } else {
            Source::External
        };
        for at in order {
            let row = &run[at];
            let new = match decode_row(row) {
                Ok(new) => {
                    pass.refused.push((row.key.clone(), None));
                    new
                }
                Err(reason) => {
                    log::warn!("rejected the write at seq {}: {reason}", row.seq);
                    let rejection = Rejection {
                        seq: row.seq,
                        keys: vec![row.key.clone()],
                        reason,
                    };
                    pass.rejected += 1;
                    pass.refused
                        .push((row.key.clone(), Some(rejection.clone())));
                    pass.events.push(Event::Rejected(rejection));
                    continue;
                }
            };
            let old = pass.snapshot.entry(&row.key);
            if old == new {
                continue;
            }
            let key: Arc<str> = Arc::from(row.key.as_str());
            pass.snapshot.put(Arc::clone(&key), new.clone());
            if new.is_some() {
                placed.push((row.seq, row.key.clone(), old.clone()));
            }
            pass.events.push(Event::Change(Change {
                seq: row.seq,
                key: row.key.clone(),
                old,
                new,
                source,
            }));
        }
        run_start = run_end;
    }
    refuse_misplaced(pass, placed);
    pass.touched.extend(
        rows.iter()
            .map(|row| (row.seq, Arc::from(row.key.as_str()))),
    );
}

/// Refuses the keys of a batch that ended up both a value and a section
/// (below a key that holds a value, or above keys): newest first, each put
/// back to what it was, its change turned into a rejection.
fn refuse_misplaced(pass: &mut Pass, mut placed: Vec<(i64, String, Option<Arc<Value>>)>) {
    placed.sort_unstable_by_key(|(seq, _, _)| std::cmp::Reverse(*seq));
    let mut refused_any = false;
    for (seq, key, old) in placed {
        let Some(reason) = misplaced(&pass.snapshot, &key) else {
            continue;
        };
        log::warn!("rejected the write at seq {seq}: {reason}");
        pass.snapshot.put(Arc::from(key.as_str()), old);
        pass.events
            .retain(|event| !matches!(event, Event::Change(change) if change.key == key && change.seq == seq));
        let rejection = Rejection {
            seq,
            keys: vec![key.clone()],
            reason,
        };
        pass.rejected += 1;
        pass.refused.push((key, Some(rejection.clone())));
        pass.events.push(Event::Rejected(rejection));
        refused_any = true;
    }
    if refused_any {
        pass.events.sort_by_key(Event::seq);
    }
}

/// Why `key` cannot hold a value in `snapshot`: a key above it holds one,
/// or keys below it make it a section (one key cannot be both). `None` when
/// it can.
pub(crate) fn misplaced(snapshot: &Snapshot, key: &str) -> Option<String> {
    if let Some(holder) = crate::key::ancestors(key).find(|ancestor| snapshot.contains(ancestor)) {
        return Some(format!(
            "'{key}' lies below '{holder}', which holds a value (a key cannot be both a value and a section)"
        ));
    }
    snapshot
        .keys(key)
        .find(|found| found.len() > key.len())
        .map(|below| {
            format!("'{key}' is a section (it has '{below}' below it), so it cannot hold a value")
        })
}
