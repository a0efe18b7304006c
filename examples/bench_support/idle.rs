//! CPU of an idle `livesettings watch`, in file-event mode and in poll-only
//! mode (250 ms default), from the per-thread CPU nanoseconds in
//! `/proc/PID/task/*/schedstat`. Both processes run side by side over the
//! same window, each on its own database holding the fixture.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Config, Row, progress, schedstat, target};
use crate::support;

/// Builds (or refreshes) `livesettings` next to this example's profile
/// directory and returns its path (the consumers section uses it too).
pub(super) fn binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?.to_owned();
    let target_dir = profile_dir.parent()?.to_owned();
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    if !release {
        progress("warning: not a release build; idle numbers will not be representative");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--bin", "livesettings"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target_dir);
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() => {}
        other => progress(format!(
            "cargo build of the CLI failed ({other:?}); using what exists"
        )),
    }
    let binary = profile_dir.join("livesettings");
    binary.is_file().then_some(binary)
}

fn spawn(binary: &Path, db: &Path, poll: bool) -> Child {
    let mut command = Command::new(binary);
    command
        .arg("--db")
        .arg(db)
        .args(["watch", "--json", "--no-defaults"]);
    if poll {
        command.arg("--poll");
    }
    spawn_ready(command)
}

/// Starts a `watch` command, waits for its `ready` line, and keeps draining
/// its stdout (nothing is expected while idle).
pub(super) fn spawn_ready(mut command: Command) -> Child {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start livesettings watch");
    let mut stdout = BufReader::new(child.stdout.take().expect("watch stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("watch ready line");
    assert!(
        line.contains("\"ready\""),
        "watch did not report ready: {line:?}"
    );
    std::thread::spawn(move || for _ in stdout.lines() {});
    child
}

pub fn rows(cfg: &Config, rows: &mut Vec<Row>) {
    let Some(binary) = binary() else {
        progress("no livesettings binary: skipping the idle measurement");
        return;
    };
    let leaves = support::fixture_leaves();
    let mut children = Vec::new();
    for (name, poll) in [("idle-events", false), ("idle-poll", true)] {
        let folder = cfg.workdir.join(name);
        std::fs::create_dir_all(&folder).expect("idle folder");
        let db = folder.join("settings.db");
        support::build_db(&db, &leaves);
        children.push((poll, spawn(&binary, &db, poll)));
    }
    // Let the start-up re-check backoff (~0.4 s) finish.
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<_> = children
        .iter()
        .map(|(_, child)| schedstat(child.id()).expect("schedstat"))
        .collect();
    let started = Instant::now();
    progress(format!(
        "idle watch processes: sampling for {:.0} s",
        cfg.idle.as_secs_f64()
    ));
    std::thread::sleep(cfg.idle);
    let after: Vec<_> = children
        .iter()
        .map(|(_, child)| schedstat(child.id()).expect("schedstat"))
        .collect();
    let elapsed = started.elapsed().as_nanos() as f64;
    for ((poll, mut child), ((cpu0, slices0, _), (cpu1, slices1, threads))) in
        children.into_iter().zip(before.into_iter().zip(after))
    {
        let _ = child.kill();
        let _ = child.wait();
        let percent = (cpu1.saturating_sub(cpu0)) as f64 / elapsed * 100.0;
        let wakeups = (slices1.saturating_sub(slices0)) as f64 / (elapsed / 1e9);
        let (mode, limit) = if poll {
            ("poll-only mode (`watch --poll`, 250 ms)", 0.1)
        } else {
            ("file-event mode (1 s safety poll)", 0.05)
        };
        rows.push(
            Row::new(
                "idle cost",
                format!(
                    "CPU of an idle `livesettings watch`, {mode}, over {:.0} s ({threads} threads, {wakeups:.1} wake-ups/s)",
                    elapsed / 1e9
                ),
            )
            .ours(format!("{percent:.4} % of a core"), "")
            .target(target(format!("≤ {limit} %"), percent <= limit)),
        );
    }
}
