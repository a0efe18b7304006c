//! The cost of consumer records: CPU of idle `livesettings watch`
//! processes that record themselves beside the database against ones with
//! recording switched off (`LIVESETTINGS_CONSUMER_RECORDS=off`), side by
//! side on the same database over the same window, and the record writes
//! per second (write system calls from `/proc/PID/io`, and the heartbeats
//! seen in the records).

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::idle::{binary, spawn_ready};
use super::{Config, Row, progress, schedstat, target};
use crate::support;

/// Processes per side.
const PER_SIDE: usize = 2;

fn spawn(binary: &Path, db: &Path, record: bool) -> Child {
    let mut command = Command::new(binary);
    command.arg("--db").arg(db).args(["watch", "--json"]);
    if !record {
        command.env("LIVESETTINGS_CONSUMER_RECORDS", "off");
    }
    spawn_ready(command)
}

/// Write system calls of a process so far (`syscw` in `/proc/PID/io`).
fn write_calls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("syscw:"))
        .and_then(|count| count.trim().parse().ok())
}

struct Sample {
    cpu: u64,
    writes: u64,
}

fn sample(children: &[(bool, Child)]) -> Vec<Sample> {
    children
        .iter()
        .map(|(_, child)| Sample {
            cpu: schedstat(child.id()).map_or(0, |(cpu, _, _)| cpu),
            writes: write_calls(child.id()).unwrap_or(0),
        })
        .collect()
}

pub fn rows(cfg: &Config, rows: &mut Vec<Row>) {
    let Some(binary) = binary() else {
        progress("no livesettings binary: skipping the consumer-record measurement");
        return;
    };
    let folder = cfg.workdir.join("consumers");
    std::fs::create_dir_all(&folder).expect("consumers folder");
    let db = folder.join("settings.db");
    support::build_db(&db, &support::fixture_leaves());
    let mut children: Vec<(bool, Child)> = Vec::new();
    for _ in 0..PER_SIDE {
        for record in [true, false] {
            children.push((record, spawn(&binary, &db, record)));
        }
    }
    // Let the start-up re-check backoff (~0.4 s) finish.
    std::thread::sleep(Duration::from_secs(1));
    let heartbeats_before = heartbeats(&db);
    let before = sample(&children);
    let started = Instant::now();
    progress(format!(
        "consumer records: sampling {} idle watch processes for {:.0} s",
        children.len(),
        cfg.idle.as_secs_f64()
    ));
    std::thread::sleep(cfg.idle);
    let after = sample(&children);
    let heartbeats_after = heartbeats(&db);
    let elapsed = started.elapsed().as_secs_f64();
    let recorded = livesettings::consumers(&db).map_or(0, |list| list.len());
    for (_, child) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let side = |record: bool| {
        let (mut cpu, mut writes) = (0u64, 0u64);
        for (((kind, _), before), after) in children.iter().zip(&before).zip(&after) {
            if *kind == record {
                cpu += after.cpu.saturating_sub(before.cpu);
                writes += after.writes.saturating_sub(before.writes);
            }
        }
        let n = PER_SIDE as f64;
        (
            cpu as f64 / n / (elapsed * 1e9) * 100.0,
            writes as f64 / n / elapsed,
        )
    };
    let (with_cpu, with_writes) = side(true);
    let (without_cpu, without_writes) = side(false);
    let extra = with_cpu - without_cpu;
    let record_writes: u64 = heartbeats_after
        .iter()
        .map(|(session, at)| {
            let was = heartbeats_before
                .iter()
                .find(|(known, _)| known == session)
                .map_or(0, |(_, at)| *at);
            u64::from(*at != was)
        })
        .sum();
    rows.push(
        Row::new(
            "consumers",
            format!(
                "CPU of an idle `watch` recording itself as a consumer vs. with `LIVESETTINGS_CONSUMER_RECORDS=off`, {PER_SIDE} of each on one database, over {elapsed:.0} s"
            ),
        )
        .ours(format!("{with_cpu:.4} % vs {without_cpu:.4} % of a core"), "")
        .ratio(format!("+{extra:.4} % per consumer"))
        .target(target("≤ +0.02 % per consumer", extra <= 0.02)),
    );
    rows.push(
        Row::new(
            "consumers",
            format!(
                "write calls per second of an idle `watch` with and without its record ({recorded} records listed, {record_writes} of them rewritten during the window)"
            ),
        )
        .ours(
            format!("{with_writes:.2}/s vs {without_writes:.2}/s per process"),
            "",
        )
        .target(target("≈ 1 record write/s (heartbeat)", with_writes - without_writes <= 1.5)),
    );
}

/// Each record's heartbeat (Unix ms), by session.
fn heartbeats(db: &Path) -> Vec<(String, u128)> {
    livesettings::consumers(db)
        .unwrap_or_default()
        .into_iter()
        .map(|consumer| {
            let at = consumer
                .heartbeat
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis());
            (consumer.session, at)
        })
        .collect()
}
