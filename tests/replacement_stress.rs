mod support;

// A deploy script renames a complete, closed copy over the database 100
// times while two embedding processes keep writing through their stores and
// two `livesettings watch --json` processes follow. Every process must follow
// every replacement; every write acknowledged on a file must be in that file
// with its own seq; nobody may keep a deleted side file open; and at the end
// everyone holds exactly what the file at the path holds.
//
// The embedding processes are this test binary itself, re-executed to run
// only [`stress_embedder_process`] (which does nothing unless
// `LIVESETTINGS_STRESS_ROLE` is set). They talk over stdout, one line each:
//
// - `ready <seq>` once the store is open;
// - `ack <writer> <key> <value> <seq> <t_begin_ns> <t_ack_ns>` for every
//   successful `set` (CLOCK_REALTIME before the call and after it returned);
// - `err <writer> <kind> <key> <value> <t_begin_ns> <t_end_ns> <message>`;
// - `reload <seq> <deploy.round in the snapshot>` for every `Event::Reloaded`;
// - `stopped <writes>` once writing stopped (on a `stop` line or stdin EOF);
// - after stdin EOF: `final <json of the whole snapshot>`, `fds <n>` and
//   `maps <n>` (entries of `/proc/self/fd` / `/proc/self/maps` naming a
//   deleted `settings.db*`, each also listed as a `deleted ...` line).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livesettings::{Event, Store};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use support::*;

/// How many times the deploy script renames a copy over the database.
const ROUNDS: usize = 100;
/// The helper test an embedding process runs.
const EMBEDDER_TEST: &str = "stress_embedder_process";
const ROLE_ENV: &str = "LIVESETTINGS_STRESS_ROLE";
const DB_ENV: &str = "LIVESETTINGS_STRESS_DB";
const WRITER_ENV: &str = "LIVESETTINGS_STRESS_WRITER";
const DB_NAME: &str = "settings.db";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos()
}

// ---------------------------------------------------------------------------
// The embedding process

/// Runs only as a child process of the stress test (see the module docs);
/// returns at once in a normal test run.
#[test]
fn stress_embedder_process() {
    if std::env::var_os(ROLE_ENV).is_none() {
        return;
    }
    run_embedder();
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").expect("write to stdout");
    out.flush().expect("flush stdout");
}

/// The variant name of an error (`FileReplaced`, `Busy`, …).
fn error_kind(error: &livesettings::Error) -> String {
    let debug = format!("{error:?}");
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// Entries of `/proc/self/fd` and lines of `/proc/self/maps` that name a
/// deleted file of the database.
fn deleted_db_files_of(proc_dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut fds = Vec::new();
    if let Ok(entries) = std::fs::read_dir(proc_dir.join("fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                if target.contains("(deleted)") && target.contains(DB_NAME) {
                    fds.push(format!("{} -> {target}", entry.path().display()));
                }
            }
        }
    }
    let maps = std::fs::read_to_string(proc_dir.join("maps"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("(deleted)") && line.contains(DB_NAME))
        .map(str::to_owned)
        .collect();
    (fds, maps)
}

fn run_embedder() {
    let path = PathBuf::from(std::env::var_os(DB_ENV).expect("the database path"));
    let writer = std::env::var(WRITER_ENV).expect("the writer id");
    // libtest may have printed "test … " without a newline.
    emit("");
    let store = Store::open(&path).expect("open the store");
    let events = store.subscribe("deploy").expect("subscribe");
    let stop = AtomicBool::new(false);
    let eof = (Mutex::new(false), Condvar::new());
    let done = AtomicBool::new(false);
    emit(&format!("ready {}", store.snapshot().seq()));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) if line.trim() == "stop" => stop.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            stop.store(true, Ordering::SeqCst);
            *eof.0.lock().unwrap() = true;
            eof.1.notify_all();
        });
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                match events.recv_timeout(Duration::from_millis(50)) {
                    Ok(Event::Reloaded { seq, reason }) => {
                        let round = store
                            .get_json("deploy.round")
                            .map_or("none".to_owned(), |value| value.to_string());
                        emit(&format!("reload {seq} {round} {reason}"));
                    }
                    Ok(Event::Lagged { missed, seq }) => emit(&format!("lagged {missed} {seq}")),
                    Ok(_) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
            }
        });

        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let key = format!("stress.{writer}.k{}", i % 8);
            let t_begin = now_ns();
            let outcome = store.set(&key, &i);
            let t_end = now_ns();
            match outcome {
                Ok(commit) => emit(&format!(
                    "ack {writer} {key} {i} {} {t_begin} {t_end}",
                    commit.seq
                )),
                Err(error) => emit(&format!(
                    "err {writer} {} {key} {i} {t_begin} {t_end} {}",
                    error_kind(&error),
                    error.to_string().replace('\n', " ")
                )),
            }
            i += 1;
        }
        emit(&format!("stopped {i}"));

        let mut closed = eof.0.lock().unwrap();
        while !*closed {
            closed = eof.1.wait(closed).unwrap();
        }
        drop(closed);
        // Both writers have stopped: give foreign commits time to arrive.
        poll_until(TIMEOUT, || {
            try_db_contents(&path).is_ok_and(|in_db| in_db == store_map(&store))
        });
        let map = store_map(&store);
        emit(&format!("final {}", serde_json::to_string(&map).unwrap()));
        let (fds, maps) = deleted_db_files_of(Path::new("/proc/self"));
        for entry in fds.iter().chain(&maps) {
            emit(&format!("deleted {entry}"));
        }
        emit(&format!("fds {}", fds.len()));
        emit(&format!("maps {}", maps.len()));
        done.store(true, Ordering::SeqCst);
    });
    drop(store);
}

// ---------------------------------------------------------------------------
// Child processes as seen from the test

#[derive(Default)]
struct Lines {
    /// (received at, line)
    lines: Vec<(u128, String)>,
    eof: bool,
}

struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<(Mutex<Lines>, Condvar)>,
}

impl Proc {
    fn spawn(name: &str, mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {name}: {error}"));
        let stdin = child.stdin.take();
        let out: Arc<(Mutex<Lines>, Condvar)> = Arc::default();
        let stdout = child.stdout.take().expect("piped stdout");
        let shared = Arc::clone(&out);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = now_ns();
                shared.0.lock().unwrap().lines.push((at, line));
                shared.1.notify_all();
            }
            shared.0.lock().unwrap().eof = true;
            shared.1.notify_all();
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{label} stderr] {line}");
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            stdin,
            out,
        }
    }

    fn len(&self) -> usize {
        self.out.0.lock().unwrap().lines.len()
    }

    fn lines(&self) -> Vec<(u128, String)> {
        self.out.0.lock().unwrap().lines.clone()
    }

    /// Waits until `done(lines)` holds or `deadline` passes (or stdout
    /// closes); returns whether it held.
    fn wait(&self, deadline: Instant, mut done: impl FnMut(&[(u128, String)]) -> bool) -> bool {
        let (lock, signal) = &*self.out;
        let mut state = lock.lock().unwrap();
        loop {
            if done(&state.lines) {
                return true;
            }
            let now = Instant::now();
            if state.eof || now >= deadline {
                return false;
            }
            state = signal.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// The first `n` lines from `from`, for failure messages.
    fn head(&self, from: usize, n: usize) -> String {
        let lines = self.lines();
        let from = from.min(lines.len());
        lines[from..(from + n).min(lines.len())]
            .iter()
            .map(|(at, line)| format!("    {at} {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `n` lines from `from`, for failure messages.
    fn tail(&self, from: usize, n: usize) -> String {
        let lines = self.lines();
        let from = from.min(lines.len()).max(lines.len().saturating_sub(n));
        lines[from..]
            .iter()
            .map(|(_, line)| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush the child's stdin");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Poll interval of this deadline-bounded wait for the exit.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// With `LIVESETTINGS_STRESS_DUMP=DIR`, writes every line each process
/// printed (prefixed with the time it was received) to `DIR/<name>.log`.
fn dump(procs: &[&Proc]) {
    let Some(dir) = std::env::var_os("LIVESETTINGS_STRESS_DUMP") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the dump folder");
    for proc in procs {
        let text: String = proc
            .lines()
            .iter()
            .map(|(at, line)| format!("{at} {line}\n"))
            .collect();
        let file = dir.join(format!("{}.log", proc.name.replace(' ', "-")));
        std::fs::write(&file, text).expect("write a dump");
        eprintln!("dumped {} to {}", proc.name, file.display());
    }
}

fn spawn_embedder(db: &Path, writer: &str) -> Proc {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args(["--exact", EMBEDDER_TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "embedder")
        .env(DB_ENV, db)
        .env(WRITER_ENV, writer)
        .env_remove("RUST_LOG");
    Proc::spawn(&format!("embedder {writer}"), command)
}

fn spawn_watcher(db: &Path, n: usize) -> Proc {
    let mut command = cli_command(db);
    command.args(["watch", "--json"]);
    Proc::spawn(&format!("watcher {n}"), command)
}

/// Whether an embedder printed, from line `from` on, a reload whose snapshot
/// holds `deploy.round = round`.
fn embedder_followed(lines: &[(u128, String)], from: usize, round: usize) -> Option<u128> {
    let want = round.to_string();
    lines.get(from..)?.iter().find_map(|(at, line)| {
        let mut words = line.split(' ');
        (words.next() == Some("reload") && words.nth(1) == Some(want.as_str())).then_some(*at)
    })
}

fn watcher_json(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

/// Whether a watcher printed, from line `from` on, a reload event followed
/// by the change of `deploy.round` to `round`.
fn watcher_followed(lines: &[(u128, String)], from: usize, round: usize) -> Option<u128> {
    let mut reloaded = false;
    for (at, line) in lines.get(from..)? {
        let Some(event) = watcher_json(line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("reload") => reloaded = true,
            Some("change")
                if reloaded && event["key"] == "deploy.round" && event["new"] == json!(round) =>
            {
                return Some(*at);
            }
            _ => {}
        }
    }
    None
}

/// A watcher's view rebuilt from its events, applied incrementally.
struct WatcherView {
    map: BTreeMap<String, Value>,
    next: usize,
    /// Lines that are none of ready, change, reload, lagged, resync.
    unexpected: Vec<String>,
    reloads: usize,
    /// `lagged` notices (the CLI then prints the differing keys as changes
    /// and a `resync` line).
    lags: usize,
}

impl WatcherView {
    fn advance(&mut self, lines: &[(u128, String)]) {
        for (_, line) in &lines[self.next.min(lines.len())..] {
            let Some(event) = watcher_json(line) else {
                continue;
            };
            match event["event"].as_str() {
                Some("change") => {
                    let key = event["key"]
                        .as_str()
                        .expect("a change names its key")
                        .to_owned();
                    match &event["new"] {
                        Value::Null => self.map.remove(&key),
                        new => self.map.insert(key, new.clone()),
                    };
                }
                Some("reload") => self.reloads += 1,
                Some("lagged") => self.lags += 1,
                Some("ready" | "resync") => {}
                _ => self.unexpected.push(line.clone()),
            }
        }
        self.next = lines.len();
    }
}

// ---------------------------------------------------------------------------
// The deploy script

/// A complete database made by a store in its own folder, seeded and closed.
fn make_template(dir: &Path) -> PathBuf {
    let template = dir.join("template.db");
    let store = Store::open(&template).expect("open the template store");
    store
        .merge(&json!({
            "app": {"name": "stress", "threads": 4, "ratio": 0.5, "tags": ["a", "b"]},
            "deploy": {"round": -1},
        }))
        .expect("seed the template");
    store.close().expect("close the template store");
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("template.db{suffix}"));
        assert!(
            !side.exists(),
            "the closed template left {}",
            side.display()
        );
    }
    template
}

/// Copies the template to `next`, sets `deploy.round = round` in the copy
/// and closes it.
fn make_copy(template: &Path, next: &Path, round: usize) {
    std::fs::copy(template, next).expect("copy the template");
    let conn = connect(next);
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('deploy.round', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [round.to_string()],
    )
    .expect("set deploy.round in the copy");
    conn.close().expect("close the copy");
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", next.display()));
        assert!(!side.exists(), "the closed copy left {}", side.display());
    }
}

/// What one round's file held, read after everyone followed it.
struct RoundRead {
    round: usize,
    t_before_rename: u128,
    t_after_rename: u128,
    t_read_start: u128,
    settings: BTreeMap<String, Value>,
    /// seq → (key, new)
    log: BTreeMap<i64, (String, Option<Value>)>,
}

/// When the read started, the settings, and the log (seq → key, new).
type ReadAt = (
    u128,
    BTreeMap<String, Value>,
    BTreeMap<i64, (String, Option<Value>)>,
);

fn read_round(path: &Path) -> ReadAt {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the path read-only");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let t_read_start = now_ns();
    conn.execute_batch("BEGIN").unwrap();
    let settings = {
        let mut statement = conn.prepare("SELECT key, value FROM settings").unwrap();
        statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .unwrap()
            .map(|row| {
                let (key, text) = row.unwrap();
                (key, serde_json::from_str(&text).expect("stored JSON"))
            })
            .collect()
    };
    let log = {
        let mut statement = conn
            .prepare("SELECT seq, key, new FROM settings_log")
            .unwrap();
        statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .unwrap()
            .map(|row| {
                let (seq, key, new) = row.unwrap();
                let new = new.map(|text| serde_json::from_str(&text).expect("logged JSON"));
                (seq, (key, new))
            })
            .collect()
    };
    conn.execute_batch("COMMIT").unwrap();
    drop(conn);
    (t_read_start, settings, log)
}

// ---------------------------------------------------------------------------
// Acknowledged writes

#[derive(Clone, Debug)]
struct Ack {
    process: usize,
    line: String,
    key: String,
    value: u64,
    seq: i64,
    t_begin: u128,
    t_ack: u128,
}

fn parse_acks(process: usize, lines: &[(u128, String)]) -> Vec<Ack> {
    lines
        .iter()
        .filter(|(_, line)| line.starts_with("ack "))
        .map(|(_, line)| {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 7, "a malformed ack line {line:?}");
            Ack {
                process,
                line: line.clone(),
                key: words[2].to_owned(),
                value: words[3].parse().expect("ack value"),
                seq: words[4].parse().expect("ack seq"),
                t_begin: words[5].parse().expect("ack t_begin"),
                t_ack: words[6].parse().expect("ack t_ack"),
            }
        })
        .collect()
}

fn proc_deleted_files(pid: u32) -> (Vec<String>, Vec<String>) {
    deleted_db_files_of(&PathBuf::from(format!("/proc/{pid}")))
}

// ---------------------------------------------------------------------------
// The test

#[test]
fn two_embedders_and_two_watchers_converge_while_a_deploy_renames_copies_over_the_file() {
    if std::env::var_os(ROLE_ENV).is_some() {
        return;
    }
    let started = Instant::now();
    let db = TempDb::new();
    let path = db.path.clone();
    let next = db.sibling("next.db");
    let template_dir = tempfile::tempdir().expect("a folder for the template");
    let template = make_template(template_dir.path());

    // Round 0: the first copy, in place before anyone opens it.
    make_copy(&template, &next, 0);
    std::fs::rename(&next, &path).expect("put the first copy in place");
    let initial = db_contents(&path);

    let deadline = Instant::now() + TIMEOUT;
    let mut watchers: Vec<Proc> = (0..2).map(|n| spawn_watcher(&path, n)).collect();
    for watcher in &watchers {
        assert!(
            watcher.wait(deadline, |lines| lines.iter().any(|(_, line)| {
                watcher_json(line).is_some_and(|e| e["event"] == "ready")
            })),
            "{} did not print ready:\n{}",
            watcher.name,
            watcher.tail(0, 20)
        );
    }
    let mut embedders: Vec<Proc> = ["w0", "w1"]
        .iter()
        .map(|w| spawn_embedder(&path, w))
        .collect();
    for embedder in &embedders {
        assert!(
            embedder.wait(deadline, |lines| lines
                .iter()
                .any(|(_, l)| l.starts_with("ready "))),
            "{} did not print ready:\n{}",
            embedder.name,
            embedder.tail(0, 20)
        );
    }

    let mut rng = Rng::new(0x5eed_2026);
    let mut reads: Vec<RoundRead> = Vec::with_capacity(ROUNDS);
    let mut follow_ms: Vec<f64> = Vec::with_capacity(ROUNDS);
    let rounds_started = Instant::now();
    for round in 1..=ROUNDS {
        make_copy(&template, &next, round);
        let from_e: Vec<usize> = embedders.iter().map(Proc::len).collect();
        let from_w: Vec<usize> = watchers.iter().map(Proc::len).collect();
        let t_before_rename = now_ns();
        std::fs::rename(&next, &path).expect("rename the copy over the database");
        let t_after_rename = now_ns();

        let deadline = Instant::now() + TIMEOUT;
        let mut laggards = Vec::new();
        let mut last_follow = t_after_rename;
        for (n, embedder) in embedders.iter().enumerate() {
            let mut at = None;
            embedder.wait(deadline, |lines| {
                at = embedder_followed(lines, from_e[n], round);
                at.is_some()
            });
            match at {
                Some(at) => last_follow = last_follow.max(at),
                None => laggards.push(format!(
                    "{} (no `reload … {round}` line); its first lines after the rename:\n{}\n  its last lines:\n{}",
                    embedder.name,
                    embedder.head(from_e[n], 10),
                    embedder.tail(from_e[n], 5)
                )),
            }
        }
        for (n, watcher) in watchers.iter().enumerate() {
            let mut at = None;
            watcher.wait(deadline, |lines| {
                at = watcher_followed(lines, from_w[n], round);
                at.is_some()
            });
            match at {
                Some(at) => last_follow = last_follow.max(at),
                None => laggards.push(format!(
                    "{} (no reload event then deploy.round = {round}); its first lines after the rename:\n{}\n  its last lines:\n{}",
                    watcher.name,
                    watcher.head(from_w[n], 10),
                    watcher.tail(from_w[n], 5)
                )),
            }
        }
        if !laggards.is_empty() {
            dump(&embedders.iter().chain(&watchers).collect::<Vec<_>>());
            eprintln!(
                "round {round}: t_before_rename {t_before_rename} t_after_rename {t_after_rename}"
            );
        }
        assert!(
            laggards.is_empty(),
            "round {round}: within {TIMEOUT:?} of the rename, these did not follow the new file:\n{}",
            laggards.join("\n")
        );
        follow_ms.push((last_follow - t_after_rename) as f64 / 1e6);

        // The workload, not a wait: the writers keep writing into round r's
        // file for a random 20–50 ms before it is read and replaced.
        std::thread::sleep(Duration::from_millis(20 + rng.below(31) as u64));
        let (t_read_start, settings, log) = read_round(&path);
        assert_eq!(
            settings.get("deploy.round"),
            Some(&json!(round)),
            "round {round}: the file at the path is not round {round}'s copy"
        );
        reads.push(RoundRead {
            round,
            t_before_rename,
            t_after_rename,
            t_read_start,
            settings,
            log,
        });
    }
    let rounds_took = rounds_started.elapsed();
    // The workload: writes into the last file after its round was read.
    std::thread::sleep(Duration::from_millis(50));

    // Stop the writers, then wait until everyone holds what the file holds.
    for embedder in &mut embedders {
        embedder.send("stop");
    }
    let deadline = Instant::now() + TIMEOUT;
    for embedder in &embedders {
        assert!(
            embedder.wait(deadline, |lines| lines
                .iter()
                .any(|(_, l)| l.starts_with("stopped "))),
            "{} did not stop writing:\n{}",
            embedder.name,
            embedder.tail(0, 20)
        );
    }
    let final_file = db_contents(&path);
    let mut failures: Vec<String> = Vec::new();

    let deadline = Instant::now() + TIMEOUT;
    let mut watcher_reloads = Vec::new();
    let mut watcher_lags = Vec::new();
    for watcher in &watchers {
        let mut view = WatcherView {
            map: initial.clone(),
            next: 0,
            unexpected: Vec::new(),
            reloads: 0,
            lags: 0,
        };
        watcher.wait(deadline, |lines| {
            view.advance(lines);
            view.map == final_file
        });
        watcher_reloads.push(view.reloads);
        watcher_lags.push(view.lags);
        if !view.unexpected.is_empty() {
            failures.push(format!(
                "{}: printed unexpected lines: {:?}",
                watcher.name,
                &view.unexpected[..view.unexpected.len().min(5)]
            ));
        }
        if view.map != final_file {
            failures.push(format!(
                "{}: its events never added up to the file at the path within {TIMEOUT:?}\n\
                 only in the file: {:?}\nonly in the watcher: {:?}\nlast lines:\n{}",
                watcher.name,
                final_file
                    .iter()
                    .filter(|(k, v)| view.map.get(*k) != Some(v))
                    .collect::<Vec<_>>(),
                view.map
                    .iter()
                    .filter(|(k, v)| final_file.get(*k) != Some(v))
                    .collect::<Vec<_>>(),
                watcher.tail(0, 15)
            ));
        }
        let (fds, maps) = proc_deleted_files(watcher.child.id());
        if !fds.is_empty() || !maps.is_empty() {
            failures.push(format!(
                "{} (pid {}) holds deleted database files:\n  fd: {fds:#?}\n  maps: {maps:#?}",
                watcher.name,
                watcher.child.id()
            ));
        }
    }

    // Close the embedders' stdin: they print their snapshot and what they hold.
    for embedder in &mut embedders {
        drop(embedder.stdin.take());
    }
    for embedder in &mut embedders {
        let finished = embedder.wait(Instant::now() + TIMEOUT * 2, |lines| {
            lines.iter().any(|(_, l)| l.starts_with("maps "))
        });
        let status = embedder.wait_exit(TIMEOUT);
        let lines = embedder.lines();
        if !finished || !status.is_some_and(|s| s.success()) {
            failures.push(format!(
                "{} did not finish cleanly (exit {status:?}):\n{}",
                embedder.name,
                embedder.tail(0, 20)
            ));
            continue;
        }
        let field = |prefix: &str| {
            lines
                .iter()
                .find_map(|(_, l)| l.strip_prefix(prefix).map(str::to_owned))
                .unwrap_or_default()
        };
        let map: BTreeMap<String, Value> =
            serde_json::from_str(&field("final ")).expect("the final line is a JSON map");
        if map != final_file {
            failures.push(format!(
                "{}: its final snapshot differs from the file at the path\n\
                 only in the file: {:?}\nonly in the snapshot: {:?}",
                embedder.name,
                final_file
                    .iter()
                    .filter(|(k, v)| map.get(*k) != Some(v))
                    .collect::<Vec<_>>(),
                map.iter()
                    .filter(|(k, v)| final_file.get(*k) != Some(v))
                    .collect::<Vec<_>>(),
            ));
        }
        let deleted: Vec<&str> = lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("deleted "))
            .collect();
        if field("fds ") != "0" || field("maps ") != "0" {
            failures.push(format!(
                "{}: holds deleted database files (fds {}, maps {}): {deleted:#?}",
                embedder.name,
                field("fds "),
                field("maps ")
            ));
        }
    }

    // Stop the watchers with Ctrl-C.
    for watcher in &mut watchers {
        let pid = watcher.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT {pid} failed");
        match watcher.wait_exit(TIMEOUT) {
            Some(status) if status.success() => {}
            other => failures.push(format!(
                "{} did not exit cleanly on SIGINT: {other:?}",
                watcher.name
            )),
        }
    }
    let integrity = integrity(&path);
    if integrity != "ok" {
        failures.push(format!(
            "integrity_check of the file at the path: {integrity}"
        ));
    }

    // Acknowledged writes against what each round's file held.
    let all_lines: Vec<Vec<(u128, String)>> = embedders.iter().map(Proc::lines).collect();
    let mut acks: Vec<Ack> = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut embedder_reloads = Vec::new();
    for (n, lines) in all_lines.iter().enumerate() {
        acks.extend(parse_acks(n, lines));
        for (_, line) in lines {
            if let Some(rest) = line.strip_prefix("err ") {
                let kind = rest.split(' ').nth(1).unwrap_or("?").to_owned();
                *errors.entry(kind).or_default() += 1;
            }
            if line.starts_with("lagged ") {
                failures.push(format!(
                    "{}: its subscription lagged: {line}",
                    embedders[n].name
                ));
            }
        }
        embedder_reloads.push(
            lines
                .iter()
                .filter(|(_, l)| l.starts_with("reload "))
                .count(),
        );
    }
    let mut checked = 0usize;
    let mut in_windows = 0usize;
    let mut missing = Vec::new();
    let mut duplicates = Vec::new();
    // Writes that began after rename `r` and were acknowledged before the
    // next rename went to round r's file (round 0: the first copy).
    let mut owners: HashMap<(usize, i64), Ack> = HashMap::new();
    for ack in &acks {
        let r = reads.partition_point(|read| read.t_after_rename < ack.t_begin);
        // r == 0: began before the first rename; round index r-1 otherwise.
        let next_rename = reads.get(r).map_or(u128::MAX, |read| read.t_before_rename);
        if ack.t_ack < next_rename {
            in_windows += 1;
            if let Some(earlier) = owners.insert((r, ack.seq), ack.clone()) {
                duplicates.push(format!(
                    "round {r}: seq {} acknowledged twice:\n    {}: {}\n    {}: {}",
                    ack.seq,
                    embedders[earlier.process].name,
                    earlier.line,
                    embedders[ack.process].name,
                    ack.line
                ));
            }
        }
        if r == 0 {
            continue;
        }
        let read = &reads[r - 1];
        if ack.t_ack >= read.t_read_start {
            continue;
        }
        checked += 1;
        let expected = (ack.key.clone(), Some(json!(ack.value)));
        if read.log.get(&ack.seq) != Some(&expected) {
            let around: Vec<_> = read.log.range(ack.seq - 3..=ack.seq + 3).collect();
            missing.push(format!(
                "round {}: {} acknowledged {} = {} at seq {} (began {} ns after the rename, \
                 acknowledged {} ns before the read), but round {}'s file logs at that seq: {:?}; \
                 the key in the file: {:?}; log rows around: {around:?}\n    {}",
                read.round,
                embedders[ack.process].name,
                ack.key,
                ack.value,
                ack.seq,
                ack.t_begin - read.t_after_rename,
                read.t_read_start - ack.t_ack,
                read.round,
                read.log.get(&ack.seq),
                read.settings.get(&ack.key),
                ack.line
            ));
        }
    }
    let rounds_with_checks = reads
        .iter()
        .filter(|read| {
            acks.iter()
                .any(|a| a.t_begin > read.t_after_rename && a.t_ack < read.t_read_start)
        })
        .count();
    if !duplicates.is_empty() {
        failures.push(format!(
            "{} seqs acknowledged twice within one file (first 10):\n{}",
            duplicates.len(),
            duplicates[..duplicates.len().min(10)].join("\n")
        ));
    }
    if !missing.is_empty() {
        failures.push(format!(
            "{} acknowledged writes missing from their round's file (first 10):\n{}",
            missing.len(),
            missing[..missing.len().min(10)].join("\n")
        ));
    }
    if checked == 0 {
        failures.push("no acknowledged write fell inside a checked window".to_owned());
    }

    follow_ms.sort_by(f64::total_cmp);
    eprintln!(
        "replacement stress: {ROUNDS} rounds in {:.1} s (whole test {:.1} s); {} acks \
         ({} inside a file's window, {checked} checked against their round's read, in {rounds_with_checks} rounds); \
         errors by kind: {errors:?}; reload lines: embedders {embedder_reloads:?}, watchers {watcher_reloads:?} (lag notices {watcher_lags:?}); \
         rename → last follower: median {:.1} ms, max {:.1} ms; failures: {}",
        rounds_took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        acks.len(),
        in_windows,
        follow_ms[follow_ms.len() / 2],
        follow_ms[follow_ms.len() - 1],
        failures.len()
    );
    if !failures.is_empty() {
        dump(&embedders.iter().chain(&watchers).collect::<Vec<_>>());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
