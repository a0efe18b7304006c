//! In-process reads and writes, timed in batches (the criterion benches in
//! `benches/` measure the same operations with more statistics).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use imbl::OrdMap;
use livesettings::Live;
use serde_json::Value;

use super::{Config, Golden, Row, Samples, fresh_copy, ns, progress, target};
use crate::support::{self, Physics};

const ROTATION: usize = 4096;
/// The working set of a hot loop.
const HOT: usize = 16;

/// Times `batches` batches of `batch` calls of `op(i)` (i counting up) and
/// returns the mean ns per call of each batch. One batch warms up first.
pub fn per_op(batches: usize, batch: usize, mut op: impl FnMut(usize)) -> Samples {
    let mut at = 0;
    for _ in 0..batch {
        op(at);
        at += 1;
    }
    let mut means = Vec::with_capacity(batches);
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..batch {
            op(at);
            at += 1;
        }
        means.push(started.elapsed().as_nanos() as f64 / batch as f64);
    }
    Samples::new(means)
}

/// Times each call of `op(i)` separately, after `warm` untimed calls.
pub fn each(samples: usize, warm: usize, mut op: impl FnMut(usize)) -> Samples {
    for at in 0..warm {
        op(at);
    }
    let mut times = Vec::with_capacity(samples);
    for at in warm..warm + samples {
        let started = Instant::now();
        op(at);
        times.push(started.elapsed().as_nanos() as f64);
    }
    Samples::new(times)
}

struct Reads {
    get: Samples,
    hot: Samples,
    hot_rwlock: Samples,
    rwlock: Samples,
    sqlite: Samples,
    json: Samples,
    json_rwlock: Samples,
    live: Samples,
    live_rwlock: Samples,
    /// `get` of the spread keys after `OVERLAID` new keys were written.
    get_overlaid: Samples,
}

/// How many keys are written before the second spread-read measurement:
/// below an eighth of the large tree, so the changes stay in the
/// snapshot's overlay.
const OVERLAID: usize = 1_000;

fn pick(keys: &[String], at: usize) -> &str {
    keys[at % ROTATION].as_str()
}

fn reads(cfg: &Config, golden: &Golden) -> Reads {
    let path = fresh_copy(
        &golden.path,
        &cfg.workdir,
        &format!("reads-{}", golden.keys),
    );
    let store = support::open_store(&path);
    let numeric = support::numeric_keys(&golden.leaves, ROTATION);
    let any = support::any_keys(&golden.leaves, ROTATION);
    let hot_keys = support::numeric_keys(&golden.leaves, HOT);
    let map: RwLock<HashMap<String, Value>> = RwLock::new(golden.leaves.iter().cloned().collect());
    let sqlite = rusqlite::Connection::open(&path).expect("baseline connection");
    let mut select = sqlite
        .prepare("SELECT value FROM settings WHERE key = ?1")
        .expect("prepare");
    let batches = cfg.read_batches;

    let get = per_op(batches, 10_000, |at| {
        black_box(store.get::<f64>(pick(&numeric, at)).unwrap());
    });
    let rwlock = per_op(batches, 10_000, |at| {
        let key = pick(&numeric, at);
        black_box(map.read().unwrap().get(key).and_then(Value::as_f64));
    });
    let sqlite = per_op(batches.div_ceil(4), 500, |at| {
        let key = pick(&numeric, at);
        let value = select
            .query_row([key], |row| {
                let text = row.get_ref(0)?.as_str()?;
                Ok(serde_json::from_str::<f64>(text).ok())
            })
            .unwrap();
        black_box(value);
    });
    let hot = per_op(batches, 10_000, |at| {
        black_box(store.get::<f64>(&hot_keys[at % HOT]).unwrap());
    });
    let hot_rwlock = per_op(batches, 10_000, |at| {
        let key = hot_keys[at % HOT].as_str();
        black_box(map.read().unwrap().get(key).and_then(Value::as_f64));
    });
    let json = per_op(batches, 10_000, |at| {
        black_box(store.get_json(pick(&any, at)));
    });
    // New keys in a section nothing reads: changes like any other for the
    // snapshot's overlay, and no typed section below breaks.
    for at in 0..OVERLAID {
        store
            .set(&format!("bench.overlaid.k{at}"), &0.25)
            .expect("set");
    }
    let get_overlaid = per_op(batches, 10_000, |at| {
        black_box(store.get::<f64>(pick(&numeric, at)).unwrap());
    });
    let json_rwlock = per_op(batches, 10_000, |at| {
        let key = pick(&any, at);
        black_box(map.read().unwrap().get(key).cloned());
    });

    let sections: Vec<String> = support::graph_names(&golden.leaves)
        .into_iter()
        .take(64)
        .map(|name| format!("visualisation.graphs.{name}.physics"))
        .collect();
    let handles: Vec<Live<Physics>> = sections
        .iter()
        .map(|prefix| store.live(prefix).expect("live section"))
        .collect();
    let typed: RwLock<HashMap<String, Physics>> = RwLock::new(
        sections
            .iter()
            .map(|prefix| (prefix.clone(), store.section(prefix).unwrap()))
            .collect(),
    );
    let live = per_op(batches, 10_000, |at| {
        black_box(handles[at % handles.len()].load().damping);
    });
    let live_rwlock = per_op(batches, 10_000, |at| {
        let prefix = sections[at % sections.len()].as_str();
        black_box(typed.read().unwrap().get(prefix).map(|p| p.damping));
    });
    drop(select);
    store.close().expect("close");
    Reads {
        get,
        hot,
        hot_rwlock,
        rwlock,
        sqlite,
        json,
        json_rwlock,
        live,
        live_rwlock,
        get_overlaid,
    }
}

/// Read rows: `get::<f64>` at both sizes, then `get_json` and a `Live`
/// handle at the large size.
pub fn read_rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    progress(format!("reads at {} keys", small.keys));
    let at_small = reads(cfg, small);
    progress(format!("reads at {} keys", large.keys));
    let at_large = reads(cfg, large);
    let rwlock = "`RwLock<HashMap<String, Value>>` read + `as_f64`";
    let note = "(4 096 keys spread over the tree, read in turn; mean of 10 000 reads per sample)";
    rows.push(
        Row::new("reads", format!("`get::<f64>`, {} keys {note}", small.keys)).timed(
            &at_small.get,
            rwlock,
            &at_small.rwlock,
        ),
    );
    let get = at_large.get.median();
    let floor = at_large.rwlock.median();
    rows.push(
        Row::new("reads", format!("`get::<f64>`, {} keys {note}", large.keys))
            .timed(&at_large.get, rwlock, &at_large.rwlock)
            .target(target(
                format!(
                    "median ≤ the `RwLock<HashMap>` baseline ({} vs {}); ≤ 50 ns: {}",
                    ns(get),
                    ns(floor),
                    if get <= 50.0 { "met" } else { "missed" }
                ),
                get <= floor,
            )),
    );
    let overlaid = at_large.get_overlaid.median();
    rows.push(
        Row::new(
            "reads",
            format!(
                "`get::<f64>`, {} keys, after {OVERLAID} keys were added (the changes sit in the snapshot's overlay) {note}",
                large.keys
            ),
        )
        .timed(&at_large.get_overlaid, rwlock, &at_large.rwlock)
        .target(target(
            format!("median ≤ the `RwLock<HashMap>` baseline ({} vs {})", ns(overlaid), ns(floor)),
            overlaid <= floor,
        )),
    );
    let hot = at_large.hot.median();
    rows.push(
        Row::new(
            "reads",
            format!(
                "`get::<f64>`, {} keys ({HOT} hot keys read in turn; mean of 10 000 reads per sample)",
                large.keys
            ),
        )
        .timed(&at_large.hot, rwlock, &at_large.hot_rwlock)
        .target(target(format!("median ≤ 50 ns ({})", ns(hot)), hot <= 50.0)),
    );
    let speedup = at_large.sqlite.median() / get;
    rows.push(
        Row::new("reads", format!("`get::<f64>`, {} keys", large.keys))
            .timed(
                &at_large.get,
                "prepared `SELECT value … WHERE key = ?` + JSON parse",
                &at_large.sqlite,
            )
            .target(target(
                format!("≥ 20× faster ({speedup:.0}×)"),
                speedup >= 20.0,
            )),
    );
    rows.push(
        Row::new(
            "reads",
            format!("`get_json` (clones the value), {} keys", large.keys),
        )
        .timed(
            &at_large.json,
            "`RwLock<HashMap>` read + clone",
            &at_large.json_rwlock,
        ),
    );
    rows.push(
        Row::new(
            "reads",
            format!(
                "typed section: `Live<Physics>::load()`, {} keys",
                large.keys
            ),
        )
        .timed(
            &at_large.live,
            "`RwLock<HashMap<String, Physics>>` read",
            &at_large.live_rwlock,
        ),
    );
}

fn ordmap_apply(cfg: &Config, golden: &Golden) -> Samples {
    let mut current: OrdMap<Arc<str>, Arc<Value>> = golden
        .leaves
        .iter()
        .map(|(key, value)| (Arc::from(key.as_str()), Arc::new(value.clone())))
        .collect();
    let targets: Vec<Arc<str>> = support::any_keys(&golden.leaves, ROTATION)
        .into_iter()
        .map(|key| current.get_key_value(key.as_str()).unwrap().0.clone())
        .collect();
    let values: Vec<Arc<Value>> = (0..ROTATION)
        .map(|at| Arc::new(Value::from(at as f64 + 0.5)))
        .collect();
    per_op(cfg.read_batches, 1_000, |at| {
        let mut next = current.clone();
        next.insert(
            Arc::clone(&targets[at % ROTATION]),
            Arc::clone(&values[at % ROTATION]),
        );
        current = next;
    })
}

/// The store's real step: `Snapshot::with_change`, both maps (ordered map
/// and hash index).
fn snapshot_apply(cfg: &Config, golden: &Golden) -> Samples {
    let store = support::open_store(&golden.path);
    let mut current = store.snapshot().as_ref().clone();
    let targets = support::any_keys(&golden.leaves, ROTATION);
    per_op(cfg.read_batches, 1_000, |at| {
        current = livesettings::bench_internals::apply_change(
            &current,
            &targets[at % ROTATION],
            Some(Value::from(at as f64 + 0.5)),
        )
        .expect("valid change");
    })
}

fn hashmap_apply(cfg: &Config, golden: &Golden) -> Samples {
    let mut current: HashMap<Arc<str>, Arc<Value>> = golden
        .leaves
        .iter()
        .map(|(key, value)| (Arc::from(key.as_str()), Arc::new(value.clone())))
        .collect();
    let targets: Vec<Arc<str>> = support::any_keys(&golden.leaves, 64)
        .into_iter()
        .map(|key| current.get_key_value(key.as_str()).unwrap().0.clone())
        .collect();
    let value = Arc::new(Value::from(0.5));
    each(if cfg.quick { 10 } else { 40 }, 2, |at| {
        let mut next = current.clone();
        next.insert(Arc::clone(&targets[at % targets.len()]), Arc::clone(&value));
        current = next;
    })
}

/// The snapshot-apply step alone (`Snapshot::with_change`, what the store
/// runs per changed key), at both sizes; the bare `imbl::OrdMap` step and a
/// `std::HashMap` copy for comparison.
pub fn apply_rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    progress("snapshot apply step");
    let small_cost = snapshot_apply(cfg, small);
    let large_cost = snapshot_apply(cfg, large);
    let small_ordmap = ordmap_apply(cfg, small);
    let large_ordmap = ordmap_apply(cfg, large);
    let hashmap = hashmap_apply(cfg, large);
    let growth = large_cost.median() / small_cost.median();
    rows.push(
        Row::new(
            "writes",
            format!(
                "snapshot apply step: `Snapshot::with_change` of 1 key (compact base + overlay), {} keys",
                large.keys
            ),
        )
        .timed(
            &large_cost,
            format!("the same at {} keys", small.keys),
            &small_cost,
        )
        .ratio(format!("{growth:.2}× the {}-key cost", small.keys))
        .target(target(
            format!("≤ 2× the {}-key cost", small.keys),
            growth <= 2.0,
        )),
    );
    let ordmap_growth = large_ordmap.median() / small_ordmap.median();
    rows.push(
        Row::new(
            "writes",
            format!(
                "bare `imbl::OrdMap<Arc<str>, Arc<Value>>` clone + insert 1 key, {} keys",
                large.keys
            ),
        )
        .timed(
            &large_ordmap,
            format!("the same at {} keys", small.keys),
            &small_ordmap,
        )
        .ratio(format!("{ordmap_growth:.2}× the {}-key cost", small.keys)),
    );
    rows.push(
        Row::new(
            "writes",
            format!(
                "snapshot apply step: `Snapshot::with_change` of 1 key, {} keys",
                large.keys
            ),
        )
        .timed(&large_cost, "`std::HashMap` clone + insert", &hashmap),
    );
}

fn set_cost(cfg: &Config, golden: &Golden) -> (Samples, Samples) {
    let path = fresh_copy(&golden.path, &cfg.workdir, &format!("set-{}", golden.keys));
    let raw_path = path.with_file_name("raw.db");
    std::fs::copy(&path, &raw_path).expect("copy for the raw baseline");
    let targets = support::numeric_keys(&golden.leaves, ROTATION);
    let store = support::open_store(&path);
    let ours = each(cfg.set_samples, 50, |at| {
        store
            .set(&targets[at % ROTATION], &(at as f64 + 0.5))
            .unwrap();
    });
    store.close().expect("close");
    let raw = support::raw_update_baseline(&raw_path);
    let mut update = raw.prepare(support::RAW_UPDATE).unwrap();
    let baseline = each(cfg.set_samples, 50, |at| {
        update
            .execute(((at as f64 + 0.5).to_string(), &targets[at % ROTATION]))
            .unwrap();
    });
    (ours, baseline)
}

/// `set` of numeric keys at the large size with a rule registered on every
/// key the pattern matches (a maximum every stored value meets, so nothing
/// is refused), against the same `set` with no rules, in one run.
fn set_under_rules(
    cfg: &Config,
    golden: &Golden,
    pattern: &str,
    refusing: bool,
) -> (Samples, Samples) {
    let targets = support::numeric_keys(&golden.leaves, ROTATION);
    let mut samples = Vec::new();
    for with_rules in [true, false] {
        let path = fresh_copy(
            &golden.path,
            &cfg.workdir,
            &format!("rules-{with_rules}-{}", golden.keys),
        );
        let store = support::open_store(&path);
        if with_rules {
            // Refusing: a maximum one stored number breaks, so the rule
            // withholds that key and its refusal stays pending meanwhile.
            let maximum = if refusing { 1e9 } else { 1e12 };
            if refusing {
                let conn = rusqlite::Connection::open(&path).expect("foreign connection");
                let refused = golden
                    .leaves
                    .iter()
                    .map(|(key, value)| (key, value))
                    .find(|(key, value)| {
                        value.is_number()
                            && key.starts_with("visualisation.")
                            && !targets.contains(key)
                    })
                    .map(|(key, _)| key.clone())
                    .expect("a numeric key to refuse");
                conn.execute(
                    "UPDATE settings SET value = '5e9' WHERE key = ?1",
                    [&refused],
                )
                .expect("store a value the rule refuses");
                store
                    .wait_for_seq(
                        store.snapshot().seq() + 1,
                        std::time::Duration::from_secs(20),
                    )
                    .expect("the store applies the foreign write");
            }
            let rules = livesettings::Rules::from_json(&format!(
                r#"{{"rules": [{{"keys": "{pattern}", "maximum": {maximum}}}]}}"#
            ))
            .expect("rules");
            store.add_rules(&rules).expect("add_rules");
            assert_eq!(store.rejected().len(), usize::from(refusing));
        }
        samples.push(each(cfg.set_samples, 50, |at| {
            store
                .set(&targets[at % ROTATION], &(at as f64 + 0.5))
                .unwrap();
        }));
        store.close().expect("close");
    }
    let without = samples.pop().expect("two runs");
    let with = samples.pop().expect("two runs");
    (with, without)
}

/// `set` end to end at both sizes and `merge` of the fixture.
pub fn write_rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    for golden in [small, large] {
        progress(format!("set at {} keys", golden.keys));
        let (ours, baseline) = set_cost(cfg, golden);
        rows.push(
            Row::new(
                "writes",
                format!(
                    "`set` end to end (commit + apply + publish), {} keys",
                    golden.keys
                ),
            )
            .timed(
                &ours,
                "plain SQLite `UPDATE` autocommit (trigger included), no store",
                &baseline,
            ),
        );
    }

    for (pattern, refusing) in [
        ("visualisation.**", false),
        ("**", false),
        ("visualisation.**", true),
    ] {
        progress(format!(
            "set at {} keys under the rule '{pattern}'",
            large.keys
        ));
        let (with, without) = set_under_rules(cfg, large, pattern, refusing);
        let case = if refusing {
            "maximum 1e9, one stored value refused and its refusal pending"
        } else {
            "maximum 1e12, met by every value"
        };
        rows.push(
            Row::new(
                "writes",
                format!(
                    "`set` of a numeric key, {} keys, under the rule `{pattern}` ({case})",
                    large.keys
                ),
            )
            .timed(&with, "the same `set` with no rules", &without)
            .target(target(
                format!(
                    "≤ 2× the set without rules ({:.2}×)",
                    with.median() / without.median()
                ),
                with.median() <= 2.0 * without.median(),
            )),
        );
    }

    progress("merge of the fixture");
    let fixture = support::fixture();
    let other = support::perturbed(&fixture);
    let leaves = support::fixture_leaves();
    let folder = cfg.workdir.join("merge");
    std::fs::create_dir_all(&folder).expect("merge folder");
    let path = folder.join("settings.db");
    support::build_db(&path, &leaves);
    let raw_path = folder.join("raw.db");
    std::fs::copy(&path, &raw_path).expect("copy for the raw baseline");
    let samples = if cfg.quick { 40 } else { 200 };
    let store = support::open_store(&path);
    let ours = each(samples, 4, |at| {
        let commit = store
            .merge(if at % 2 == 0 { &other } else { &fixture })
            .unwrap();
        assert_eq!(commit.changes, leaves.len());
    });
    store.close().expect("close");
    let other_leaves: Vec<(String, String)> = livesettings::flatten("", &other)
        .unwrap()
        .into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect();
    let fixture_leaves: Vec<(String, String)> = leaves
        .iter()
        .map(|(key, value)| (key.clone(), value.to_string()))
        .collect();
    let mut raw = rusqlite::Connection::open(&raw_path).expect("raw connection");
    raw.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let baseline = each(samples, 4, |at| {
        let tx = raw.transaction().unwrap();
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .unwrap();
            let leaves = if at % 2 == 0 {
                &other_leaves
            } else {
                &fixture_leaves
            };
            for (key, text) in leaves {
                upsert.execute((key, text)).unwrap();
            }
        }
        tx.commit().unwrap();
    });
    rows.push(
        Row::new(
            "writes",
            format!(
                "`merge` of the whole fixture ({} keys, all changed)",
                leaves.len()
            ),
        )
        .timed(
            &ours,
            "plain SQLite: the same upserts in one transaction, no store",
            &baseline,
        ),
    );
}
