//! Read benchmarks: the store's snapshot reads against the designs a
//! settings library replaces, in the same run.
//!
//! At 1 000 and 100 000 keys (the VisionFlow fixture grown with generated
//! graph sections), each iteration reads the next key of a rotating set of
//! 4 096 keys spread over the whole tree (the `*_16_hot_keys` variants
//! rotate over 16 keys, a hot loop's working set that stays in cache):
//!
//! - `get_f64`: `Store::get::<f64>` vs `RwLock<HashMap<String, Value>>` +
//!   `as_f64` vs a prepared `SELECT value FROM settings WHERE key = ?` with
//!   a `serde_json` parse per read;
//! - `get_json`: `Store::get_json` (clones the value) vs cloning from the
//!   `RwLock<HashMap>`;
//! - `typed_section`: a `Live<Physics>` handle's `load()` vs
//!   `Store::section::<Physics>` (rebuilt per read) vs an
//!   `RwLock<HashMap<String, Physics>>` read.
//!
//! `cargo bench --bench reads`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use livesettings::{Live, Store};
use serde_json::Value;

mod support;
use support::Physics;

const SIZES: [usize; 2] = [1_000, 100_000];
const ROTATION: usize = 4096;

/// One key count's store and baselines.
struct Workload {
    _dir: tempfile::TempDir,
    keys: usize,
    store: Store,
    sqlite: rusqlite::Connection,
    map: RwLock<HashMap<String, Value>>,
    numeric: Vec<String>,
    hot: Vec<String>,
    any: Vec<String>,
    sections: Vec<String>,
}

impl Workload {
    fn new(keys: usize) -> Workload {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.db");
        let leaves = support::generated_leaves(keys);
        support::build_db(&path, &leaves);
        let store = support::open_store(&path);
        assert_eq!(store.stats().keys, keys);
        let sqlite = rusqlite::Connection::open(&path).expect("baseline connection");
        let sections = support::graph_names(&leaves)
            .into_iter()
            .take(64)
            .map(|name| format!("visualisation.graphs.{name}.physics"))
            .collect();
        Workload {
            _dir: dir,
            keys,
            store,
            sqlite,
            numeric: support::numeric_keys(&leaves, ROTATION),
            hot: support::numeric_keys(&leaves, 16),
            any: support::any_keys(&leaves, ROTATION),
            map: RwLock::new(leaves.into_iter().collect()),
            sections,
        }
    }
}

/// Cycles through a slice, one step per call.
/// The SQLite baseline: a prepared `SELECT value … WHERE key = ?` and a JSON
/// parse per read, over `keys` in turn.
fn sqlite_read<T: serde::de::DeserializeOwned>(
    b: &mut criterion::Bencher<'_>,
    w: &Workload,
    keys: &[String],
) {
    let mut at = Rotor(0);
    let mut statement = w
        .sqlite
        .prepare("SELECT value FROM settings WHERE key = ?1")
        .unwrap();
    b.iter(|| {
        let key = at.next(keys);
        statement
            .query_row([key], |row| {
                let text = row.get_ref(0)?.as_str()?;
                Ok(serde_json::from_str::<T>(text).ok())
            })
            .unwrap()
    });
}

struct Rotor(usize);

impl Rotor {
    fn next<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 = (self.0 + 1) % items.len();
        &items[self.0]
    }

    fn key<'a>(&mut self, keys: &'a [String]) -> &'a str {
        self.next(keys).as_str()
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn reads(c: &mut Criterion) {
    let workloads: Vec<Workload> = SIZES.iter().map(|&keys| Workload::new(keys)).collect();

    let mut group = c.benchmark_group("get_f64");
    configure(&mut group);
    for w in &workloads {
        group.bench_with_input(BenchmarkId::new("livesettings", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| w.store.get::<f64>(at.key(&w.numeric)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("rwlock_hashmap", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| {
                let key = at.next(&w.numeric);
                w.map
                    .read()
                    .unwrap()
                    .get(key.as_str())
                    .and_then(Value::as_f64)
            });
        });
        group.bench_with_input(
            BenchmarkId::new("livesettings_16_hot_keys", w.keys),
            w,
            |b, w| {
                let mut at = Rotor(0);
                b.iter(|| w.store.get::<f64>(at.key(&w.hot)).unwrap());
            },
        );
        group.bench_with_input(
            BenchmarkId::new("rwlock_hashmap_16_hot_keys", w.keys),
            w,
            |b, w| {
                let mut at = Rotor(0);
                b.iter(|| {
                    let key = at.next(&w.hot);
                    w.map
                        .read()
                        .unwrap()
                        .get(key.as_str())
                        .and_then(Value::as_f64)
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("sqlite_prepared", w.keys), w, |b, w| {
            sqlite_read::<f64>(b, w, &w.numeric)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get_json");
    configure(&mut group);
    for w in &workloads {
        group.bench_with_input(BenchmarkId::new("livesettings", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| w.store.get_json(at.key(&w.any)));
        });
        group.bench_with_input(BenchmarkId::new("rwlock_hashmap", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| {
                let key = at.next(&w.any);
                w.map.read().unwrap().get(key.as_str()).cloned()
            });
        });
        group.bench_with_input(BenchmarkId::new("sqlite_prepared", w.keys), w, |b, w| {
            sqlite_read::<Value>(b, w, &w.any)
        });
    }
    group.finish();

    let mut group = c.benchmark_group("typed_section");
    configure(&mut group);
    for w in &workloads {
        let handles: Vec<Live<Physics>> = w
            .sections
            .iter()
            .map(|prefix| w.store.live::<Physics>(prefix).expect("live physics"))
            .collect();
        let typed: RwLock<HashMap<String, Physics>> = RwLock::new(
            w.sections
                .iter()
                .map(|prefix| (prefix.clone(), w.store.section(prefix).unwrap()))
                .collect(),
        );
        group.bench_with_input(BenchmarkId::new("live_load", w.keys), w, |b, _| {
            let mut at = Rotor(0);
            b.iter(|| at.next(&handles).load().damping);
        });
        group.bench_with_input(BenchmarkId::new("rwlock_typed", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| {
                let prefix = at.next(&w.sections);
                typed
                    .read()
                    .unwrap()
                    .get(prefix.as_str())
                    .map(|p| p.damping)
            });
        });
        group.bench_with_input(BenchmarkId::new("store_section", w.keys), w, |b, w| {
            let mut at = Rotor(0);
            b.iter(|| {
                let prefix = at.next(&w.sections);
                w.store.section::<Physics>(prefix).unwrap().damping
            });
        });
        black_box(&handles);
    }
    group.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
