//! Full reload of the large tree: `Store::open` (which loads everything),
//! a reload after a copy of the file was renamed over the path while a store
//! had it open, and a reload after a change-log trigger was dropped, against
//! the naive reload (`SELECT key, value FROM settings` parsed into a
//! `HashMap`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use livesettings::{Event, ReloadReason, Store};
use serde_json::Value;

use super::{Config, Golden, Row, Samples, fresh_copy, ns, progress, target};
use crate::support;

const TARGET_NS: f64 = 150e6;

fn naive_reload(path: &Path) -> usize {
    let conn = rusqlite::Connection::open(path).expect("naive connection");
    let mut statement = conn
        .prepare("SELECT key, value FROM settings")
        .expect("prepare");
    let map: HashMap<String, Value> = statement
        .query_map([], |row| {
            let key: String = row.get(0)?;
            let text = row.get_ref(1)?.as_str()?;
            Ok((key, serde_json::from_str(text).unwrap_or(Value::Null)))
        })
        .expect("query")
        .map(|row| row.expect("row"))
        .collect();
    map.len()
}

/// Waits for a `Reloaded` event with `reason`; returns when it arrived.
fn wait_reloaded(events: &Receiver<Event>, reason: ReloadReason) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(Event::Reloaded { reason: got, .. }) if got == reason => {
                return Some(Instant::now());
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Waits until the store counted one more reload for `reason`, then returns
/// its `last_apply`.
fn last_apply_after(store: &Store, reason: ReloadReason, before: u64) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let stats = store.stats();
        if stats.reloads(reason) > before {
            return Some(stats.last_apply);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// `Store::open` of `path` (holding `keys` keys) `reps` times after one
/// warm-up open, in ns.
pub fn open_times(path: &Path, keys: usize, reps: usize) -> Samples {
    support::open_store(path).close().expect("close"); // warm the page cache
    let mut opens = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        let store = support::open_store(path);
        opens.push(started.elapsed().as_nanos() as f64);
        assert_eq!(store.stats().keys, keys);
        store.close().expect("close");
    }
    Samples::new(opens)
}

/// Drops a change-log trigger from another connection and returns the
/// full reload's `last_apply` once the store has done it (`events`: a
/// subscription of the store's, drained first).
pub fn reload_after_dropped_trigger(
    store: &Store,
    events: &Receiver<Event>,
    path: &Path,
) -> Option<Duration> {
    let before = store.stats().reloads(ReloadReason::TriggersMissing);
    while events.try_recv().is_ok() {}
    let conn = rusqlite::Connection::open(path).expect("foreign connection");
    conn.execute_batch("DROP TRIGGER settings_log_update")
        .expect("drop a trigger");
    drop(conn);
    if wait_reloaded(events, ReloadReason::TriggersMissing).is_none() {
        progress("no TriggersMissing reload event within 20 s");
    }
    last_apply_after(store, ReloadReason::TriggersMissing, before)
}

pub fn rows(cfg: &Config, golden: &Golden, rows: &mut Vec<Row>) {
    let reps = cfg.reload_reps;
    let path = fresh_copy(&golden.path, &cfg.workdir, "reload");

    progress(format!("Store::open at {} keys ×{reps}", golden.keys));
    let opens = open_times(&path, golden.keys, reps);

    progress("naive reload baseline");
    let mut naive = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        let loaded = naive_reload(&path);
        naive.push(started.elapsed().as_nanos() as f64);
        assert_eq!(loaded, golden.keys);
    }
    let naive = Samples::new(naive);

    progress("reload after the file is replaced");
    let store = support::open_store(&path);
    let events = store.subscribe("").expect("subscribe");
    let key = support::any_keys(&golden.leaves, 1).remove(0);
    let incoming = path.with_file_name("incoming.db");
    let mut replaced = Vec::new();
    let mut noticed = Vec::new();
    for rep in 0..reps {
        std::fs::copy(&golden.path, &incoming).expect("copy");
        {
            let conn = rusqlite::Connection::open(&incoming).expect("open the copy");
            conn.execute(
                "UPDATE settings SET value = ?1 WHERE key = ?2",
                ((rep + 7_000).to_string(), &key),
            )
            .expect("change the copy");
            // Closing the last connection checkpoints and removes the WAL.
        }
        let before = store.stats().reloads(ReloadReason::FileReplaced);
        while events.try_recv().is_ok() {}
        let started = Instant::now();
        std::fs::rename(&incoming, &path).expect("rename over the database");
        match wait_reloaded(&events, ReloadReason::FileReplaced) {
            Some(at) => noticed.push((at - started).as_nanos() as f64),
            None => progress("no FileReplaced reload event within 20 s"),
        }
        if let Some(apply) = last_apply_after(&store, ReloadReason::FileReplaced, before) {
            replaced.push(apply.as_nanos() as f64);
        }
    }

    progress("reload after a dropped trigger");
    let mut dropped = Vec::new();
    for _ in 0..reps {
        if let Some(apply) = reload_after_dropped_trigger(&store, &events, &path) {
            dropped.push(apply.as_nanos() as f64);
        }
    }
    store.close().expect("close");
    let replaced = Samples::new(replaced);
    let noticed = Samples::new(noticed);
    let dropped = Samples::new(dropped);

    let naive_name = "naive: open + `SELECT key, value` + parse into `HashMap`";
    let goal = |samples: &Samples| {
        target(
            "≤ 150 ms",
            samples.len() > 0 && samples.median() <= TARGET_NS,
        )
    };
    rows.push(
        Row::new(
            "full reload",
            format!(
                "`Store::open` of {} keys (schema check, full load, watcher start), ×{reps}",
                golden.keys
            ),
        )
        .timed(&opens, naive_name, &naive)
        .target(goal(&opens)),
    );
    rows.push(
        Row::new(
            "full reload",
            format!(
                "reload + diff after a copy was renamed over the open file ({} keys, `stats().last_apply`), ×{}",
                golden.keys,
                replaced.len()
            ),
        )
        .timed(&replaced, naive_name, &naive)
        .target(goal(&replaced)),
    );
    rows.push(
        Row::new(
            "full reload",
            format!(
                "rename over the path → `Reloaded` event received ({} keys), ×{}",
                golden.keys,
                noticed.len()
            ),
        )
        .ours(ns(noticed.median()), ns(noticed.p99())),
    );
    rows.push(
        Row::new(
            "full reload",
            format!(
                "reload + diff after a foreign `DROP TRIGGER` ({} keys, `stats().last_apply`), ×{}",
                golden.keys,
                dropped.len()
            ),
        )
        .timed(&dropped, naive_name, &naive)
        .target(goal(&dropped)),
    );
}
