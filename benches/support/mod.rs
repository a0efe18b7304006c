//! Workloads shared by the criterion benches and `examples/bench_report.rs`:
//! the VisionFlow fixture, generated trees of the same shape, and a fast
//! database loader.
//!
//! Generated trees keep the whole fixture (435 keys) and add copies of its
//! `visualisation.graphs.logseq` / `visualisation.graphs.visionflow`
//! sections (111 keys each) under generated graph names
//! (`visualisation.graphs.g00001.physics.damping`, ...) until the target
//! count, cutting the last copy short.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use livesettings::{Options, Store, WatchMode};
use serde_json::Value;

/// The fixture: `../shared/fixtures/visionflow-settings.json` next to the
/// crate, else the copy in `examples/`.
pub fn fixture_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../shared/fixtures/visionflow-settings.json");
    if shared.is_file() {
        shared
    } else {
        manifest.join("examples/visionflow-settings.json")
    }
}

/// The fixture as nested JSON.
pub fn fixture() -> Value {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("cannot parse {}: {error}", path.display()))
}

/// The fixture flattened to sorted `(dotted key, leaf)` pairs.
pub fn fixture_leaves() -> Vec<(String, Value)> {
    livesettings::flatten("", &fixture())
        .expect("the fixture flattens")
        .into_iter()
        .collect()
}

/// Exactly `count` leaves: the fixture, then generated graph sections.
pub fn generated_leaves(count: usize) -> Vec<(String, Value)> {
    let mut leaves = fixture_leaves();
    let templates: Vec<Vec<(String, Value)>> = ["logseq", "visionflow"]
        .iter()
        .map(|graph| {
            let prefix = format!("visualisation.graphs.{graph}.");
            leaves
                .iter()
                .filter_map(|(key, value)| {
                    key.strip_prefix(&prefix)
                        .map(|rest| (rest.to_owned(), value.clone()))
                })
                .collect()
        })
        .collect();
    let mut graph = 0usize;
    while leaves.len() < count {
        graph += 1;
        let template = &templates[graph % templates.len()];
        assert!(!template.is_empty(), "the fixture has no graph sections");
        for (rest, value) in template {
            if leaves.len() == count {
                break;
            }
            leaves.push((
                format!("visualisation.graphs.g{graph:05}.{rest}"),
                value.clone(),
            ));
        }
    }
    leaves.truncate(count);
    leaves
}

/// The graph section names present in a generated tree (`logseq`,
/// `visionflow`, `g00001`, ...) that hold the fields of [`Physics`]
/// (`physics.springK` sorts after the others, so a cut-short copy that has
/// it has them all).
pub fn graph_names(leaves: &[(String, Value)]) -> Vec<String> {
    let mut names: Vec<String> = leaves
        .iter()
        .filter_map(|(key, _)| {
            let rest = key.strip_prefix("visualisation.graphs.")?;
            let (name, tail) = rest.split_once('.')?;
            (tail == "physics.springK").then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Creates (or fills) the database at `path` with `leaves` in one
/// transaction through a prepared insert, then closes it (the WAL is
/// checkpointed and removed, so the file can be copied).
pub fn build_db(path: &Path, leaves: &[(String, Value)]) {
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(path)
        .expect("open the store to load it");
    store
        .write(|tx| {
            let mut insert = tx.prepare(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in leaves {
                insert.execute((key.as_str(), value.to_string()))?;
            }
            Ok(())
        })
        .expect("load the leaves");
    store.close().expect("close the loaded store");
}

/// `count` keys spread over `leaves` (deterministic pseudo-random picks)
/// whose value satisfies `keep`.
pub fn sample_keys(
    leaves: &[(String, Value)],
    count: usize,
    keep: impl Fn(&Value) -> bool,
) -> Vec<String> {
    let candidates: Vec<&String> = leaves
        .iter()
        .filter(|(_, value)| keep(value))
        .map(|(key, _)| key)
        .collect();
    assert!(!candidates.is_empty(), "no key fits the sample filter");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let pick = state.wrapping_mul(0x2545_F491_4F6C_DD1D) as usize % candidates.len();
            candidates[pick].clone()
        })
        .collect()
}

/// Keys holding numbers (read as `f64`).
pub fn numeric_keys(leaves: &[(String, Value)], count: usize) -> Vec<String> {
    sample_keys(leaves, count, Value::is_number)
}

/// Any keys.
pub fn any_keys(leaves: &[(String, Value)], count: usize) -> Vec<String> {
    sample_keys(leaves, count, |_| true)
}

/// The raw size of a tree: key bytes plus the bytes of each value's JSON text.
pub fn raw_bytes(leaves: &[(String, Value)]) -> usize {
    leaves
        .iter()
        .map(|(key, value)| key.len() + value.to_string().len())
        .sum()
}

/// A copy of `tree` in which every leaf differs (numbers +1, booleans
/// negated, strings suffixed, arrays extended, null → 0).
pub fn perturbed(tree: &Value) -> Value {
    match tree {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, value)| (name.clone(), perturbed(value)))
                .collect(),
        ),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(int), _) => Value::from(int + 1),
            (None, Some(float)) => Value::from(float + 1.0),
            _ => Value::from(0),
        },
        Value::Bool(flag) => Value::Bool(!flag),
        Value::String(text) => Value::String(format!("{text}-b")),
        Value::Array(items) => {
            let mut items = items.clone();
            items.push(Value::from(0));
            Value::Array(items)
        }
        Value::Null => Value::from(0),
    }
}

/// Opens `path` with the default options (file events, 1 s safety poll).
pub fn open_store(path: &Path) -> Store {
    Store::open(path).expect("open the store")
}

/// The typed section the `Live` benchmarks follow.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Physics {
    pub damping: f64,
    pub spring_k: f64,
    pub repel_k: f64,
    pub max_velocity: f64,
    pub iterations: u32,
    pub enabled: bool,
}

/// The baseline for `set`: a plain connection with the store's
/// `synchronous=NORMAL`, no store open, and the UPDATE it runs per write.
pub fn raw_update_baseline(path: &Path) -> rusqlite::Connection {
    let raw = rusqlite::Connection::open(path).expect("raw connection");
    raw.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous=NORMAL");
    raw
}

/// The statement `raw_update_baseline` runs per write: value, then key.
pub const RAW_UPDATE: &str = "UPDATE settings SET value = ?1 WHERE key = ?2";
