//! Write benchmarks.
//!
//! - `set`: `Store::set` end to end (IMMEDIATE transaction, trigger, hook,
//!   COMMIT, change-log read, snapshot apply, publish) at 1 000 and 100 000
//!   keys, each iteration writing a new value to the next key of a rotating
//!   set; baseline: the same `UPDATE` committed by a plain SQLite connection
//!   on a copy of the database that no store watches (the floor).
//! - `snapshot_apply`: the persistent-map step of an apply (what
//!   `apply_rows` does per changed key): clone the current
//!   `imbl::OrdMap<Arc<str>, Arc<Value>>`, insert one key, make the result
//!   current. Target: cost at 100 000 keys ≤ 1.5× the cost at 1 000.
//!   `livesettings_snapshot` is the store's real step through
//!   the snapshot-apply step (`bench_internals::apply_change`): both of its maps (ordered + hash index).
//!   Baseline (`snapshot_apply_std_hashmap`): a `std::collections::HashMap`
//!   clone + insert, the copy-on-write a non-persistent snapshot needs.
//! - `merge`: the whole VisionFlow fixture (435 leaves) merged into a
//!   store holding it, alternating between two versions that differ in
//!   every leaf (435 changes per commit), and the same document again (no
//!   change).
//!
//! `cargo bench --bench writes`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main,
};
use imbl::OrdMap;
use serde_json::Value;

mod support;

const SIZES: [usize; 2] = [1_000, 100_000];
const ROTATION: usize = 4096;

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn set(c: &mut Criterion) {
    let mut group = c.benchmark_group("set");
    configure(&mut group);
    for keys in SIZES {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.db");
        let raw_path = dir.path().join("raw.db");
        let leaves = support::generated_leaves(keys);
        support::build_db(&path, &leaves);
        std::fs::copy(&path, &raw_path).expect("copy the database");
        let targets = support::numeric_keys(&leaves, ROTATION);
        drop(leaves);

        let store = support::open_store(&path);
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("livesettings", keys), |b| {
            b.iter(|| {
                counter += 1;
                let key = &targets[counter as usize % targets.len()];
                store.set(key, &(counter as f64 + 0.5)).unwrap()
            });
        });
        store.close().expect("close");

        let raw = support::raw_update_baseline(&raw_path);
        let mut update = raw.prepare(support::RAW_UPDATE).unwrap();
        let mut counter = 0u64;
        group.bench_function(BenchmarkId::new("sqlite_update_autocommit", keys), |b| {
            b.iter(|| {
                counter += 1;
                let key = &targets[counter as usize % targets.len()];
                update
                    .execute(((counter as f64 + 0.5).to_string(), key))
                    .unwrap()
            });
        });
    }
    group.finish();
}

fn snapshot_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_apply");
    configure(&mut group);
    for keys in SIZES {
        let leaves = support::generated_leaves(keys);
        let mut current: OrdMap<Arc<str>, Arc<Value>> = leaves
            .iter()
            .map(|(key, value)| (Arc::from(key.as_str()), Arc::new(value.clone())))
            .collect();
        let targets: Vec<Arc<str>> = support::any_keys(&leaves, ROTATION)
            .into_iter()
            .map(|key| current.get_key_value(key.as_str()).unwrap().0.clone())
            .collect();
        let values: Vec<Arc<Value>> = (0..ROTATION)
            .map(|at| Arc::new(Value::from(at as f64 + 0.5)))
            .collect();
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("imbl_ordmap_clone_insert", keys), |b| {
            b.iter(|| {
                at = (at + 1) % ROTATION;
                let mut next = current.clone();
                next.insert(Arc::clone(&targets[at]), Arc::clone(&values[at]));
                // The old snapshot is dropped once readers let go of it.
                current = next;
            });
        });
        black_box(&current);

        // The store's own step: both maps of the snapshot (ordered map for
        // prefix scans, hash index for point reads), via the public API.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.db");
        support::build_db(&path, &leaves);
        let store = livesettings::Options::new()
            .with_watch(livesettings::WatchMode::Off)
            .open(&path)
            .expect("open");
        let mut snapshot = store.snapshot().as_ref().clone();
        let keys_rotation = support::any_keys(&leaves, ROTATION);
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("livesettings_snapshot", keys), |b| {
            b.iter(|| {
                at = (at + 1) % ROTATION;
                snapshot = livesettings::bench_internals::apply_change(
                    &snapshot,
                    &keys_rotation[at],
                    Some(Value::from(at as f64 + 0.5)),
                )
                .expect("valid change");
            });
        });
        black_box(&snapshot);
    }
    group.finish();

    let mut group = c.benchmark_group("snapshot_apply_std_hashmap");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for keys in SIZES {
        let leaves = support::generated_leaves(keys);
        let mut current: HashMap<Arc<str>, Arc<Value>> = leaves
            .iter()
            .map(|(key, value)| (Arc::from(key.as_str()), Arc::new(value.clone())))
            .collect();
        let targets: Vec<Arc<str>> = support::any_keys(&leaves, ROTATION)
            .into_iter()
            .map(|key| current.get_key_value(key.as_str()).unwrap().0.clone())
            .collect();
        let value = Arc::new(Value::from(0.5));
        let mut at = 0usize;
        group.bench_function(BenchmarkId::new("clone_insert", keys), |b| {
            b.iter(|| {
                at = (at + 1) % ROTATION;
                let mut next = current.clone();
                next.insert(Arc::clone(&targets[at]), Arc::clone(&value));
                current = next;
            });
        });
        black_box(&current);
    }
    group.finish();
}

fn merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge");
    configure(&mut group);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("settings.db");
    let fixture = support::fixture();
    let other = support::perturbed(&fixture);
    let leaves = support::fixture_leaves();
    support::build_db(&path, &leaves);
    let store = support::open_store(&path);
    let mut flip = false;
    group.bench_function(BenchmarkId::new("fixture_all_changed", leaves.len()), |b| {
        b.iter(|| {
            flip = !flip;
            let commit = store.merge(if flip { &other } else { &fixture }).unwrap();
            debug_assert_eq!(commit.changes, leaves.len());
            commit
        });
    });
    store.merge(&fixture).unwrap();
    group.bench_function(BenchmarkId::new("fixture_unchanged", leaves.len()), |b| {
        b.iter(|| store.merge(&fixture).unwrap());
    });
    group.finish();
    store.close().expect("close");
}

criterion_group!(benches, set, snapshot_apply, merge);
criterion_main!(benches);
