//! Helpers shared by the integration tests: a temporary database and the
//! fixture, foreign writers in other processes (the `sqlite3` shell,
//! Python's `sqlite3` module, the CLI), reading what the database file
//! really holds through a fresh connection, and waiting on the store and
//! its events with deadlines.
//!
//! Every wait here is bounded by a deadline and returns as soon as the
//! awaited state is reached; nothing sleeps a fixed time to "let things
//! settle".

// Each test binary compiles this module on its own and uses only part of
// it; without this, every binary would warn about the helpers it leaves out.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use livesettings::{Change, Event, Stats, Store};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

/// How long a test waits for something that should take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// A temporary database, the fixture

/// A temporary folder holding `settings.db`.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let path = dir.path().join("settings.db");
        TempDb { dir, path }
    }

    /// Another path in the same folder.
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The VisionFlow fixture's file: `../shared/fixtures/visionflow-settings.json`
/// relative to the crate, else the copy in `examples/`.
pub fn fixture_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/fixtures/visionflow-settings.json");
    if shared.exists() {
        shared
    } else {
        root.join("examples/visionflow-settings.json")
    }
}

/// The VisionFlow fixture, parsed.
pub fn fixture() -> Value {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).expect("the fixture is JSON")
}

// ---------------------------------------------------------------------------
// The sqlite3 shell

/// Runs `sql` with the `sqlite3` shell in its own process (one connection,
/// closed when the process exits) and returns its stdout. Each statement
/// outside an explicit `BEGIN … COMMIT` is its own transaction. Panics when
/// the shell reports an error.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let output = sqlite3_command(db)
        .arg(sql)
        .output()
        .expect("run the sqlite3 shell (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "sqlite3 {sql:?} failed ({}): {stderr}",
        output.status
    );
    stdout
}

/// `sqlite3 -bail` on `db` with a busy timeout (the shell has none by
/// default, and a store may briefly hold the write lock).
pub fn sqlite3_command(db: &Path) -> Command {
    let mut command = Command::new("sqlite3");
    command
        .arg("-bail")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(db);
    command
}

/// An interactive `sqlite3` session: one process, one connection kept open,
/// fed statements line by line on stdin.
pub struct Sqlite3Session {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Sqlite3Session {
    pub fn open(db: &Path) -> Sqlite3Session {
        let mut child = Command::new("sqlite3")
            .arg("-cmd")
            .arg(".timeout 10000")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the sqlite3 shell");
        let stdin = child.stdin.take();
        Sqlite3Session { child, stdin }
    }

    /// Sends one line (a complete statement) to the shell.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("session is open");
        writeln!(stdin, "{line}").expect("write to sqlite3");
        stdin.flush().expect("flush sqlite3's stdin");
    }

    /// Closes stdin, waits for the shell and checks it reported no error.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("read the sqlite3 shell's stderr");
        }
        let status = self.child.wait().expect("wait for the sqlite3 shell");
        assert!(
            status.success() && stderr.trim().is_empty(),
            "sqlite3 session failed ({status}): {stderr}"
        );
    }
}

impl Drop for Sqlite3Session {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// A Python writer process

/// A long-lived Python writer: one connection kept open for its lifetime
/// (Python's `sqlite3` module, `synchronous=FULL` by default). Each line on
/// stdin is a JSON list of `[sql, params]` pairs run as one `BEGIN
/// IMMEDIATE … COMMIT` transaction; it answers `ok` or `error: …`.
const PYTHON_WRITER: &str = r#"
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
print("ready", flush=True)
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in json.loads(line):
            conn.execute(sql, params)
        conn.execute("COMMIT")
        print("ok", flush=True)
    except Exception as error:
        try:
            conn.execute("ROLLBACK")
        except Exception:
            pass
        print("error: " + str(error).replace("\n", " "), flush=True)
conn.close()
"#;

/// Writes `source` to a fresh file in `dir` and returns its path.
pub fn write_script(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write a python script");
    path
}

pub struct PythonWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl PythonWriter {
    /// Starts the writer on `db` (the script goes next to it) and waits
    /// until its connection is open.
    pub fn open(db: &Path) -> PythonWriter {
        let script = write_script(
            db.parent().expect("db has a folder"),
            "python_writer.py",
            PYTHON_WRITER,
        );
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut writer = PythonWriter {
            child,
            stdin,
            stdout,
        };
        assert_eq!(writer.read_line(), "ready");
        writer
    }

    /// Runs `statements` as one transaction and waits for the commit.
    pub fn transaction(&mut self, statements: &[(&str, Vec<Value>)]) {
        let line = Value::Array(
            statements
                .iter()
                .map(|(sql, params)| Value::Array(vec![Value::from(*sql), params.clone().into()]))
                .collect(),
        );
        let stdin = self.stdin.as_mut().expect("writer is open");
        writeln!(stdin, "{line}").expect("write to python");
        stdin.flush().expect("flush python's stdin");
        let answer = self.read_line();
        assert_eq!(answer, "ok", "python transaction {line} failed");
    }

    /// One statement in its own transaction.
    pub fn execute(&mut self, sql: &str, params: Vec<Value>) {
        self.transaction(&[(sql, params)]);
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read python's answer");
        assert!(!line.is_empty(), "python writer exited unexpectedly");
        line.trim_end().to_owned()
    }

    /// Closes stdin and waits for a clean exit.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for python");
        assert!(status.success(), "python writer exited with {status}");
    }
}

impl Drop for PythonWriter {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a Python script (given as source) with `args`, in its own process,
/// and panics unless it exits with status 0.
pub fn python(dir: &Path, name: &str, source: &str, args: &[&str]) -> Output {
    let script = write_script(dir, name, source);
    let output = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python {name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------------------
// The CLI

/// The `livesettings` binary built for this test run.
pub fn cli_path() -> &'static str {
    env!("CARGO_BIN_EXE_livesettings")
}

/// `livesettings --db DB ARGS…`, with logging left at its default.
pub fn cli_command(db: &Path) -> Command {
    let mut command = Command::new(cli_path());
    command.arg("--db").arg(db).env_remove("RUST_LOG");
    command
}

/// Runs the CLI and returns its output, whatever the exit status.
pub fn cli(db: &Path, args: &[&str]) -> Output {
    cli_command(db)
        .args(args)
        .output()
        .expect("run the livesettings binary")
}

/// Runs the CLI, panics unless it succeeded, and returns its stdout.
pub fn cli_ok(db: &Path, args: &[&str]) -> String {
    let output = cli(db, args);
    assert!(
        output.status.success(),
        "livesettings {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("CLI stdout is UTF-8")
}

// ---------------------------------------------------------------------------
// What the file holds, read with a fresh connection

/// A fresh connection on the file, independent of any store, with a busy
/// timeout (a store may briefly hold the write lock).
pub fn connect(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the database with a fresh connection");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("set a busy timeout");
    conn
}

/// Every `key → value` the `settings` table holds, read through a fresh
/// read-only connection; an error when the file cannot be read (missing,
/// being replaced). Panics on a value that is not JSON, naming its key.
pub fn try_db_contents(path: &Path) -> rusqlite::Result<BTreeMap<String, Value>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mut statement = conn.prepare("SELECT key, value FROM settings")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut contents = BTreeMap::new();
    for row in rows {
        let (key, text) = row?;
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{key} holds invalid JSON {text:?}: {error}"));
        contents.insert(key, value);
    }
    Ok(contents)
}

/// Every `key → value` in the database file at `path` (see
/// [`try_db_contents`]); panics when the file cannot be read.
pub fn db_contents(path: &Path) -> BTreeMap<String, Value> {
    try_db_contents(path).expect("read the settings table")
}

/// The stored value of `key` as the file holds it.
pub fn db_value(path: &Path, key: &str) -> Option<Value> {
    db_contents(path).remove(key)
}

/// The single cell a query returns, as text (`None` for NULL), read with a
/// fresh connection.
pub fn db_scalar(path: &Path, sql: &str) -> Option<String> {
    connect(path)
        .query_row(sql, [], |row| {
            let value: rusqlite::types::Value = row.get(0)?;
            Ok(match value {
                rusqlite::types::Value::Null => None,
                rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                rusqlite::types::Value::Real(x) => Some(x.to_string()),
                rusqlite::types::Value::Text(text) => Some(text),
                rusqlite::types::Value::Blob(bytes) => {
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
            })
        })
        .expect("run a single-cell query")
}

/// How many rows `settings_log` holds.
pub fn log_rows(path: &Path) -> i64 {
    connect(path)
        .query_row("SELECT count(*) FROM settings_log", [], |row| row.get(0))
        .expect("count the change log")
}

/// `PRAGMA integrity_check` through a fresh connection.
pub fn integrity(path: &Path) -> String {
    connect(path)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

/// Whether the table `table` exists.
pub fn table_exists(path: &Path, table: &str) -> bool {
    connect(path)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get::<_, i64>(0),
        )
        .expect("query sqlite_master")
        == 1
}

/// A full fingerprint of the database's interesting state: the settings
/// rows, the number of change-log rows, and whether `settings` exists.
pub fn fingerprint(path: &Path) -> (BTreeMap<String, Value>, i64, bool) {
    (
        db_contents(path),
        log_rows(path),
        table_exists(path, "settings"),
    )
}

/// Asserts the change-log triggers exist in the file at `path`.
pub fn assert_triggers_present(path: &Path) {
    let count = db_scalar(
        path,
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'settings' \
         AND name IN ('settings_log_insert', 'settings_log_update', 'settings_log_delete')",
    );
    assert_eq!(count.as_deref(), Some("3"), "the change-log triggers exist");
}

// ---------------------------------------------------------------------------
// What the store holds

/// The store's snapshot under `prefix` as a `key → value` map.
pub fn store_entries(store: &Store, prefix: &str) -> BTreeMap<String, Value> {
    store
        .snapshot()
        .entries(prefix)
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect()
}

/// The store's whole snapshot as a `key → value` map.
pub fn store_map(store: &Store) -> BTreeMap<String, Value> {
    store_entries(store, "")
}

/// Waits until the store's snapshot equals exactly what the file at the
/// store's path holds, then returns the contents; panics with the
/// difference (or the last read error) at the deadline. A file that cannot
/// be read for a moment (being replaced) is read again.
pub fn wait_converged(store: &Store, what: &str) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let in_db = try_db_contents(store.path());
        let in_store = store_map(store);
        match in_db {
            Ok(in_db) if in_db == in_store => return in_db,
            Ok(in_db) if Instant::now() > deadline => {
                let only_db: Vec<_> = in_db
                    .iter()
                    .filter(|(key, value)| in_store.get(*key) != Some(value))
                    .collect();
                let only_store: Vec<_> = in_store
                    .iter()
                    .filter(|(key, value)| in_db.get(*key) != Some(value))
                    .collect();
                panic!(
                    "{what}: the snapshot never converged to the database within {TIMEOUT:?}\n\
                     in the database but not the snapshot: {only_db:?}\n\
                     in the snapshot but not the database: {only_store:?}\n\
                     stats: {:?}",
                    store.stats()
                );
            }
            Err(error) if Instant::now() > deadline => panic!(
                "{what}: the database could not be read within {TIMEOUT:?}: {error}\n\
                 snapshot: {in_store:?}\n\
                 stats: {:?}",
                store.stats()
            ),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the store's counters satisfy `condition` (counters are
/// bumped just after an apply's events are published).
pub fn wait_stats(store: &Store, what: &str, mut condition: impl FnMut(&Stats) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stats = store.stats();
        if condition(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Waiting on a condition

/// Polls `condition` every few milliseconds until it holds (true) or
/// `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// Waits until the store's watcher has run `checks` more checks than now:
/// the way to give it a chance to act before asserting that something did
/// *not* happen (there is no event to wait for then).
pub fn wait_for_watcher_checks(store: &livesettings::Store, checks: u64) {
    let target = store.stats().watcher_checks + checks;
    assert!(
        poll_until(TIMEOUT, || store.stats().watcher_checks >= target),
        "the watcher did not run {checks} checks"
    );
}

/// Polls `condition` until it holds; panics naming `what` after
/// [`TIMEOUT`].
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(TIMEOUT, condition),
        "timed out after {TIMEOUT:?} waiting for {what}"
    );
}

// ---------------------------------------------------------------------------
// Events

/// The next event, or a panic naming `what` after [`TIMEOUT`].
pub fn next_event(events: &Receiver<Event>, what: &str) -> Event {
    events
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|error| panic!("no event for {what} within {TIMEOUT:?}: {error}"))
}

/// The next event, which must be a change.
pub fn next_change(events: &Receiver<Event>, what: &str) -> Change {
    match next_event(events, what) {
        Event::Change(change) => change,
        other => panic!("{what}: expected a change, got {other:?}"),
    }
}

/// Receives events until `matches` returns true for one (returned) or the
/// deadline passes (panic, listing what arrived). The events seen before it
/// are pushed to `seen`.
pub fn recv_until(
    events: &Receiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    mut matches: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if matches(&event) => return event,
            Ok(event) => seen.push(event),
            Err(RecvTimeoutError::Timeout) => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; got {seen:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("channel closed while waiting for {what}; got {seen:#?}")
            }
        }
    }
}

/// Like [`recv_until`], returning the matching event and every event before
/// it.
pub fn events_until(
    events: &Receiver<Event>,
    what: &str,
    matches: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    let event = recv_until(events, &mut before, what, matches);
    (event, before)
}

/// Every event already queued, without waiting.
pub fn drain(events: &Receiver<Event>) -> Vec<Event> {
    events.try_iter().collect()
}

// ---------------------------------------------------------------------------
// Random numbers

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// A `livesettings watch` process

/// A `livesettings watch` child process whose stdout lines arrive on a
/// channel; killed on drop if still running. Test files add the readers
/// they need in their own `impl` blocks.
pub struct WatchProcess {
    pub child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl WatchProcess {
    pub fn spawn(db: &Path, args: &[&str]) -> WatchProcess {
        let mut child = cli_command(db)
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn livesettings watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        WatchProcess { child, lines }
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// A process without write access to the database

/// Whether the tests run as root (the owner of `/proc/self` is the effective
/// user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Runs the CLI as a process that cannot write the database: as user
/// `nobody` (through `setpriv`) when the tests run as root, whom permission
/// bits do not stop; else as this user, with the write bits removed by
/// [`NoWriteAccess::deny`].
pub struct NoWriteAccess {
    pub root: bool,
}

impl NoWriteAccess {
    pub fn new() -> NoWriteAccess {
        let root = is_root();
        if root {
            let found = Command::new("setpriv")
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success());
            assert!(
                found,
                "running as root, these tests need util-linux's setpriv"
            );
        }
        NoWriteAccess { root }
    }

    /// Makes `path` (a file or folder) unwritable for the reader while the
    /// folders above stay traversable: root's files are only readable for
    /// `nobody` with mode `mode_for_root`; for this user, the write bits go.
    pub fn deny(&self, path: &Path, mode_for_root: u32) {
        use std::os::unix::fs::PermissionsExt;
        let mode = if self.root {
            mode_for_root
        } else {
            let meta = std::fs::metadata(path).expect("stat the path");
            meta.permissions().mode() & 0o555
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .expect("chmod the path");
    }

    /// Gives this user write access back (a no-op when root).
    pub fn allow(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if !self.root {
            let meta = std::fs::metadata(path).expect("stat the path");
            let mode = meta.permissions().mode() | 0o200;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .expect("chmod the path");
        }
    }

    /// The CLI as the reader: `livesettings --db DB ARGS…`.
    pub fn command(&self, db: &Path, args: &[&str]) -> Command {
        let mut command = if self.root {
            let mut command = Command::new("setpriv");
            command.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                cli_path(),
            ]);
            command
        } else {
            Command::new(cli_path())
        };
        command
            .arg("--db")
            .arg(db)
            .args(args)
            .env_remove("RUST_LOG");
        command
    }

    pub fn cli(&self, db: &Path, args: &[&str]) -> Output {
        self.command(db, args)
            .output()
            .expect("run the livesettings binary as the reader")
    }
}

/// Every entry of a folder with its owner, size, mode and contents' hash:
/// equal before and after means nothing was created, written or chowned.
pub fn folder_state(dir: &Path) -> BTreeMap<String, (u32, u64, u32, u64)> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut state = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list the folder") {
        let entry = entry.expect("a folder entry");
        let meta = entry.metadata().expect("stat an entry");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        if meta.is_file() {
            std::fs::read(entry.path())
                .expect("read an entry")
                .hash(&mut hasher);
        }
        state.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (meta.uid(), meta.len(), meta.mode(), hasher.finish()),
        );
    }
    state
}
