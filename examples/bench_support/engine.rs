//! The commit protocol's costs: a `set` in the default watch mode against
//! the plain upsert it runs (triggers included), and what the watcher
//! spends while the store itself writes once per millisecond.

use std::time::{Duration, Instant};

use livesettings::{Options, WatchMode};

use super::{Config, Golden, Row, Samples, fresh_copy, progress, target};
use crate::support;

/// The upsert `Store::set` runs, as a plain connection would run it.
const UPSERT: &str = "INSERT INTO settings (key, value) VALUES (?1, ?2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value";

const ROTATION: usize = 64;

/// Times `set` and the plain upsert in alternating blocks of 100, each on
/// its own copy of the database, so that the machine's noise (this VM moves
/// by 20–40 % between runs) falls on both alike.
fn set_against_upsert(
    cfg: &Config,
    golden: &Golden,
    mode: WatchMode,
    name: &str,
) -> (Samples, Samples) {
    const BLOCK: usize = 100;
    let path = fresh_copy(
        &golden.path,
        &cfg.workdir,
        &format!("engine-set-{name}-{}", golden.keys),
    );
    let raw_path = path.with_file_name("raw.db");
    std::fs::copy(&path, &raw_path).expect("copy for the raw baseline");
    let targets = support::numeric_keys(&golden.leaves, ROTATION);
    let store = Options::new().with_watch(mode).open(&path).expect("open");
    let raw = support::raw_update_baseline(&raw_path);
    let mut upsert = raw.prepare(UPSERT).expect("prepare the upsert");
    let mut ours = Vec::with_capacity(cfg.set_samples);
    let mut baseline = Vec::with_capacity(cfg.set_samples);
    let mut at = 0;
    // Warm both.
    for _ in 0..200 {
        at += 1;
        store
            .set(&targets[at % ROTATION], &(at as f64 + 0.5))
            .expect("set");
        upsert
            .execute((&targets[at % ROTATION], (at as f64 + 0.5).to_string()))
            .expect("upsert");
    }
    while ours.len() < cfg.set_samples {
        for _ in 0..BLOCK {
            at += 1;
            let started = Instant::now();
            store
                .set(&targets[at % ROTATION], &(at as f64 + 0.5))
                .expect("set");
            ours.push(started.elapsed().as_nanos() as f64);
        }
        for _ in 0..BLOCK {
            at += 1;
            let started = Instant::now();
            upsert
                .execute((&targets[at % ROTATION], (at as f64 + 0.5).to_string()))
                .expect("upsert");
            baseline.push(started.elapsed().as_nanos() as f64);
        }
    }
    drop(upsert);
    store.close().expect("close");
    (Samples::new(ours), Samples::new(baseline))
}

/// CPU (ns) of this process's `livesettings-*` threads (watcher, events).
fn store_threads_cpu() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("livesettings-"))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One local `set` per millisecond for `span`: the watcher and event
/// threads' CPU share, and the checks they ran.
fn watcher_cpu_at_one_write_per_ms(
    cfg: &Config,
    golden: &Golden,
    span: Duration,
) -> (f64, u64, usize) {
    let path = fresh_copy(&golden.path, &cfg.workdir, "engine-watcher-cpu");
    let targets = support::numeric_keys(&golden.leaves, ROTATION);
    let store = Options::new().open(&path).expect("open");
    // Let the initial checks finish.
    std::thread::sleep(Duration::from_millis(300));
    let checks_before = store.stats().watcher_checks;
    let cpu_before = store_threads_cpu();
    let started = Instant::now();
    let mut writes = 0;
    while started.elapsed() < span {
        let due = started + Duration::from_millis(writes as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        store
            .set(&targets[writes % ROTATION], &(writes as f64 + 0.25))
            .expect("set");
        writes += 1;
    }
    let elapsed = started.elapsed();
    let cpu = store_threads_cpu().saturating_sub(cpu_before);
    let checks = store.stats().watcher_checks - checks_before;
    store.close().expect("close");
    (
        cpu as f64 / elapsed.as_nanos() as f64 * 100.0,
        checks,
        writes,
    )
}

pub fn rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    for golden in [small, large] {
        progress(format!(
            "engine: set against the plain upsert at {} keys",
            golden.keys
        ));
        let (ours, baseline) = set_against_upsert(cfg, golden, WatchMode::default(), "events");
        let ratio = ours.median() / baseline.median();
        rows.push(
            Row::new(
                "engine",
                format!(
                    "`set` in the default watch mode (file events): catch-up, write, validation, commit, apply, publish; {} keys",
                    golden.keys
                ),
            )
            .timed(
                &ours,
                "plain SQLite upsert (`INSERT … ON CONFLICT DO UPDATE`, triggers included), autocommit, no store",
                &baseline,
            )
            .target(target("median ≤ 1.5× the plain upsert", ratio <= 1.5)),
        );
    }
    progress("engine: set with the watcher off");
    let (off, baseline) = set_against_upsert(cfg, large, WatchMode::Off, "off");
    rows.push(
        Row::new(
            "engine",
            format!(
                "`set` with `WatchMode::Off` (no watcher thread), {} keys",
                large.keys
            ),
        )
        .timed(&off, "plain SQLite upsert, triggers included", &baseline),
    );
    let span = if cfg.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    progress("engine: watcher CPU at one local write per millisecond");
    let (share, checks, writes) = watcher_cpu_at_one_write_per_ms(cfg, small, span);
    rows.push(
        Row::new(
            "engine",
            format!(
                "watcher + file-event threads' CPU while the store writes once per millisecond ({writes} writes in {:.0} s, {checks} watcher checks), {} keys",
                span.as_secs_f64(),
                small.keys
            ),
        )
        .ours(format!("{share:.3} % of a core"), "")
        .target(target("≤ 1 % of a core", share <= 1.0)),
    );
}
