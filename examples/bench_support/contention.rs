//! Two reader threads while a third commits a change every millisecond: the
//! store against `RwLock<HashMap<String, Value>>` with the same writer rate.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Config, Golden, Row, Samples, faster, fresh_copy, ns, progress, target};
use crate::support;

const READERS: usize = 2;
const BATCH: usize = 1_000;
const TICK: Duration = Duration::from_millis(1);

struct Outcome {
    /// Reads per second, all readers together.
    throughput: f64,
    /// Mean ns per read of each batch of `BATCH`.
    per_read: Samples,
    writes: usize,
    write_latency: Samples,
}

fn drive(
    duration: Duration,
    keys: &[String],
    read: impl Fn(&str) -> Option<f64> + Sync,
    mut write: impl FnMut(usize) + Send,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(READERS + 2);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|reader| {
                let (stop, start, read) = (&stop, &start, &read);
                scope.spawn(move || {
                    let mut at = reader * 1_777;
                    let mut reads = 0u64;
                    let mut means = Vec::new();
                    start.wait();
                    let began = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let batch = Instant::now();
                        for _ in 0..BATCH {
                            black_box(read(&keys[at % keys.len()]));
                            at += 1;
                        }
                        means.push(batch.elapsed().as_nanos() as f64 / BATCH as f64);
                        reads += BATCH as u64;
                    }
                    (reads as f64 / began.elapsed().as_secs_f64(), means)
                })
            })
            .collect();
        let writer = {
            let (stop, start) = (&stop, &start);
            scope.spawn(move || {
                let mut latencies = Vec::new();
                start.wait();
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += TICK;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > 10 * TICK {
                        // Far behind (starved of CPU): do not burst to catch up.
                        next = now;
                    }
                    let began = Instant::now();
                    write(latencies.len());
                    latencies.push(began.elapsed().as_nanos() as f64);
                }
                latencies
            })
        };
        start.wait();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let mut throughput = 0.0;
        let mut means = Vec::new();
        for reader in readers {
            let (rate, batch_means) = reader.join().expect("reader thread");
            throughput += rate;
            means.extend(batch_means);
        }
        let latencies = writer.join().expect("writer thread");
        Outcome {
            throughput,
            per_read: Samples::new(means),
            writes: latencies.len(),
            write_latency: Samples::new(latencies),
        }
    })
}

fn store_run(cfg: &Config, golden: &Golden, keys: &[String], written: &[String]) -> Outcome {
    let path = fresh_copy(&golden.path, &cfg.workdir, "contention");
    let store = support::open_store(&path);
    let outcome = drive(
        cfg.contention,
        keys,
        |key| store.get::<f64>(key).unwrap(),
        |at| {
            store
                .set(&written[at % written.len()], &(at as f64 + 0.25))
                .unwrap();
        },
    );
    store.close().expect("close");
    outcome
}

fn baseline_run(cfg: &Config, golden: &Golden, keys: &[String], written: &[String]) -> Outcome {
    let map: RwLock<HashMap<String, Value>> = RwLock::new(golden.leaves.iter().cloned().collect());
    drive(
        cfg.contention,
        keys,
        |key| map.read().unwrap().get(key).and_then(Value::as_f64),
        |at| {
            let key = written[at % written.len()].clone();
            map.write()
                .unwrap()
                .insert(key, Value::from(at as f64 + 0.25));
        },
    )
}

pub fn rows(cfg: &Config, golden: &Golden, rows: &mut Vec<Row>) {
    let written = support::numeric_keys(&golden.leaves, 64);
    let setting = format!(
        "{READERS} readers + 1 writer committing every 1 ms, {:.0} s, {} keys",
        cfg.contention.as_secs_f64(),
        golden.keys
    );
    for (label, count) in [
        ("4 096 keys spread over the tree", 4096),
        ("16 hot keys", 16),
    ] {
        let keys = support::numeric_keys(&golden.leaves, count);
        progress(format!(
            "contention at {} keys, reading {label}: store, then RwLock<HashMap>",
            golden.keys
        ));
        let ours = store_run(cfg, golden, &keys, &written);
        let base = baseline_run(cfg, golden, &keys, &written);
        let ratio = ours.throughput / base.throughput;
        rows.push(
            Row::new(
                "contention",
                format!(
                    "reader throughput, {setting}, reading {label} ({} store writes, {} baseline writes)",
                    ours.writes, base.writes
                ),
            )
            .ours(format!("{:.1} M reads/s", ours.throughput / 1e6), "")
            .baseline(
                "`RwLock<HashMap<String, Value>>`, same writer rate",
                format!("{:.1} M reads/s", base.throughput / 1e6),
                "",
            )
            .ratio(format!("{ratio:.2}× the baseline's throughput"))
            .target(target("≥ the baseline's", ratio >= 1.0)),
        );
        rows.push(
            Row::new(
                "contention",
                format!("time per read (means of batches of {BATCH}), {setting}, reading {label}"),
            )
            .timed(&ours.per_read, "`RwLock<HashMap>`", &base.per_read),
        );
        if count == 16 {
            continue;
        }
        rows.push(
            Row::new("contention", format!("writer: `set` latency, {setting}"))
                .ours(
                    ns(ours.write_latency.median()),
                    ns(ours.write_latency.p99()),
                )
                .baseline(
                    "`RwLock` write + insert",
                    ns(base.write_latency.median()),
                    ns(base.write_latency.p99()),
                )
                .ratio(faster(
                    ours.write_latency.median(),
                    base.write_latency.median(),
                )),
        );
    }
}
