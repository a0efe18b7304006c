//! Cost curves: how opening, memory, point reads, `set`, a foreign commit's
//! arrival and a full reload grow from 1 000 to 1 000 000 keys, one row
//! per size in one table.

use std::fmt::Write as _;

use super::foreign::{Writer, through_store};
use super::memory::measure;
use super::micro::{each, per_op};
use super::reload::{open_times, reload_after_dropped_trigger};
use super::{Config, Golden, Samples, fresh_copy, ns, progress};
use crate::support;

pub const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

struct Point {
    keys: usize,
    open: Samples,
    memory: Option<f64>,
    get: Samples,
    set: Samples,
    foreign: Samples,
    foreign_missed: usize,
    reload: Samples,
}

fn measure_size(cfg: &Config, keys: usize) -> Point {
    let golden = Golden::build(&cfg.workdir, keys);
    let path = fresh_copy(&golden.path, &cfg.workdir, &format!("curve-{keys}"));
    let reps = if keys >= 1_000_000 { 3 } else { 5 };

    progress(format!("curve at {keys} keys: open"));
    let open = open_times(&path, keys, reps);

    progress(format!("curve at {keys} keys: memory"));
    let raw = support::raw_bytes(&golden.leaves) as f64;
    let memory =
        measure(&path, "store").map(|(before, after, _)| after.saturating_sub(before) as f64 / raw);

    progress(format!("curve at {keys} keys: get, set"));
    let store = support::open_store(&path);
    let spread = support::numeric_keys(&golden.leaves, 4_096);
    let batch = 10_000;
    let get = per_op(cfg.read_batches, batch, |at| {
        let key = &spread[at % spread.len()];
        std::hint::black_box(store.get::<f64>(key).ok().flatten());
    });
    let targets = support::numeric_keys(&golden.leaves, 64);
    let set = each(cfg.set_samples.min(500), 20, |at| {
        store
            .set(&targets[at % targets.len()], &(at as f64 + 0.5))
            .expect("set");
    });

    progress(format!("curve at {keys} keys: full reload"));
    let events = store.subscribe("").expect("subscribe");
    let mut reloads = Vec::new();
    for _ in 0..reps {
        if let Some(apply) = reload_after_dropped_trigger(&store, &events, &path) {
            reloads.push(apply.as_nanos() as f64);
        }
    }
    drop(events);
    store.close().expect("close");

    progress(format!("curve at {keys} keys: foreign commit → event"));
    let key = support::numeric_keys(&golden.leaves, 1).remove(0);
    let db = fresh_copy(&golden.path, &cfg.workdir, &format!("curve-foreign-{keys}"));
    let delays = through_store(cfg, &db, &key, Writer::KeptOpen);
    Point {
        keys,
        open,
        memory,
        get,
        set,
        foreign: delays.samples,
        foreign_missed: delays.missed,
        reload: Samples::new(reloads),
    }
}

/// The curves table, in markdown.
pub fn table(cfg: &Config) -> String {
    let points: Vec<Point> = SIZES.iter().map(|&keys| measure_size(cfg, keys)).collect();
    let mut out = String::new();
    out.push_str(
        "\n### Cost curves\n\nMedians (p99 in brackets); memory is the RSS growth of `Store::open` over the raw key + JSON bytes. Foreign commits: a Python `sqlite3` writer keeping its connection open, one commit of one key per interval.\n\n",
    );
    out.push_str(
        "| keys | open (ready) | memory (× raw) | `get::<f64>`, spread keys | `set` end to end | foreign commit → event | full reload (`last_apply`) |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for point in &points {
        let both = |samples: &Samples| {
            if samples.len() == 0 {
                "—".to_owned()
            } else {
                format!("{} ({})", ns(samples.median()), ns(samples.p99()))
            }
        };
        let missed = if point.foreign_missed > 0 {
            format!(", {} never seen", point.foreign_missed)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}{} | {} |",
            point.keys,
            ns(point.open.median()),
            point
                .memory
                .map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}×")),
            both(&point.get),
            both(&point.set),
            both(&point.foreign),
            missed,
            both(&point.reload),
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let growth = |a: &Samples, b: &Samples| {
            if a.len() == 0 || b.len() == 0 {
                "—".to_owned()
            } else {
                format!("{:.2}×", b.median() / a.median())
            }
        };
        let _ = writeln!(
            out,
            "| growth {}→{} | {} | — | {} | {} | {} | {} |",
            first.keys,
            last.keys,
            growth(&first.open, &last.open),
            growth(&first.get, &last.get),
            growth(&first.set, &last.set),
            growth(&first.foreign, &last.foreign),
            growth(&first.reload, &last.reload),
        );
        let open_met = last.open.median() <= 1e9;
        let foreign_met = last.foreign.len() > 0 && last.foreign.median() <= 1e6;
        let _ = writeln!(
            out,
            "\nAt {} keys: opens (ready) in {} (target ≤ 1 s: {}); a one-key foreign change arrives in {} median (target ≤ 1 ms: {}).",
            last.keys,
            ns(last.open.median()),
            if open_met { "met" } else { "**missed**" },
            ns(last.foreign.median()),
            if foreign_met { "met" } else { "**missed**" },
        );
    }
    out
}
