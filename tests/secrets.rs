//! Secret keys (issue 14): their values are redacted by every command that
//! prints values unless `--show-secrets` is given, and never appear in the
//! library's log lines or rejection reasons.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use livesettings::Store;
use serde_json::{Value, json};
use support::{TempDb, cli, cli_command, cli_ok, sqlite3};

const PASSWORD: &str = "hunter2-secret-XYZ";
const TOKEN: &str = "tok-secret-QRS";
/// A wrong-typed token (the rule wants a string).
const BAD_TOKEN: &str = "86420975";
/// A pin above the rule's maximum.
const BAD_PIN: &str = "987654321";
const MARKER: &str = r#"{"<redacted>":true}"#;

const RULES: &str = r#"{"rules": [
    {"keys": "db.password", "secret": true},
    {"keys": "db.token", "type": "string", "secret": true},
    {"keys": "db.pin", "type": "integer", "maximum": 9999, "secret": true}
]}"#;

/// A database with a rules file beside it and secret values stored.
fn db_with_secrets() -> TempDb {
    let db = TempDb::new();
    let mut rules = db.path.as_os_str().to_owned();
    rules.push(".schema.json");
    std::fs::write(rules, RULES).unwrap();
    cli_ok(&db.path, &["set", "db.host", "\"db.example\""]);
    cli_ok(
        &db.path,
        &["set", "db.password", &format!("\"{PASSWORD}\"")],
    );
    cli_ok(&db.path, &["set", "db.token", &format!("\"{TOKEN}\"")]);
    cli_ok(&db.path, &["set", "db.pin", "1234"]);
    db
}

/// Stdout and stderr of a run, in three logging setups: default, `-vv`,
/// and `RUST_LOG=trace`.
fn runs(db: &Path, args: &[&str]) -> Vec<(String, Output)> {
    let verbose: Vec<&str> = std::iter::once("-vv").chain(args.iter().copied()).collect();
    let traced = cli_command(db)
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run the livesettings binary");
    vec![
        (format!("{args:?}"), cli(db, args)),
        (format!("-vv {args:?}"), cli(db, &verbose)),
        (format!("RUST_LOG=trace {args:?}"), traced),
    ]
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `args` succeeds (or exits as `expected`) printing no secret value on
/// any line of stdout or stderr, whatever the log level; returns stdout of
/// the default run.
fn assert_hidden(db: &Path, args: &[&str], expected: i32) -> String {
    let mut first = None;
    for (run, output) in runs(db, args) {
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(expected), "{run}: {stderr}");
        for secret in [PASSWORD, TOKEN, BAD_TOKEN, BAD_PIN] {
            assert!(!stdout.contains(secret), "{run} printed {secret}: {stdout}");
            assert!(!stderr.contains(secret), "{run} logged {secret}: {stderr}");
        }
        first.get_or_insert(stdout);
    }
    first.unwrap_or_default()
}

/// With `--show-secrets`, `args` prints `secret` on stdout.
fn assert_shown(db: &Path, args: &[&str], secret: &str) -> String {
    let shown: Vec<&str> = std::iter::once("--show-secrets")
        .chain(args.iter().copied())
        .collect();
    let output = cli(db, &shown);
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains(secret),
        "{shown:?} hid {secret}: {stdout} {stderr}"
    );
    stdout
}

fn compact(stdout: &str) -> String {
    stdout.split_whitespace().collect()
}

#[test]
fn get_prints_a_secret_key_as_the_marker_unless_show_secrets() {
    let db = db_with_secrets();
    let stdout = assert_hidden(&db.path, &["get", "db.password"], 0);
    assert_eq!(compact(&stdout), MARKER);
    assert_shown(&db.path, &["get", "db.password"], PASSWORD);
}

#[test]
fn get_of_a_section_redacts_only_its_secret_leaves() {
    let db = db_with_secrets();
    let stdout = assert_hidden(&db.path, &["get", "db"], 0);
    let tree: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        tree,
        json!({
            "host": "db.example",
            "password": {"<redacted>": true},
            "pin": {"<redacted>": true},
            "token": {"<redacted>": true},
        })
    );
    let shown: Value =
        serde_json::from_str(&assert_shown(&db.path, &["get", "db"], PASSWORD)).unwrap();
    assert_eq!(shown["pin"], json!(1234));
}

#[test]
fn export_redacts_secret_values_in_every_format_and_with_layers() {
    let db = db_with_secrets();
    for format in ["json", "toml", "yaml"] {
        let stdout = assert_hidden(&db.path, &["export", "--format", format], 0);
        assert!(stdout.contains("<redacted>"), "{format}: {stdout}");
        assert!(stdout.contains("db.example"), "{format}: {stdout}");
        assert_shown(&db.path, &["export", "--format", format], PASSWORD);
    }
    let stdout = assert_hidden(&db.path, &["export", "db", "--layers"], 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["db.password"]["value"], json!({"<redacted>": true}));
    assert_eq!(listed["db.host"]["value"], json!("db.example"));
    assert_shown(&db.path, &["export", "db", "--layers"], PASSWORD);
}

#[test]
fn a_redacted_export_cannot_be_imported_back_over_the_secrets() {
    let db = db_with_secrets();
    let document = db.sibling("export.json");
    cli_ok(&db.path, &["export", "-o", document.to_str().unwrap()]);
    let output = cli(&db.path, &["import", document.to_str().unwrap()]);
    assert!(!output.status.success(), "{:?}", text(&output));
    assert_eq!(
        support::db_value(&db.path, "db.password"),
        Some(json!(PASSWORD))
    );
}

#[test]
fn history_redacts_old_and_new_values_of_a_secret_key() {
    let db = db_with_secrets();
    cli_ok(
        &db.path,
        &["set", "db.password", "\"hunter2-secret-XYZ-2\""],
    );
    for args in [
        &["history", "db.password"][..],
        &["history", "db.password", "--json"],
        &["history", "db", "--prefix"],
        &["history", "db", "--prefix", "--json"],
    ] {
        let stdout = assert_hidden(&db.path, args, 0);
        assert!(stdout.contains("db.password"), "{args:?}: {stdout}");
        assert!(stdout.contains("<redacted>"), "{args:?}: {stdout}");
        assert!(!stdout.contains("XYZ-2"), "{args:?}: {stdout}");
        assert_shown(&db.path, args, "hunter2-secret-XYZ-2");
    }
    let stdout = assert_hidden(&db.path, &["history", "db", "--prefix", "--json"], 0);
    assert!(
        stdout.contains("db.example"),
        "non-secret values stay: {stdout}"
    );
}

#[test]
fn explain_redacts_every_layer_of_a_secret_key() {
    let db = db_with_secrets();
    let args = ["--env-prefix", "APP", "explain", "db.password"];
    let overridden = |command: &mut Command| {
        command
            .args(args)
            .env("APP_DB__PASSWORD", "\"hunter2-secret-XYZ-env\"")
            .output()
            .expect("run the livesettings binary")
    };
    let output = overridden(&mut cli_command(&db.path));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stdout}{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["value"], json!({"<redacted>": true}));
    assert_eq!(report["env"]["value"], json!({"<redacted>": true}));
    assert_eq!(report["database"], json!({"<redacted>": true}));
    let shown = overridden(cli_command(&db.path).arg("--show-secrets"));
    let (stdout, _) = text(&shown);
    assert!(stdout.contains("hunter2-secret-XYZ-env") && stdout.contains(PASSWORD));
    assert_hidden(&db.path, &["explain", "db.password"], 0);
}

#[test]
fn check_reports_a_secret_violation_without_its_value() {
    let db = db_with_secrets();
    sqlite3(
        &db.path,
        &format!("UPDATE settings SET value = '{BAD_PIN}' WHERE key = 'db.pin'"),
    );
    let stdout = assert_hidden(&db.path, &["check"], 1);
    assert!(
        stdout.contains("db.pin") && stdout.contains("maximum"),
        "{stdout}"
    );
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert_shown(&db.path, &["check"], BAD_PIN);
}

#[test]
fn a_rejected_secret_write_is_reported_without_its_value() {
    let db = db_with_secrets();
    for args in [
        &["set", "db.pin", BAD_PIN][..],
        &["set", "db.token", BAD_TOKEN],
        &["set", "db", &format!(r#"{{"pin": {BAD_PIN}}}"#)],
    ] {
        let shown: Vec<&str> = std::iter::once("--show-secrets")
            .chain(args.iter().copied())
            .collect();
        for run in [args, &shown[..]] {
            for (label, output) in runs(&db.path, run) {
                let (stdout, stderr) = text(&output);
                assert_eq!(output.status.code(), Some(1), "{label}: {stderr}");
                assert!(stderr.contains("rejected"), "{label}: {stderr}");
                assert!(stderr.contains("db."), "{label} names the key: {stderr}");
                for secret in [BAD_PIN, BAD_TOKEN, PASSWORD] {
                    assert!(
                        !stdout.contains(secret) && !stderr.contains(secret),
                        "{label}: {stderr}"
                    );
                }
            }
        }
    }
    assert_eq!(support::db_value(&db.path, "db.pin"), Some(json!(1234)));
}

#[test]
fn a_secret_only_rule_constrains_nothing() {
    let db = db_with_secrets();
    cli_ok(&db.path, &["set", "db.password", "42"]);
    assert_eq!(support::db_value(&db.path, "db.password"), Some(json!(42)));
}

// ---------------------------------------------------------------------------
// watch

/// A `watch` whose stdout and stderr lines both arrive on one channel.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn spawn(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Watch {
        let mut command = cli_command(db);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn livesettings watch");
        let (send, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream, tag) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, "out"),
            (Box::new(stderr), "err"),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if send.send(format!("{tag}: {line}")).is_err() {
                        break;
                    }
                }
            });
        }
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains every word; returns it.
    fn until(&mut self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if words.iter().all(|word| line.contains(word)) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no line with {words:?}; saw {:#?}", self.seen)
                }
            }
        }
    }

    /// A line with every word, among those already read or the next ones
    /// (for lines of stdout and stderr, whose order is not fixed).
    fn saw(&mut self, words: &[&str]) -> String {
        let found = self
            .seen
            .iter()
            .find(|line| words.iter().all(|word| line.contains(word)));
        match found {
            Some(line) => line.clone(),
            None => self.until(words),
        }
    }

    /// Stops the watch and asserts that no line it printed, on stdout or
    /// stderr, held a secret value.
    fn assert_nothing_leaked(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        for line in &self.seen {
            for secret in [PASSWORD, TOKEN, BAD_TOKEN, BAD_PIN, "hunter2"] {
                assert!(!line.contains(secret), "leaked {secret}: {line}");
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn watch_prints_a_secret_change_with_the_key_and_the_value_redacted() {
    let db = db_with_secrets();
    for (run, (args, env)) in [
        (&["watch"][..], &[][..]),
        (&["-vv", "watch", "--json"], &[]),
        (&["watch", "--commits"], &[("RUST_LOG", "trace")]),
        (&["watch", "--json", "--commits"], &[]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut watch = Watch::spawn(&db.path, args, env);
        watch.until(&["out: "]);
        let host = format!("db{run}.example");
        cli_ok(
            &db.path,
            &["set", "db.password", "\"hunter2-secret-XYZ-new\""],
        );
        cli_ok(&db.path, &["set", "db.host", &format!("\"{host}\"")]);
        let line = watch.until(&["db.password", "<redacted>"]);
        assert!(line.starts_with("out: "), "{line}");
        watch.until(&["db.host", &host]);
        watch.assert_nothing_leaked();
        cli_ok(
            &db.path,
            &["set", "db.password", &format!("\"{PASSWORD}\"")],
        );
    }
}

#[test]
fn watch_with_show_secrets_prints_secret_values() {
    let db = db_with_secrets();
    let mut watch = Watch::spawn(&db.path, &["--show-secrets", "watch", "--json"], &[]);
    watch.until(&["\"ready\""]);
    cli_ok(
        &db.path,
        &["set", "db.password", "\"hunter2-secret-XYZ-new\""],
    );
    watch.until(&["db.password", "hunter2-secret-XYZ-new"]);
}

#[test]
fn watch_replays_the_log_with_secret_values_redacted() {
    let db = db_with_secrets();
    for args in [
        &["watch", "--from", "0"][..],
        &["-vv", "watch", "--json", "--from", "0"],
    ] {
        let mut watch = Watch::spawn(&db.path, args, &[]);
        watch.until(&["db.password", "<redacted>"]);
        watch.until(&["db.pin", "<redacted>"]);
        watch.assert_nothing_leaked();
    }
}

#[test]
fn watch_reports_a_refused_foreign_secret_write_without_its_value() {
    let db = db_with_secrets();
    for (args, good) in [
        (&["-vv", "watch"][..], 4321),
        (&["-vv", "watch", "--json"], 5432),
    ] {
        let mut watch = Watch::spawn(&db.path, args, &[]);
        watch.until(&["out: "]);
        sqlite3(
            &db.path,
            &format!("UPDATE settings SET value = '{BAD_PIN}' WHERE key = 'db.pin'"),
        );
        watch.saw(&["out: ", "rejected", "db.pin"]);
        watch.saw(&["err: ", "rejected", "db.pin"]);
        sqlite3(
            &db.path,
            &format!("UPDATE settings SET value = '{good}' WHERE key = 'db.pin'"),
        );
        watch.until(&["out: ", "db.pin", "<redacted>", "seq"]);
        watch.assert_nothing_leaked();
    }
}

#[test]
fn watch_started_over_a_refused_secret_serves_it_without_logging_either_value() {
    let db = db_with_secrets();
    sqlite3(
        &db.path,
        &format!("UPDATE settings SET value = '{BAD_TOKEN}' WHERE key = 'db.token'"),
    );
    let mut watch = Watch::spawn(&db.path, &["-vv", "watch", "--json"], &[]);
    // The start-up fallback serves the logged good token: both the refused
    // and the served value are secret.
    watch.saw(&["out: ", "rejected", "db.token", "serving"]);
    watch.saw(&["err: ", "db.token", "serving"]);
    watch.assert_nothing_leaked();
}

// ---------------------------------------------------------------------------
// The library

#[test]
fn the_library_never_puts_a_secret_value_in_an_error_or_a_rejection() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("db.pin", &1234).unwrap();
    store.mark_secret("db.pin").unwrap();
    assert!(store.is_secret("db.pin") && !store.is_secret("db.host"));
    let rules = livesettings::Rules::from_json(
        r#"{"rules": [{"keys": "db.pin", "type": "integer", "maximum": 9999}]}"#,
    )
    .unwrap();
    store.add_rules(&rules).unwrap();
    let error = store.set("db.pin", &987_654_321).unwrap_err().to_string();
    assert!(
        error.contains("db.pin") && !error.contains(BAD_PIN),
        "{error}"
    );
    sqlite3(
        &db.path,
        &format!("UPDATE settings SET value = '{BAD_PIN}' WHERE key = 'db.pin'"),
    );
    support::wait_until("the foreign write is refused", || {
        !store.rejected().is_empty()
    });
    for rejection in store.rejected() {
        assert!(!rejection.reason.contains(BAD_PIN), "{}", rejection.reason);
    }
    assert_eq!(store.get::<i64>("db.pin").unwrap(), Some(1234));
    // Registered later over the refused value: the fallback's reason too.
    let other = Store::open(&db.path).unwrap();
    other.mark_secret("db.*").unwrap();
    other.add_rules(&rules).unwrap();
    let reasons: Vec<String> = other.rejected().into_iter().map(|r| r.reason).collect();
    assert!(!reasons.is_empty());
    for reason in reasons {
        assert!(
            !reason.contains(BAD_PIN) && !reason.contains("1234"),
            "{reason}"
        );
    }
    assert!(other.secrets().is_secret("db.pin"));
}

#[test]
fn add_rules_registers_the_secret_patterns_of_the_rules() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .add_rules(&livesettings::Rules::from_json(RULES).unwrap())
        .unwrap();
    assert!(store.is_secret("db.password") && store.is_secret("db.pin"));
    assert!(!store.is_secret("db.host"));
    assert!(store.mark_secret("db..x").is_err());
}

#[test]
fn a_typed_validator_refusing_a_secret_section_does_not_quote_its_value() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("db.pin", &1234).unwrap();
    store.mark_secret("db.pin").unwrap();
    store.add_validator::<u32>("db.pin", |_| Ok(())).unwrap();
    let error = store.set("db.pin", &PASSWORD).unwrap_err().to_string();
    assert!(
        error.contains("db.pin") && error.contains("schema"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "{error}");
    // Not secret: serde's message, value included, stays useful.
    store.add_validator::<u32>("port", |_| Ok(())).unwrap();
    let error = store.set("port", &"eighty").unwrap_err().to_string();
    assert!(error.contains("eighty"), "{error}");
}

#[test]
fn watch_from_a_pruned_seq_prints_the_full_state_with_secret_values_redacted() {
    let db = db_with_secrets();
    cli_ok(&db.path, &["set", "db.host", "\"db3.example\""]);
    cli_ok(&db.path, &["prune", "--keep", "1"]);
    for args in [
        &["watch", "--from", "1"][..],
        &["-vv", "watch", "--json", "--from", "1"],
    ] {
        let mut watch = Watch::spawn(&db.path, args, &[]);
        watch.saw(&["err: ", "pruned"]);
        watch.saw(&["out: ", "db.password", "<redacted>"]);
        watch.saw(&["out: ", "db.host", "db3.example"]);
        watch.assert_nothing_leaked();
    }
}

#[test]
fn a_secret_value_that_is_not_json_is_refused_without_echoing_it() {
    let db = db_with_secrets();
    // Forgotten quotes: not JSON. The error must not repeat the value.
    let stderr = text(&cli(&db.path, &["set", "db.password", PASSWORD])).1;
    assert!(stderr.contains("db.password"), "{stderr}");
    assert_hidden(&db.path, &["set", "db.password", PASSWORD], 2);
    // A key that is not secret still gets the helpful echo.
    let plain = text(&cli(&db.path, &["set", "db.host", "plain-text"])).1;
    assert!(plain.contains("plain-text"), "{plain}");
}

#[test]
fn an_unreadable_stored_value_is_refused_without_quoting_its_text() {
    let db = db_with_secrets();
    // Valid JSON the store cannot hold exactly: refused as it is read.
    let huge = "98765432109876543210987";
    sqlite3(
        &db.path,
        &format!("UPDATE settings SET value = '{huge}' WHERE key = 'db.password'"),
    );
    for args in [
        &["get", "db"][..],
        &["export"][..],
        &["stats", "--json"][..],
    ] {
        for (run, output) in runs(&db.path, args) {
            let (stdout, stderr) = text(&output);
            assert!(!stdout.contains(huge), "{run} printed it: {stdout}");
            assert!(!stderr.contains(huge), "{run} logged it: {stderr}");
        }
    }
}
