//! Plumbing for `bench_report`: configuration, statistics, the markdown
//! table, `/proc` readers and the machine description. The scenarios live in
//! the sibling modules.

pub mod consumers;
pub mod contention;
pub mod curves;
pub mod engine;
#[cfg(feature = "nats")]
pub mod fleet;
pub mod foreign;
pub mod idle;
pub mod memory;
pub mod micro;
pub mod reload;
pub mod serve;
pub mod tree_shape;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to run and how long.
#[derive(Clone, Debug)]
pub struct Config {
    pub quick: bool,
    /// Sections to run (all when empty).
    pub only: Vec<String>,
    /// Batches of the read micro-benchmarks.
    pub read_batches: usize,
    /// Writes timed per `set` measurement.
    pub set_samples: usize,
    /// Seconds of the contention run (per side).
    pub contention: Duration,
    /// Foreign commits per writer run.
    pub commits: usize,
    /// Delay between foreign commits.
    pub commit_interval: Duration,
    /// Repetitions of each full reload measurement.
    pub reload_reps: usize,
    /// Idle sampling time per `watch` process.
    pub idle: Duration,
    /// The large key count.
    pub large: usize,
    /// Where the databases go.
    pub workdir: PathBuf,
}

impl Config {
    pub fn from_args(args: &[String]) -> Config {
        let quick = args.iter().any(|arg| arg == "--quick");
        let only = args
            .iter()
            .position(|arg| arg == "--only")
            .and_then(|at| args.get(at + 1))
            .map(|list| list.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let idle_default = if quick { 5 } else { 30 };
        let idle = std::env::var("BENCH_IDLE_SECS")
            .ok()
            .and_then(|secs| secs.parse::<f64>().ok())
            .unwrap_or(idle_default as f64);
        let large = std::env::var("BENCH_LARGE_KEYS")
            .ok()
            .and_then(|keys| keys.parse().ok())
            .unwrap_or(100_000);
        Config {
            quick,
            only,
            read_batches: if quick { 40 } else { 200 },
            set_samples: if quick { 300 } else { 2_000 },
            contention: Duration::from_secs(if quick { 1 } else { 3 }),
            commits: if quick { 50 } else { 200 },
            commit_interval: Duration::from_millis(20),
            reload_reps: if quick { 3 } else { 10 },
            idle: Duration::from_secs_f64(idle),
            large,
            workdir: PathBuf::new(),
        }
    }

    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == section)
    }
}

/// Sorted samples with nearest-rank percentiles.
#[derive(Clone, Debug)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Samples {
        values.sort_by(f64::total_cmp);
        Samples(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn percentile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    pub fn median(&self) -> f64 {
        self.percentile(0.5)
    }

    pub fn p99(&self) -> f64 {
        self.percentile(0.99)
    }
}

/// A duration in nanoseconds, human-scaled.
pub fn ns(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let abs = value.abs();
    if abs < 1e3 {
        format!("{value:.1} ns")
    } else if abs < 1e6 {
        format!("{:.2} µs", value / 1e3)
    } else if abs < 1e9 {
        format!("{:.2} ms", value / 1e6)
    } else {
        format!("{:.2} s", value / 1e9)
    }
}

/// `a / b` as "N× faster/slower" for durations (smaller is better).
pub fn faster(ours: f64, baseline: f64) -> String {
    if !(ours > 0.0 && baseline > 0.0) {
        return "—".to_owned();
    }
    if baseline >= ours {
        format!("{:.1}× faster", baseline / ours)
    } else {
        format!("{:.2}× slower", ours / baseline)
    }
}

/// A target check: "≤ 50 ns (42.0 ns): met".
pub fn target(text: impl Into<String>, met: bool) -> String {
    let text = text.into();
    if met {
        format!("{text}: met")
    } else {
        format!("{text}: **missed**")
    }
}

/// One line of the report.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub section: &'static str,
    pub measurement: String,
    pub median: String,
    pub p99: String,
    pub baseline: String,
    pub base_median: String,
    pub base_p99: String,
    pub ratio: String,
    pub target: String,
}

impl Row {
    pub fn new(section: &'static str, measurement: impl Into<String>) -> Row {
        Row {
            section,
            measurement: measurement.into(),
            ..Row::default()
        }
    }

    pub fn ours(mut self, median: impl Into<String>, p99: impl Into<String>) -> Row {
        self.median = median.into();
        self.p99 = p99.into();
        self
    }

    pub fn baseline(
        mut self,
        name: impl Into<String>,
        median: impl Into<String>,
        p99: impl Into<String>,
    ) -> Row {
        self.baseline = name.into();
        self.base_median = median.into();
        self.base_p99 = p99.into();
        self
    }

    pub fn ratio(mut self, ratio: impl Into<String>) -> Row {
        self.ratio = ratio.into();
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Row {
        self.target = target.into();
        self
    }

    /// Durations in ns: medians, p99s and the speed ratio of the medians.
    pub fn timed(self, ours: &Samples, name: impl Into<String>, baseline: &Samples) -> Row {
        self.ours(ns(ours.median()), ns(ours.p99()))
            .baseline(name, ns(baseline.median()), ns(baseline.p99()))
            .ratio(faster(ours.median(), baseline.median()))
    }
}

/// The markdown table.
pub fn table(rows: &[Row]) -> String {
    let cell = |text: &str| {
        if text.is_empty() {
            "—".to_owned()
        } else {
            text.replace('|', "\\|")
        }
    };
    let mut out = String::new();
    out.push_str(
        "| Section | Measurement | livesettings median | p99 | Baseline (same run) | baseline median | p99 | Ratio (medians) | Target |\n",
    );
    out.push_str("|---|---|---:|---:|---|---:|---:|---|---|\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.section,
            cell(&row.measurement),
            cell(&row.median),
            cell(&row.p99),
            cell(&row.baseline),
            cell(&row.base_median),
            cell(&row.base_p99),
            cell(&row.ratio),
            cell(&row.target),
        );
    }
    out
}

/// VmRSS of a process, in bytes.
pub fn vm_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (ns) and timeslice count summed over a process's threads, from
/// `/proc/PID/task/*/schedstat`.
pub fn schedstat(pid: u32) -> Option<(u64, u64, usize)> {
    let mut cpu = 0;
    let mut slices = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        cpu += fields.first().copied().unwrap_or(0);
        slices += fields.get(2).copied().unwrap_or(0);
        threads += 1;
    }
    Some((cpu, slices, threads))
}

/// The machine, the SQLite versions involved and the filesystem of the
/// work directory.
pub fn machine(workdir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim())
        .to_owned();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let python_sqlite = command_output(
        "python3",
        &[
            "-c",
            "import sqlite3, sys; print(f'{sqlite3.sqlite_version} (Python {sys.version.split()[0]})')",
        ],
    );
    let shell = command_output("sqlite3", &["--version"])
        .split_whitespace()
        .next()
        .unwrap_or("not installed")
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "- CPU: {model}, {nproc} logical CPUs (nproc), {memory} RAM, Linux {kernel}; load average at the end: {load}\n\
         - SQLite: {} bundled in livesettings (rusqlite); foreign writers: Python sqlite3 {python_sqlite}, sqlite3 shell {shell}\n\
         - Databases in {} ({})\n",
        rusqlite::version(),
        workdir.display(),
        filesystem(workdir),
    )
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "not available".to_owned())
}

/// The type of the filesystem holding `path` (longest mount-point match).
fn filesystem(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown filesystem".to_owned(), |(_, kind)| kind)
}

/// A database built once per report and copied for each scenario.
pub struct Golden {
    pub keys: usize,
    pub path: PathBuf,
    pub leaves: Vec<(String, serde_json::Value)>,
}

impl Golden {
    pub fn build(workdir: &Path, keys: usize) -> Golden {
        let started = std::time::Instant::now();
        let leaves = crate::support::generated_leaves(keys);
        let path = workdir.join(format!("golden-{keys}.db"));
        crate::support::build_db(&path, &leaves);
        progress(format!(
            "built a {keys}-key database in {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        Golden { keys, path, leaves }
    }
}

/// A fresh copy of a golden database under `name` in the work directory.
pub fn fresh_copy(golden: &Path, workdir: &Path, name: &str) -> PathBuf {
    let folder = workdir.join(name);
    if folder.exists() {
        std::fs::remove_dir_all(&folder).expect("clear the old copy");
    }
    std::fs::create_dir_all(&folder).expect("create the copy's folder");
    let path = folder.join("settings.db");
    std::fs::copy(golden, &path).expect("copy the golden database");
    path
}

/// Progress on stderr, so stdout holds only the report.
pub fn progress(message: impl AsRef<str>) {
    eprintln!("[bench_report] {}", message.as_ref());
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, as Python's
/// `time.time_ns()`).
pub fn realtime_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as i128)
}
