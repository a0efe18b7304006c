//! End-to-end benchmark report: one markdown table (medians, 99th
//! percentiles, ratios against baselines measured in the same run) and the
//! machine it ran on, on stdout; progress on stderr.
//!
//! ```text
//! cargo run --release --features bench-internals --example bench_report            # full run (~3 min)
//! cargo run --release --features bench-internals --example bench_report -- --quick # shorter, noisier
//! cargo run --release --features bench-internals --example bench_report -- --only foreign,idle
//! ```
//!
//! Sections (for `--only`): `memory`, `reads`, `writes`, `engine`, `shape`,
//! `contention`, `reload`, `foreign`, `idle`, `consumers`, `serve` (the HTTP
//! server's event stream against the in-process subscriber), `curves` (1 000
//! to 1 000 000 keys), `fleet` (with `--features nats`). Environment: `BENCH_IDLE_SECS` (idle sample
//! per `watch` process, default 30, 5 with `--quick`), `BENCH_LARGE_KEYS`
//! (default 100000), `BENCH_DIR` (where the databases go, default a temporary
//! folder). Needs `python3` (with its `sqlite3` module) for the foreign
//! writer; the idle section builds the `livesettings` binary of the same
//! profile.
//!
//! The criterion micro-benchmarks (`cargo bench`) measure the reads and the
//! write paths in more detail.

#[path = "../benches/support/mod.rs"]
mod support;

mod bench_support;

use std::path::PathBuf;
use std::time::Instant;

use bench_support::{Config, Golden, Row, machine, progress, table};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--memory-child") {
        let kind = args.get(1).expect("--memory-child KIND PATH");
        let path = PathBuf::from(args.get(2).expect("--memory-child KIND PATH"));
        bench_support::memory::child(kind, &path);
        return;
    }
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        eprintln!(
            "usage: bench_report [--quick] [--only memory,reads,writes,engine,shape,contention,reload,foreign,idle,consumers,serve,curves,fleet]"
        );
        return;
    }
    let mut cfg = Config::from_args(&args);
    let _temp; // keeps the temporary folder alive until the end
    cfg.workdir = match std::env::var_os("BENCH_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("create BENCH_DIR");
            dir
        }
        None => {
            let temp = tempfile::tempdir().expect("temporary folder");
            let dir = temp.path().to_owned();
            _temp = temp;
            dir
        }
    };
    let started = Instant::now();

    let wants_small = ["reads", "writes", "engine", "shape", "foreign"]
        .iter()
        .any(|section| cfg.wants(section));
    let wants_large = [
        "memory",
        "reads",
        "writes",
        "engine",
        "shape",
        "contention",
        "reload",
        "foreign",
    ]
    .iter()
    .any(|section| cfg.wants(section));
    let thousand = wants_small.then(|| Golden::build(&cfg.workdir, 1_000));
    let five_hundred = cfg
        .wants("foreign")
        .then(|| Golden::build(&cfg.workdir, 500));
    let large = wants_large.then(|| Golden::build(&cfg.workdir, cfg.large));

    let mut rows: Vec<Row> = Vec::new();
    if let Some(large) = &large {
        if cfg.wants("memory") {
            bench_support::memory::rows(&cfg, large, &mut rows);
        }
        if let Some(thousand) = &thousand {
            if cfg.wants("reads") {
                bench_support::micro::read_rows(&cfg, thousand, large, &mut rows);
            }
            if cfg.wants("writes") {
                bench_support::micro::apply_rows(&cfg, thousand, large, &mut rows);
                bench_support::micro::write_rows(&cfg, thousand, large, &mut rows);
            }
            if cfg.wants("engine") {
                bench_support::engine::rows(&cfg, thousand, large, &mut rows);
            }
            if cfg.wants("shape") {
                bench_support::tree_shape::rows(&cfg, thousand, large, &mut rows);
            }
        }
        if cfg.wants("contention") {
            bench_support::contention::rows(&cfg, large, &mut rows);
        }
        if cfg.wants("reload") {
            bench_support::reload::rows(&cfg, large, &mut rows);
        }
        if let Some(five_hundred) = &five_hundred {
            bench_support::foreign::rows(&cfg, five_hundred, large, &mut rows);
        }
    }
    if cfg.wants("idle") {
        bench_support::idle::rows(&cfg, &mut rows);
    }
    if cfg.wants("consumers") {
        bench_support::consumers::rows(&cfg, &mut rows);
    }
    if cfg.wants("serve") {
        bench_support::serve::rows(&cfg, &mut rows);
    }
    // Needs `--features nats` (and the nats-server binary `.ci/run` installs).
    #[cfg(feature = "nats")]
    if cfg.wants("fleet") {
        bench_support::fleet::rows(&cfg, &mut rows);
    }
    let curves = cfg
        .wants("curves")
        .then(|| bench_support::curves::table(&cfg));

    let command = std::iter::once(
        "cargo run --release --features bench-internals --example bench_report".to_owned(),
    )
    .chain((!args.is_empty()).then(|| format!("-- {}", args.join(" "))))
    .collect::<Vec<_>>()
    .join(" ");
    println!(
        "Benchmark report{} — `{command}` ({:.0} s)\n",
        if cfg.quick { " (quick run)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    print!("{}", machine(&cfg.workdir));
    println!(
        "\nTimes are wall-clock; \"p99\" is the 99th percentile of the samples (of batch means where the measurement says so). Ratios compare medians.\n"
    );
    print!("{}", table(&rows));
    if let Some(curves) = curves {
        print!("{curves}");
    }
    progress("done");
}
