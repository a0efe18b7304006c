//! Printing: the `watch` loop and its line formats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::select;
use livesettings::{Change, Error, Event, HistoryEntry, Resumed, Secrets, Snapshot, Store};
use serde_json::{Value, json};

use crate::failure::{Failure, out as line};

/// Prints every event under `prefix` until Ctrl-C or SIGTERM, then closes the
/// store (joining its watcher) and returns.
/// With `commits`, one event (one JSON line) per commit. The values of
/// keys `secrets` holds are printed redacted, in every kind of line.
pub fn watch(
    store: Store,
    prefix: &str,
    as_json: bool,
    from: Option<i64>,
    commits: bool,
    secrets: &Secrets,
) -> Result<(), Failure> {
    // Replayed changes print the time they were committed at.
    let mut replayed = Replayed::default();
    let subscribe = |prefix: &str| {
        if commits {
            store.subscribe_commits_with_snapshot(prefix)
        } else {
            store.subscribe_with_snapshot(prefix)
        }
    };
    let (events, snapshot) = match from {
        None => {
            let (snapshot, events) = subscribe(prefix)?;
            (events, snapshot)
        }
        Some(seq) => match store.subscribe_after(prefix, seq)? {
            Resumed::Replayed(events) => {
                let snapshot = store.snapshot();
                if !as_json {
                    replayed = Replayed::read(&store, prefix, seq, snapshot.seq(), events.len())?;
                }
                (events, snapshot)
            }
            Resumed::Compacted {
                oldest,
                snapshot,
                events,
            } => {
                // The documented recovery: the full state, then live events.
                let note = format!(
                    "the log was pruned: seq {seq} is before the oldest kept ({oldest}); printing the full state first"
                );
                log::warn!("{note}");
                for (key, value) in snapshot.entries(prefix) {
                    let value = &secrets.value(key, value);
                    let text = if as_json {
                        json!({"event": "state", "seq": snapshot.seq(), "key": key, "value": value})
                            .to_string()
                    } else {
                        format!("{key} = {value}")
                    };
                    line(&text)?;
                }
                (events, snapshot)
            }
        },
    };
    let (interrupt, interrupted) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = interrupt.try_send(());
    })
    .map_err(|error| Error::Io {
        context: "cannot install the Ctrl-C handler".to_owned(),
        source: std::io::Error::other(error),
    })?;
    let keys = snapshot.keys(prefix).count();
    if as_json {
        line(&json!({"event": "ready", "keys": keys, "seq": snapshot.seq()}).to_string())?;
    } else {
        line(&format!(
            "watching {} ({keys} keys under '{prefix}', seq {}); Ctrl-C to stop",
            store.path().display(),
            snapshot.seq()
        ))?;
    }
    // What the store refuses already (values it cannot read, keys below a
    // key that holds a value, sections a rule refuses), reported once.
    for rejection in store.rejected() {
        if rejection.keys.iter().any(|key| is_at_or_below(prefix, key)) {
            let event = Event::Rejected(rejection);
            for text in if as_json {
                json_lines(&event)
            } else {
                human_lines(&event, None)
            } {
                line(&text)?;
            }
        }
    }
    // What this watch has printed, to resynchronize from after a lag.
    let mut view = printed_state(&snapshot, prefix);
    drop(snapshot);
    let mut events = events;
    loop {
        select! {
            recv(interrupted) -> _ => break,
            recv(events) -> event => {
                let Ok(event) = event else { break };
                let changes = match &event {
                    Event::Change(change) => std::slice::from_ref(change),
                    Event::Commit(set) => set.changes.as_slice(),
                    _ => &[],
                };
                for change in changes {
                    match change.new_value() {
                        Some(value) => view.insert(change.key.clone(), value.clone()),
                        None => view.remove(&change.key),
                    };
                }
                let shown = secrets.event(&event);
                let texts = if as_json {
                    json_lines(&shown)
                } else {
                    human_lines(&shown, replayed.at(event.seq()))
                };
                for text in texts {
                    line(&text)?;
                }
                if matches!(event, Event::Lagged { .. }) {
                    // A fresh subscription and the snapshot it starts from,
                    // atomically: what was dropped (and anything queued
                    // behind the notice) is in the snapshot, and nothing
                    // after it is missed.
                    let (now, fresh) = subscribe(prefix)?;
                    resync(prefix, &view, &now, as_json, secrets)?;
                    view = printed_state(&now, prefix);
                    events = fresh;
                }
            }
        }
    }
    Ok(store.close()?)
}

/// The keys under `prefix` and their values, as a watch starting from
/// `snapshot` has shown them.
fn printed_state(snapshot: &Snapshot, prefix: &str) -> BTreeMap<String, Value> {
    snapshot
        .entries(prefix)
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect()
}

/// After a lag: prints every key under `prefix` that differs between what
/// was printed and `now`, then a `resync` line.
fn resync(
    prefix: &str,
    view: &BTreeMap<String, Value>,
    now: &Snapshot,
    as_json: bool,
    secrets: &Secrets,
) -> Result<(), Failure> {
    let mut keys: BTreeSet<&str> = view.keys().map(String::as_str).collect();
    keys.extend(now.keys(prefix));
    let mut changed = 0;
    for key in keys {
        let (old, new) = (view.get(key), now.get_json(key));
        if old == new {
            continue;
        }
        changed += 1;
        let change = secrets.change(&Change {
            seq: now.seq(),
            key: key.to_owned(),
            old: old.cloned().map(std::sync::Arc::new),
            new: new.cloned().map(std::sync::Arc::new),
            source: livesettings::Source::External,
        });
        let text = if as_json {
            change_json(&change, "resync").to_string()
        } else {
            human_lines(&Event::Change(change), None)
                .concat()
                .replace("(external,", "(resync,")
        };
        line(&text)?;
    }
    let text = if as_json {
        json!({"event": "resync", "seq": now.seq(), "changed": changed}).to_string()
    } else {
        format!(
            "{}  resynchronized from the snapshot at seq {}: {changed} keys differed",
            utc_now(),
            now.seq()
        )
    };
    line(&text)
}

/// The commit times of the replayed log rows, by seq.
#[derive(Default)]
struct Replayed {
    /// The last seq the replay may hold (the snapshot's right after
    /// subscribing: later events are live).
    upto: i64,
    at: HashMap<i64, String>,
}

impl Replayed {
    /// Reads the times of the rows under `prefix` after `after`, up to
    /// `upto`: the newest rows under the prefix, as many as are queued
    /// (`queued`, the replay and maybe a few live events), more only when
    /// live rows crowded out the oldest replayed ones.
    fn read(
        store: &Store,
        prefix: &str,
        after: i64,
        upto: i64,
        queued: usize,
    ) -> Result<Replayed, Error> {
        let mut at = HashMap::new();
        if upto <= after {
            return Ok(Replayed { upto, at });
        }
        let mut limit = queued.saturating_add(16);
        loop {
            let entries = store.section_history(prefix, limit)?;
            let complete = entries.len() < limit
                || entries.first().is_none_or(|oldest| oldest.seq <= after + 1);
            if complete {
                at.extend(
                    entries
                        .into_iter()
                        .filter(|entry| entry.seq > after && entry.seq <= upto)
                        .map(|entry| (entry.seq, entry.at)),
                );
                return Ok(Replayed { upto, at });
            }
            limit = limit.saturating_mul(2);
        }
    }

    /// The commit time to print for an event at `seq`: a replayed row's,
    /// else none (live: the current time).
    fn at(&self, seq: i64) -> Option<&str> {
        if seq > self.upto {
            return None;
        }
        self.at.get(&seq).map(String::as_str)
    }
}

/// A change line of `watch --json`. A removed key has `"new": null` (as a
/// JSON null value has) and `"deleted": true` to tell the two apart.
fn change_json(change: &Change, source: &str) -> Value {
    let mut object = json!({
        "event": "change",
        "seq": change.seq,
        "key": change.key,
        "old": change.old,
        "new": change.new,
        "source": source,
    });
    if change.new.is_none() {
        object["deleted"] = Value::Bool(true);
    }
    object
}

fn json_lines(event: &Event) -> Vec<String> {
    match event {
        Event::Change(change) => vec![change_json(change, change.source.as_str()).to_string()],
        Event::Commit(set) => {
            let changes: Vec<Value> = set
                .changes
                .iter()
                .map(|change| {
                    let mut object = json!({
                        "seq": change.seq,
                        "key": change.key,
                        "old": change.old,
                        "new": change.new,
                    });
                    if change.new.is_none() {
                        object["deleted"] = Value::Bool(true);
                    }
                    object
                })
                .collect();
            vec![
                json!({
                    "event": "commit",
                    "seqs": [set.seqs.0, set.seqs.1],
                    "source": set.source.as_str(),
                    "changes": changes,
                })
                .to_string(),
            ]
        }
        Event::Reloaded { reason, seq } => {
            vec![json!({"event": "reload", "reason": reason.as_str(), "seq": seq}).to_string()]
        }
        Event::Rejected(rejection) => rejection
            .keys
            .iter()
            .map(|key| {
                json!({"event": "rejected", "seq": rejection.seq, "key": key, "error": rejection.reason})
                    .to_string()
            })
            .collect(),
        Event::Lagged { missed, seq } => {
            vec![json!({"event": "lagged", "missed": missed, "seq": seq}).to_string()]
        }
        other => vec![json!({"event": "unknown", "debug": format!("{other:?}")}).to_string()],
    }
}

/// The lines of `watch` for `event`, stamped with `at` (a replayed row's
/// commit time), else the current time.
fn human_lines(event: &Event, at: Option<&str>) -> Vec<String> {
    let now = at.map_or_else(utc_now, str::to_owned);
    match event {
        Event::Change(change) => vec![format!(
            "{now}  {}  {} → {}  ({}, seq {})",
            change.key,
            show_old(change.old_value()),
            show_new(change.new_value()),
            change.source,
            change.seq
        )],
        Event::Commit(set) => std::iter::once(format!(
            "{now}  commit seq {}..{} ({}, {} changes)",
            set.seqs.0,
            set.seqs.1,
            set.source,
            set.changes.len()
        ))
        .chain(set.changes.iter().map(|change| {
            format!(
                "    {}  {} → {}  (seq {})",
                change.key,
                show_old(change.old_value()),
                show_new(change.new_value()),
                change.seq
            )
        }))
        .collect(),
        Event::Reloaded { reason, seq } => {
            vec![format!("{now}  full reload ({reason}) at seq {seq}")]
        }
        Event::Rejected(rejection) => vec![format!(
            "{now}  rejected {} at seq {}: {}",
            rejection.keys.join(", "),
            rejection.seq,
            rejection.reason
        )],
        Event::Lagged { missed, .. } => {
            vec![format!("{now}  fell behind: {missed} events dropped")]
        }
        other => vec![format!("{now}  {other:?}")],
    }
}

pub fn history_line(entry: &HistoryEntry, as_json: bool) -> String {
    if as_json {
        return json!({
            "seq": entry.seq,
            "at": entry.at,
            "key": entry.key,
            "old": entry.old,
            "new": entry.new,
            "origin": entry.origin,
        })
        .to_string();
    }
    format!(
        "{:>8}  {}  {}  {} → {}  ({})",
        entry.seq,
        entry.at,
        entry.key,
        show_old(entry.old_value()),
        show_new(entry.new_value()),
        entry.origin
    )
}

/// A value before a change: `∅` when the key did not exist.
fn show_old(value: Option<&Value>) -> String {
    value.map_or("∅".to_owned(), Value::to_string)
}

/// A value after a change: `(removed)` when the key was removed (a JSON
/// null prints as `null`).
fn show_new(value: Option<&Value>) -> String {
    value.map_or("(removed)".to_owned(), Value::to_string)
}

/// The current UTC time as `HH:MM:SS.mmm` on `YYYY-MM-DD`.
fn utc_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, day_secs) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// Whether `key` is `prefix` or below it (`""` is everything).
fn is_at_or_below(prefix: &str, key: &str) -> bool {
    prefix.is_empty()
        || key == prefix
        || (key.len() > prefix.len()
            && key.starts_with(prefix)
            && key.as_bytes()[prefix.len()] == b'.')
}
