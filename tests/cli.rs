//! The `livesettings` binary as an operator uses it: `watch --json` in a
//! child process while the `sqlite3` shell edits the database, and the
//! one-shot commands' exit codes, messages and effects.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use support::*;

use support::WatchProcess as Watch;

impl Watch {
    /// The next line, parsed as JSON.
    fn next_json(&self, what: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|error| panic!("no line for {what} within {TIMEOUT:?}: {error}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("{what}: {line:?} is not one JSON object: {error}"))
    }

    /// Sends SIGINT (what Ctrl-C sends) and returns the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
        let mut exit = None;
        wait_until("watch to exit after SIGINT", || {
            exit = self.child.try_wait().expect("poll the watch process");
            exit.is_some()
        });
        exit.expect("watch exited")
    }
}

/// The object's fields, checked to be exactly `expected` (no more, no less).
fn assert_fields(line: &Value, expected: &[&str]) {
    let object = line.as_object().expect("a JSON object");
    let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
    got.sort_unstable();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(got, expected, "fields of {line}");
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `watch --json`: a ready line, then one change line per foreign change
/// with every field right, and a clean exit on SIGINT.
#[test]
fn watch_json_reports_ready_then_each_foreign_change_and_exits_on_sigint() {
    let db = TempDb::new();
    let document = write_json(
        db.dir.path(),
        "start.json",
        &json!({"physics": {"damping": 0.6, "iterations": 100}, "render": {"title": "graph"}}),
    );
    cli_ok(&db.path, &["import", document.to_str().unwrap()]);
    let seq: i64 = db_scalar(&db.path, "SELECT max(seq) FROM settings_log")
        .unwrap()
        .parse()
        .unwrap();

    let watch = Watch::spawn(&db.path, &["--json", "--no-defaults"]);
    let ready = watch.next_json("the ready line");
    assert_fields(&ready, &["event", "keys", "seq"]);
    assert_eq!(ready, json!({"event": "ready", "keys": 3, "seq": seq}));

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.95' WHERE key = 'physics.damping'",
    );
    let change = watch.next_json("the UPDATE's change line");
    assert_fields(&change, &["event", "seq", "key", "old", "new", "source"]);
    assert_eq!(
        change,
        json!({
            "event": "change",
            "seq": seq + 1,
            "key": "physics.damping",
            "old": 0.6,
            "new": 0.95,
            "source": "external",
        })
    );

    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('render.colour', '\"#ff0000\"')",
    );
    assert_eq!(
        watch.next_json("the INSERT's change line"),
        json!({
            "event": "change",
            "seq": seq + 2,
            "key": "render.colour",
            "old": null,
            "new": "#ff0000",
            "source": "external",
        })
    );

    cli_ok(&db.path, &["unset", "physics.iterations"]);
    assert_eq!(
        watch.next_json("the CLI unset's change line"),
        json!({
            "event": "change",
            "seq": seq + 3,
            "key": "physics.iterations",
            "old": 100,
            "new": null,
            "deleted": true,
            "source": "external",
        })
    );

    let status = watch.interrupt();
    assert!(status.success(), "watch exits 0 on SIGINT: {status}");
}

/// `watch PREFIX --json` only reports keys under the prefix, and reports a
/// full reload with its reason.
#[test]
fn watch_json_filters_by_prefix_and_reports_reloads() {
    let db = TempDb::new();
    let document = write_json(
        db.dir.path(),
        "start.json",
        &json!({"physics": {"damping": 0.6}, "render": {"title": "graph"}}),
    );
    cli_ok(&db.path, &["import", document.to_str().unwrap()]);

    let watch = Watch::spawn(&db.path, &["physics", "--json", "--no-defaults"]);
    let ready = watch.next_json("the ready line");
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["keys"], 1, "keys under the prefix: {ready}");

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '\"other\"' WHERE key = 'render.title'",
    );
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '0.7' WHERE key = 'physics.damping'",
    );
    let change = watch.next_json("the change under the prefix");
    assert_eq!(change["key"], "physics.damping", "{change}");
    assert_eq!(change["new"], 0.7);

    // A change made while the triggers are missing: a reload line, then
    // the change from the diff.
    sqlite3(
        &db.path,
        "BEGIN; DROP TRIGGER settings_log_update; \
         UPDATE settings SET value = '0.8' WHERE key = 'physics.damping'; COMMIT;",
    );
    let reload = watch.next_json("the reload line");
    assert_eq!(reload["event"], "reload", "{reload}");
    assert_eq!(reload["reason"], "triggers_missing", "{reload}");
    let change = watch.next_json("the change found by the reload");
    assert_eq!(change["event"], "change");
    assert_eq!(change["key"], "physics.damping");
    assert_eq!(change["old"], 0.7);
    assert_eq!(change["new"], 0.8);
    assert_eq!(change["source"], "external");

    assert!(watch.interrupt().success());
}

/// `watch` on an empty database with `--no-defaults` (now a no-op) seeds
/// nothing; with `--demo`, the bundled demo settings are seeded.
#[test]
fn watch_seeds_an_empty_database_unless_told_not_to() {
    let db = TempDb::new();
    let watch = Watch::spawn(&db.path, &["--json", "--no-defaults"]);
    assert_eq!(
        watch.next_json("the ready line"),
        json!({"event": "ready", "keys": 0, "seq": 0})
    );
    assert!(watch.interrupt().success());
    assert!(db_contents(&db.path).is_empty());

    let seeded = TempDb::new();
    let watch = Watch::spawn(&seeded.path, &["--json", "--demo"]);
    let ready = watch.next_json("the ready line");
    assert!(ready["keys"].as_u64().unwrap() > 100, "{ready}");
    assert!(watch.interrupt().success());
    assert_eq!(
        db_contents(&seeded.path).len() as u64,
        ready["keys"].as_u64().unwrap()
    );
}

/// `get` of a missing key exits 1 with a message on stderr, nothing on
/// stdout; `get` of a present key prints its JSON.
#[test]
fn get_of_a_missing_key_exits_1_with_a_message() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "physics.damping", "0.6"]);

    let output = cli(&db.path, &["get", "physics.nothing"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(output.stdout.is_empty());
    let message = stderr_of(&output);
    assert!(message.contains("physics.nothing"), "{message}");

    let value: Value =
        serde_json::from_str(&cli_ok(&db.path, &["get", "physics.damping"])).unwrap();
    assert_eq!(value, json!(0.6));
    let section: Value = serde_json::from_str(&cli_ok(&db.path, &["get", "physics"])).unwrap();
    assert_eq!(section, json!({"damping": 0.6}));
}

/// `set KEY notjson` fails with a message about JSON quotes and writes
/// nothing; `set` of valid JSON prints the committed seq.
#[test]
fn set_of_a_non_json_value_fails_and_writes_nothing() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);

    let output = cli(&db.path, &["set", "render.colour", "notjson"]);
    assert!(!output.status.success());
    let message = stderr_of(&output);
    assert!(message.contains("JSON"), "{message}");
    assert!(
        message.contains("quotes") && message.contains("\"notjson\""),
        "the message shows how to quote a string: {message}"
    );
    assert!(output.stdout.is_empty());
    assert!(db_contents(&db.path).is_empty(), "nothing was written");
    assert_eq!(
        db_scalar(&db.path, "SELECT count(*) FROM settings_log").as_deref(),
        Some("0")
    );

    let seq = cli_ok(&db.path, &["set", "render.colour", "\"notjson\""]);
    let seq: i64 = seq.trim().parse().expect("set prints the seq");
    assert_eq!(
        db_scalar(&db.path, "SELECT max(seq) FROM settings_log"),
        Some(seq.to_string())
    );
    assert_eq!(db_contents(&db.path)["render.colour"], json!("notjson"));
}

/// `import` of the VisionFlow fixture, then `export`, gives back an equal
/// JSON document; so does exporting a section.
#[test]
fn import_then_export_round_trips_the_fixture() {
    let db = TempDb::new();
    let fixture = fixture_path();
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();

    let output = cli(&db.path, &["import", fixture.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let exported: Value = serde_json::from_str(&cli_ok(&db.path, &["export"])).unwrap();
    assert_eq!(exported, original);

    let leaves = livesettings::flatten("", &original).unwrap();
    assert_eq!(db_contents(&db.path).len(), leaves.len());

    // Importing the same document again changes nothing.
    let before = db_scalar(&db.path, "SELECT max(seq) FROM settings_log");
    cli_ok(&db.path, &["import", fixture.to_str().unwrap()]);
    assert_eq!(
        db_scalar(&db.path, "SELECT max(seq) FROM settings_log"),
        before
    );

    // A section exports as its subtree.
    let (section, expected) = original
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, value)| value.is_object())
        .expect("the fixture has a section");
    let exported: Value = serde_json::from_str(&cli_ok(&db.path, &["export", section])).unwrap();
    assert_eq!(&exported, expected);

    // Import from stdin.
    let other = db.sibling("stdin.db");
    let mut child = cli_command(&other)
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&fixture).unwrap()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let exported: Value = serde_json::from_str(&cli_ok(&other, &["export"])).unwrap();
    assert_eq!(exported, original);
}

/// `import` of a file that is not UTF-8 fails with a clear message and
/// writes nothing; so does a file that is not JSON.
#[test]
fn import_of_invalid_utf8_or_invalid_json_fails_and_writes_nothing() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init", "--no-defaults"]);
    cli_ok(&db.path, &["set", "kept.value", "1"]);
    let before = db_contents(&db.path);

    let bad = db.sibling("latin1.json");
    // Valid JSON structure, but "caf\xe9" is Latin-1, not UTF-8.
    std::fs::write(&bad, b"{\"menu\": {\"item\": \"caf\xe9\"}, \"other\": 1}").unwrap();
    let output = cli(&db.path, &["import", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr_of(&output);
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains("latin1.json"), "names the file: {message}");
    assert_eq!(db_contents(&db.path), before, "nothing was written");

    let broken = db.sibling("broken.json");
    std::fs::write(&broken, "{\"menu\": {\"item\": 1}, ").unwrap();
    let output = cli(&db.path, &["import", broken.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr_of(&output);
    assert!(message.contains("JSON"), "{message}");
    assert_eq!(db_contents(&db.path), before, "nothing was written");

    let missing = db.sibling("missing.json");
    let output = cli(&db.path, &["import", missing.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("missing.json"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(db_contents(&db.path), before);
}

/// A typo in `--db` must not leave an empty database behind: commands that
/// only read refuse a missing file, and a write refused for its input
/// creates nothing either.
#[test]
fn failed_or_read_only_commands_create_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("settings.db");
    for args in [
        &["get", "a"][..],
        &["export"],
        &["history", "a"],
        &["stats"],
        &["check"],
        &["set", "a b", "1"],
        &["set", "a", "not json"],
        &["unset", "a..b"],
    ] {
        let out = cli(&path, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(
            !dir.path().join("missing").exists(),
            "{args:?} created {}",
            path.display()
        );
    }
    let out = cli(&path, &["get", "a"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("livesettings init"),
        "the message says how to create one"
    );
}
