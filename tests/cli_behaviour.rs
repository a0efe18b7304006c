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
    // `watch` seeds into an empty database (and nothing is seeded).
    let empty = db.sibling("empty.db");
    cli_ok(&empty, &["init", "--no-defaults"]);
    assert_fails_with_one_line(&empty, &["watch", "--from", "5"], &["5"]);

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
