//! The `livesettings` binary at its edges: dash-leading values, writes that
//! write nothing, missing targets, closed and full stdout, deletions in
//! `watch`, and the times of replayed lines.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::*;

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The newest seq in the log (0 when empty).
fn newest(db: &Path) -> i64 {
    db_scalar(db, "SELECT coalesce(max(seq), 0) FROM settings_log")
        .expect("a max seq")
        .parse()
        .expect("an integer")
}

/// A failed command: exit 1, one line on stderr that contains every
/// `words`, nothing on stdout, and the database unchanged.
fn assert_fails_with_one_line(db: &Path, args: &[&str], words: &[&str]) {
    let before = (db_contents(db), newest(db));
    let output = cli(db, args);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{args:?}: exit 1: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr:?}");
    for word in words {
        assert!(stderr.contains(word), "{args:?}: {word:?} in {stderr:?}");
    }
    assert!(
        output.stdout.is_empty(),
        "{args:?}: nothing on stdout: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!((db_contents(db), newest(db)), before, "{args:?} wrote");
}

/// Waits (bounded) for `child` to exit.
fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(what, || {
        status = child.try_wait().expect("poll the child");
        status.is_some()
    });
    status.expect("exited")
}

/// Kills `child` if it still runs (a failed assertion must not leak it).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns `watch ARGS` with stdout piped (stderr piped too when asked).
fn spawn_watch(db: &Path, args: &[&str]) -> (Reaped, BufReader<std::process::ChildStdout>) {
    let mut child = cli_command(db)
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn livesettings watch");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    (Reaped(child), stdout)
}

/// Reads lines until `count` were read (bounded by the reader: the watch
/// child is killed by `Reaped` if the test fails).
fn read_lines(stdout: &mut BufReader<std::process::ChildStdout>, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).expect("read a watch line");
            assert!(read > 0, "watch closed stdout early");
            line.trim_end().to_owned()
        })
        .collect()
}

/// Sends SIGINT to the watch and returns its stderr after it exited 0.
fn interrupt(mut watch: Reaped) -> String {
    let status = std::process::Command::new("kill")
        .arg("-INT")
        .arg(watch.0.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = wait_exit(&mut watch.0, "watch to exit after SIGINT");
    assert!(exit.success(), "watch exits 0 on SIGINT: {exit}");
    let mut stderr = String::new();
    if let Some(mut pipe) = watch.0.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    stderr
}

// ---------------------------------------------------------------------------
// 1. Dash-leading values

/// `set KEY -1` and `set KEY -0.5` take the number as the VALUE (clap used
/// to refuse them as unknown options); `--` still works.
#[test]
fn set_takes_negative_numbers_as_the_value_and_double_dash_still_works() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    for (key, text, expected) in [
        ("ui.neg", "-1", json!(-1)),
        ("ui.half", "-0.5", json!(-0.5)),
        ("ui.big", "-2e3", json!(-2000.0)),
    ] {
        let output = cli(&db.path, &["set", key, text]);
        assert!(
            output.status.success(),
            "set {key} {text}: {}",
            stderr_of(&output)
        );
        let seq: i64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("set prints the seq");
        assert_eq!(seq, newest(&db.path));
        assert_eq!(db_contents(&db.path)[key], expected, "{key}");
    }
    cli_ok(&db.path, &["set", "ui.dashed", "--", "-7"]);
    assert_eq!(db_contents(&db.path)["ui.dashed"], json!(-7));
    // Options before the positionals still parse as options.
    cli_ok(&db.path, &["set", "-v", "ui.neg", "-3"]);
    assert_eq!(db_contents(&db.path)["ui.neg"], json!(-3));
    // A dash-leading word that is not a number is still refused by clap.
    let output = cli(&db.path, &["set", "ui.neg", "-x"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert_eq!(db_contents(&db.path)["ui.neg"], json!(-3));
}

// ---------------------------------------------------------------------------
// 2. An empty object

/// `set KEY '{}'` (or an object holding only empty objects) writes nothing:
/// one line on stderr, exit 1, no seq, no database created. A non-empty
/// object still writes the section below KEY.
#[test]
fn set_of_an_empty_object_writes_nothing_and_exits_1() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "kept.value", "1"]);
    for value in ["{}", r#"{"inner": {}}"#, " { } "] {
        assert_fails_with_one_line(&db.path, &["set", "ui.section", value], &["nothing"]);
    }

    // Refused before the database is opened: no file is created.
    let missing = db.sibling("never.db");
    let output = cli(&missing, &["set", "ui.section", "{}"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(!missing.exists(), "an empty set created a database");

    let seq: i64 = cli_ok(
        &db.path,
        &["set", "ui.section", r#"{"a": 1, "b": {"c": true}}"#],
    )
    .trim()
    .parse()
    .expect("set prints the seq");
    assert_eq!(seq, newest(&db.path));
    let contents = db_contents(&db.path);
    assert_eq!(contents["ui.section.a"], json!(1));
    assert_eq!(contents["ui.section.b.c"], json!(true));
}

// ---------------------------------------------------------------------------
// 3. Missing targets

/// Every missing target exits 1 with one line on stderr and writes nothing:
/// `unset`, `unset -r`, `revert SEQ`, `revert --to SEQ`, `watch --from SEQ`
/// beyond the log (both before and after the library's own check), and
/// `history` of a section without `--prefix` (told to use it) or of
/// nothing at all.
#[test]
fn missing_targets_exit_1_with_one_line_everywhere() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "physics.damping", "0.6"]);
    cli_ok(&db.path, &["set", "physics.spring", "0.1"]);

    assert_fails_with_one_line(&db.path, &["unset", "missing"], &["missing"]);
    assert_fails_with_one_line(&db.path, &["unset", "-r", "missing"], &["missing"]);
    assert_fails_with_one_line(
        &db.path,
        &["unset", "--recursive", "physics.nothing"],
        &["physics.nothing"],
    );
    assert_fails_with_one_line(&db.path, &["unset", "physics"], &["--recursive"]);
    assert_fails_with_one_line(&db.path, &["revert", "99999"], &["99999"]);
    assert_fails_with_one_line(&db.path, &["revert", "--to", "99999"], &["99999"]);
    assert_fails_with_one_line(
        &db.path,
        &["watch", "--no-defaults", "--from", "99999"],
        &["99999"],
    );
    assert_fails_with_one_line(&db.path, &["history", "physics"], &["--prefix"]);
    assert_fails_with_one_line(&db.path, &["history", "nothing"], &["nothing"]);
    assert_fails_with_one_line(&db.path, &["history", "nothing", "--prefix"], &["nothing"]);

    // A seq beyond the log must not become valid through the demo settings
    // `watch --demo` seeds into an empty database (and nothing is seeded).
    let empty = db.sibling("empty.db");
    cli_ok(&empty, &["init", "--no-defaults"]);
    assert_fails_with_one_line(&empty, &["watch", "--demo", "--from", "5"], &["5"]);

    // The present targets still work.
    let history = cli_ok(&db.path, &["history", "physics", "--prefix"]);
    assert_eq!(history.lines().count(), 2, "{history}");
    assert_eq!(
        cli_ok(&db.path, &["history", "physics.damping"])
            .lines()
            .count(),
        1
    );
    let seq = newest(&db.path);
    let reverted: i64 = cli_ok(&db.path, &["revert", "--to", &seq.to_string()])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(reverted, seq, "reverting to the newest seq changes nothing");
    cli_ok(&db.path, &["unset", "-r", "physics"]);
    assert!(db_contents(&db.path).is_empty());
    // Removed keys keep their history.
    assert_eq!(
        cli_ok(&db.path, &["history", "physics.damping"])
            .lines()
            .count(),
        2
    );
}

// ---------------------------------------------------------------------------
// 4. A closed or full stdout

/// `export` into a pipe whose reader closed after 10 bytes (`| head -c 10`)
/// ends quietly with exit 141; into `/dev/full` it fails in one line with
/// exit 1. Neither panics.
#[test]
fn export_to_a_closed_pipe_exits_141_quietly_and_to_a_full_disk_exits_1() {
    let db = TempDb::new();
    // More than any pipe buffer, so the writer is still writing when the
    // reader goes away.
    let big = "x".repeat(500_000);
    let document = json!({"blob": {"a": big, "b": big, "c": big, "d": big, "e": big}});
    let file = db.sibling("big.json");
    std::fs::write(&file, document.to_string()).unwrap();
    cli_ok(&db.path, &["import", file.to_str().unwrap()]);

    let mut child = cli_command(&db.path)
        .arg("export")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn livesettings export");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).expect("read 10 bytes");
    drop(stdout);
    let output = child.wait_with_output().expect("wait for export");
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "quiet: {stderr:?}");

    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let output = cli_command(&db.path)
            .arg("export")
            .stdout(Stdio::from(full))
            .output()
            .expect("run export > /dev/full");
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.contains("stdout"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `watch --json` whose reader closed the pipe ends at its next line,
/// quietly, with exit 141.
#[test]
fn watch_json_with_a_closed_reader_exits_141_quietly() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    let (mut watch, mut stdout) = spawn_watch(&db.path, &["--json", "--no-defaults"]);
    let ready: Value = serde_json::from_str(&read_lines(&mut stdout, 1)[0]).unwrap();
    assert_eq!(ready["event"], "ready");
    drop(stdout);

    // Each write makes the watch print a line; the first one fails.
    let deadline = Instant::now() + TIMEOUT;
    let mut n = 0;
    let status = loop {
        if let Some(status) = watch.0.try_wait().expect("poll watch") {
            break status;
        }
        assert!(Instant::now() < deadline, "watch still runs");
        n += 1;
        cli_ok(&db.path, &["set", "a.n", &n.to_string()]);
        // Pacing of the writes that make the watch print, not a wait: the
        // loop ends on the watch's exit or the deadline.
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = watch.0.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "quiet: {stderr:?}");
}

// ---------------------------------------------------------------------------
// 5. Deleted keys in `watch`

/// A removed key's change line has `"deleted": true` (and `"new": null`);
/// a key set to JSON null has `"new": null` and no `deleted`. The human
/// output prints `(removed)` and `null`.
#[test]
fn watch_tells_a_deleted_key_from_a_null_value() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "a.gone", "1"]);
    cli_ok(&db.path, &["set", "a.null", "2"]);
    let start = newest(&db.path);

    let (json_watch, mut json_out) = spawn_watch(&db.path, &["--json", "--no-defaults"]);
    let (human_watch, mut human_out) = spawn_watch(&db.path, &["--no-defaults"]);
    read_lines(&mut json_out, 1);
    read_lines(&mut human_out, 1);

    sqlite3(
        &db.path,
        "UPDATE settings SET value = 'null' WHERE key = 'a.null'",
    );
    cli_ok(&db.path, &["unset", "a.gone"]);

    let lines: Vec<Value> = read_lines(&mut json_out, 2)
        .iter()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(
        lines[0],
        json!({"event": "change", "seq": start + 1, "key": "a.null", "old": 2, "new": null, "source": "external"})
    );
    assert_eq!(
        lines[1],
        json!({"event": "change", "seq": start + 2, "key": "a.gone", "old": 1, "new": null, "deleted": true, "source": "external"})
    );

    let human = read_lines(&mut human_out, 2);
    assert!(human[0].contains("a.null  2 → null  "), "{human:?}");
    assert!(human[1].contains("a.gone  1 → (removed)  "), "{human:?}");

    assert!(interrupt(json_watch).is_empty());
    assert!(interrupt(human_watch).is_empty());
}

// ---------------------------------------------------------------------------
// 6. Times of replayed lines

/// `watch --from SEQ` prints each replayed change with the commit time of
/// its log row; the live change after it gets the current time.
#[test]
fn watch_from_prints_replayed_lines_with_their_commit_time() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "a.x", "1"]);
    cli_ok(&db.path, &["set", "a.x", "2"]);
    cli_ok(&db.path, &["set", "b.y", "3"]);
    cli_ok(&db.path, &["set", "a.z", "4"]);
    // Old, distinct commit times for the rows to replay.
    sqlite3(
        &db.path,
        "UPDATE settings_log SET at = printf('2001-02-03T04:05:%02d.000Z', seq)",
    );

    let (watch, mut stdout) = spawn_watch(&db.path, &["a", "--from", "1", "--no-defaults"]);
    let lines = read_lines(&mut stdout, 3);
    assert!(lines[0].starts_with("watching "), "{lines:?}");
    assert!(
        lines[1].starts_with("2001-02-03T04:05:02.000Z  a.x  1 → 2  "),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("2001-02-03T04:05:04.000Z  a.z  ∅ → 4  "),
        "{lines:?}"
    );

    cli_ok(&db.path, &["set", "a.x", "5"]);
    let live = read_lines(&mut stdout, 1).remove(0);
    assert!(live.contains("a.x  2 → 5  "), "{live}");
    assert!(
        !live.starts_with("2001-"),
        "a live line has the current time: {live}"
    );
    assert!(interrupt(watch).is_empty());
}

/// `12345678901234567890123` would be stored as `1.2345678901234568e+22`:
/// `set` and `import` refuse it with one line naming the key, and store
/// nothing; an integer that fits 64 bits is stored exactly.
#[test]
fn set_and_import_refuse_integers_that_json_numbers_would_round() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    let refused = cli(&db.path, &["set", "app.id", "12345678901234567890123"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("app.id"), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    let document = db.sibling("big.json");
    std::fs::write(
        &document,
        r#"{"app": {"ids": [1, 12345678901234567890123]}}"#,
    )
    .unwrap();
    let refused = cli(&db.path, &["import", document.to_str().unwrap()]);
    assert_ne!(refused.status.code(), Some(0), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("app.ids"),
        "{refused:?}"
    );
    assert!(db_contents(&db.path).is_empty());
    cli_ok(&db.path, &["set", "app.id", "18446744073709551615"]);
    assert_eq!(
        db_contents(&db.path).get("app.id"),
        Some(&serde_json::json!(u64::MAX))
    );
}

// ---------------------------------------------------------------------------
// Demo data, stats, import --prefix, completions, the README's rules

/// The `ready` line of `watch --json ARGS` on `db`, after which the watch is
/// interrupted.
fn watch_ready(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (watch, mut stdout) = spawn_watch(db, &all);
    let ready: Value = serde_json::from_str(&read_lines(&mut stdout, 1)[0]).expect("JSON");
    interrupt(watch);
    ready
}

/// No database gets the bundled demo keys unless `--demo` is given: `init`
/// and `watch` on an empty database seed nothing, `--demo` seeds all 435
/// keys (into an empty database only), `--no-defaults` is still accepted and
/// `--defaults FILE` still adds the missing keys of FILE.
#[test]
fn demo_settings_are_seeded_only_with_demo() {
    let demo_keys = flatten_fixture().len();
    assert_eq!(demo_keys, 435);

    let db = TempDb::new();
    assert_eq!(
        cli_ok(&db.path, &["init"]).split_whitespace().next(),
        Some("0")
    );
    assert!(db_contents(&db.path).is_empty(), "init seeded");
    assert_eq!(watch_ready(&db.path, &[])["keys"], 0);
    assert!(db_contents(&db.path).is_empty(), "watch seeded");
    cli_ok(&db.path, &["init", "--no-defaults"]);
    assert_eq!(watch_ready(&db.path, &["--no-defaults"])["keys"], 0);
    assert!(db_contents(&db.path).is_empty(), "--no-defaults seeded");

    // `--defaults FILE` adds FILE's missing keys and nothing else.
    let defaults = db.sibling("defaults.json");
    std::fs::write(&defaults, r#"{"app": {"name": "x", "port": 1}}"#).unwrap();
    cli_ok(&db.path, &["set", "app.port", "2"]);
    cli_ok(
        &db.path,
        &["init", "--defaults", defaults.to_str().unwrap()],
    );
    assert_eq!(
        db_contents(&db.path),
        [
            ("app.name".to_owned(), json!("x")),
            ("app.port".to_owned(), json!(2))
        ]
        .into()
    );

    // `--demo` seeds an empty database, and not one that holds settings.
    cli_ok(&db.path, &["init", "--demo"]);
    assert_eq!(
        db_contents(&db.path).len(),
        2,
        "--demo seeded a non-empty database"
    );
    let demo = db.sibling("demo.db");
    assert!(cli_ok(&demo, &["init", "--demo"]).starts_with("435 keys"));
    assert_eq!(db_contents(&demo), flatten_fixture());
    let watched = db.sibling("watched.db");
    assert_eq!(watch_ready(&watched, &["--demo"])["keys"], 435);
    assert_eq!(db_contents(&watched).len(), demo_keys);
}

/// The fixture (the bundled demo settings) as `key → value`.
fn flatten_fixture() -> std::collections::BTreeMap<String, Value> {
    livesettings::flatten("", &fixture())
        .expect("the fixture flattens")
        .into_iter()
        .collect()
}

/// `stats` reports what the database holds, not the CLI's own zero
/// counters: keys, the newest seq, the log's rows and oldest seq, the file
/// size, the schema version and the file mode; `--json` prints one object.
#[test]
fn stats_reports_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--demo"]);
    cli_ok(&db.path, &["set", "app.name", "\"x\""]);
    cli_ok(&db.path, &["unset", "xr.enabled"]);
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.9' WHERE key = 'visualisation.graphs.logseq.physics.damping'",
    );
    cli_ok(&db.path, &["prune", "--keep", "100"]);
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let text = cli_ok(&db.path, &["stats", "--json"]);
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one JSON object: {text}"
    );
    let stats: Value = serde_json::from_str(&text).expect("stats --json is JSON");
    assert_eq!(stats["keys"], db_contents(&db.path).len() as u64);
    assert_eq!(stats["keys"], 435);
    assert_eq!(stats["seq"], newest(&db.path));
    assert_eq!(stats["seq"], 438);
    assert_eq!(stats["log_rows"], log_rows(&db.path));
    assert_eq!(stats["log_rows"], 100);
    assert_eq!(stats["oldest_seq"], 339);
    assert_eq!(stats["schema_version"], livesettings::SCHEMA_VERSION);
    assert_eq!(stats["mode"], "0640");
    assert_eq!(stats["path"], db.path.display().to_string());
    let size = stats["size_bytes"].as_u64().expect("a size");
    assert!(size >= 4096, "{stats}");
    assert_eq!(
        size,
        stats["db_bytes"].as_u64().unwrap() + stats["wal_bytes"].as_u64().unwrap()
    );
    assert_eq!(
        stats["db_bytes"].as_u64().unwrap() % 4096,
        0,
        "whole pages: {stats}"
    );

    // Without --json: a table with the same figures.
    let table = cli_ok(&db.path, &["stats"]);
    let version = livesettings::SCHEMA_VERSION.to_string();
    for (name, value) in [
        ("keys", "435"),
        ("seq", "438"),
        ("log rows", "100"),
        ("oldest seq", "339"),
        ("schema version", version.as_str()),
        ("mode", "0640"),
    ] {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(name) && line.split_whitespace().last() == Some(value)),
            "{name} {value} in {table}"
        );
    }
    assert!(table.contains(&format!("{size} bytes")), "{table}");

    // An empty database: no log, no oldest seq.
    let empty = db.sibling("empty.db");
    cli_ok(&empty, &["init"]);
    let stats: Value = serde_json::from_str(&cli_ok(&empty, &["stats", "--json"])).unwrap();
    assert_eq!(
        (
            &stats["keys"],
            &stats["seq"],
            &stats["log_rows"],
            &stats["oldest_seq"]
        ),
        (&json!(0), &json!(0), &json!(0), &Value::Null)
    );
}

/// `export PREFIX > a.json` then `import --prefix PREFIX a.json` puts the
/// section (or the single key) back where it was.
#[test]
fn export_then_import_with_prefix_round_trips() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--demo"]);
    let original = db_contents(&db.path);
    for prefix in ["visualisation.graphs.logseq", "xr", "xr.enabled"] {
        let file = db.sibling("section.json");
        std::fs::write(&file, cli_ok(&db.path, &["export", prefix])).unwrap();
        cli_ok(&db.path, &["unset", "--recursive", prefix]);
        assert_ne!(db_contents(&db.path), original, "{prefix} was removed");
        let output = cli(
            &db.path,
            &["import", "--prefix", prefix, file.to_str().unwrap()],
        );
        assert!(output.status.success(), "{prefix}: {}", stderr_of(&output));
        assert_eq!(db_contents(&db.path), original, "{prefix} round-trips");
    }
    // From stdin, too.
    let exported = cli_ok(&db.path, &["export", "system"]);
    cli_ok(&db.path, &["unset", "-r", "system"]);
    let mut child = cli_command(&db.path)
        .args(["import", "--prefix", "system", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn import");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), exported.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(db_contents(&db.path), original);
    // A bad prefix is refused before anything is written.
    let file = db.sibling("section.json");
    let refused = cli(
        &db.path,
        &["import", "--prefix", "a..b", file.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert_eq!(db_contents(&db.path), original);
}

/// `completions SHELL` prints a completion script and creates no database.
#[test]
fn completions_print_a_shell_script() {
    let db = TempDb::new();
    let bash = cli_ok(&db.path, &["completions", "bash"]);
    assert!(bash.contains("_livesettings"), "{bash}");
    assert!(bash.contains("stats"), "the subcommands are completed");
    for shell in ["zsh", "fish"] {
        let script = cli_ok(&db.path, &["completions", shell]);
        assert!(script.contains("livesettings"), "{shell}: {script}");
    }
    assert_ne!(
        cli(&db.path, &["completions", "tcsh"]).status.code(),
        Some(0)
    );
    assert!(!db.path.exists(), "completions created a database");
}

/// The rules example under README.md's "### Rules files" fits the bundled
/// demo settings: `check --schema` passes on a `--demo` database, and fails
/// once a value breaks one of its rules.
#[test]
fn readme_rules_example_passes_on_the_demo_settings() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = &readme[readme
        .find("### Rules files")
        .expect("a Rules files section")..];
    let start = section.find("```json\n").expect("a JSON block") + "```json\n".len();
    let end = start + section[start..].find("```").expect("the block's end");
    let rules_text = &section[start..end];
    let rules: Value = serde_json::from_str(rules_text).expect("the README's rules are JSON");
    assert!(
        rules["rules"]
            .as_array()
            .is_some_and(|rules| rules.len() >= 3)
    );

    let db = TempDb::new();
    let rules_file = db.sibling("rules.json");
    std::fs::write(&rules_file, rules_text).unwrap();
    cli_ok(&db.path, &["init", "--demo"]);
    let output = cli(
        &db.path,
        &["check", "--schema", rules_file.to_str().unwrap()],
    );
    assert!(
        output.status.success(),
        "the README's rules fail on the demo settings: {}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr_of(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok: 435 keys"));

    cli_ok(
        &db.path,
        &["set", "visualisation.graphs.logseq.physics.damping", "2"],
    );
    let output = cli(
        &db.path,
        &["check", "--schema", rules_file.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}
