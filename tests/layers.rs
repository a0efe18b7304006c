//! Layers: environment overrides > database > registered defaults, seen by
//! reads, sections, live handles, subscribers and the CLI, with `explain`
//! saying where each value comes from.

mod support;

use livesettings::{Layer, Options, Source, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use support::*;

#[derive(Debug, Default, Deserialize, PartialEq, Serialize)]
struct Server {
    port: u16,
    host: String,
}

fn cli_with_env(db: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = cli_command(db);
    for (name, value) in env {
        command.env(name, value);
    }
    command.args(args).output().expect("run livesettings")
}

fn stdout_json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn an_environment_override_wins_over_the_database_for_every_read_command() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "server.port", "8080"]);
    cli_ok(&db.path, &["set", "server.host", "\"a\""]);
    let env = [("SETTINGS_ENV_PREFIX", "APP"), ("APP_SERVER__PORT", "9000")];
    let got = stdout_json(&cli_with_env(&db.path, &env, &["get", "server.port"]));
    assert_eq!(got, json!(9000));
    let section = stdout_json(&cli_with_env(&db.path, &env, &["export", "server"]));
    assert_eq!(section, json!({"port": 9000, "host": "a"}));
    // --env-prefix works as well as the variable.
    let flag = stdout_json(&cli_with_env(
        &db.path,
        &[("APP_SERVER__PORT", "9001")],
        &["--env-prefix", "APP", "get", "server.port"],
    ));
    assert_eq!(flag, json!(9001));
    // Without a prefix the database's value; and writes are unaffected.
    assert_eq!(cli_ok(&db.path, &["get", "server.port"]).trim(), "8080");
    assert_eq!(db_value(&db.path, "server.port"), Some(json!(8080)));

    let layers = stdout_json(&cli_with_env(&db.path, &env, &["export", "--layers"]));
    assert_eq!(layers["server.port"]["layer"], "env");
    assert_eq!(layers["server.port"]["variable"], "APP_SERVER__PORT");
    assert_eq!(layers["server.host"]["layer"], "database");

    let explained = stdout_json(&cli_with_env(&db.path, &env, &["explain", "server.port"]));
    assert_eq!(explained["layer"], "env", "{explained}");
    assert_eq!(explained["value"], 9000);
    assert_eq!(explained["database"], 8080);
    assert_eq!(explained["shadowed"], true);
    assert_eq!(explained["last_change"]["origin"], "livesettings-cli");
    assert!(explained["last_change"]["seq"].as_i64().is_some());
}

#[test]
fn a_variable_that_cannot_name_a_key_is_a_clear_error() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "a", "1"]);
    let output = cli_with_env(
        &db.path,
        &[("SETTINGS_ENV_PREFIX", "APP"), ("APP_A____B", "1")],
        &["get", "a"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("APP_A____B"), "{stderr}");
}

#[test]
fn a_watch_with_an_override_prints_nothing_for_the_shadowed_key() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "server.port", "8080"]);
    cli_ok(&db.path, &["set", "server.host", "\"a\""]);
    let mut command = cli_command(&db.path);
    command
        .env("SETTINGS_ENV_PREFIX", "APP")
        .env("APP_SERVER__PORT", "9000")
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn watch");
    let stdout = child.stdout.take().expect("stdout");
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let ready: Value = serde_json::from_str(&lines.recv_timeout(TIMEOUT).unwrap()).unwrap();
    assert_eq!(ready["event"], "ready");
    // The shadowed key first, then another: only the other is printed.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '1' WHERE key = 'server.port'",
    );
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '\"b\"' WHERE key = 'server.host'",
    );
    let line: Value = serde_json::from_str(&lines.recv_timeout(TIMEOUT).unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line["key"], "server.host", "{line}");
}

#[test]
fn registered_defaults_fill_what_the_database_lacks_and_are_never_written() {
    let db = TempDb::new();
    let store = Options::new()
        .with_defaults(json!({"server": {"port": 80, "host": "localhost"}}))
        .open(&db.path)
        .unwrap();
    assert_eq!(store.get::<u16>("server.port").unwrap(), Some(80));
    assert_eq!(
        store.section::<Server>("server").unwrap(),
        Server {
            port: 80,
            host: "localhost".into()
        }
    );
    assert!(db_contents(&db.path).is_empty(), "defaults are not written");
    let live = store.live::<Server>("server").unwrap();
    let events = store.subscribe("server").unwrap();

    // Another writer stores a value: it wins, and the event says so.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('server.port', '8080')",
    );
    let change = next_change(&events, "the stored value");
    assert_eq!(
        (
            change.key.as_str(),
            change.old_value().cloned(),
            change.new_value().cloned(),
            change.source
        ),
        (
            "server.port",
            Some(json!(80)),
            Some(json!(8080)),
            Source::External
        )
    );
    assert_eq!(live.load().port, 8080);
    assert_eq!(
        store.explain("server.port").unwrap().layer,
        Some(Layer::Database)
    );

    // Removed again: the default is back, as a change.
    sqlite3(&db.path, "DELETE FROM settings WHERE key = 'server.port'");
    let change = next_change(&events, "the default again");
    assert_eq!(
        (change.old_value().cloned(), change.new_value().cloned()),
        (Some(json!(8080)), Some(json!(80)))
    );
    assert_eq!(live.load().port, 80);
    let explained = store.explain("server.port").unwrap();
    assert_eq!(explained.layer, Some(Layer::Default));
    assert_eq!(explained.database, None);
    assert_eq!(
        explained
            .last_change
            .map(|entry| entry.new_value().cloned()),
        Some(None),
        "the last change is the removal"
    );
}

#[test]
fn a_stored_section_hides_a_default_leaf_of_the_other_shape() {
    let db = TempDb::new();
    let store = Options::new()
        .with_defaults(json!({"a": {"b": 1}}))
        .open(&db.path)
        .unwrap();
    let events = store.subscribe("a").unwrap();
    store.set("a.b.c", &2).unwrap();
    assert_eq!(store.subtree("a").unwrap(), Some(json!({"b": {"c": 2}})));
    let mut seen: Vec<(String, Option<Value>)> = drain(&events)
        .into_iter()
        .filter_map(|event| {
            event
                .as_change()
                .map(|c| (c.key.clone(), c.new_value().cloned()))
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("a.b".to_owned(), None),
            ("a.b.c".to_owned(), Some(json!(2)))
        ],
        "the hidden default is announced as removed"
    );
}

#[test]
fn typed_defaults_and_typed_section_writes() {
    let db = TempDb::new();
    let store = Options::new()
        .with_defaults_of::<Server>("server")
        .unwrap()
        .open(&db.path)
        .unwrap();
    assert_eq!(
        store.section::<Server>("server").unwrap(),
        Server::default()
    );
    store.set("server.legacy", &true).unwrap();
    let written = store
        .set_section(
            "server",
            &Server {
                port: 443,
                host: "h".into(),
            },
        )
        .unwrap();
    assert_eq!(written.changes, 3, "two set, one removed, one commit");
    assert_eq!(
        db_contents(&db.path),
        [
            ("server.host".to_owned(), json!("h")),
            ("server.port".to_owned(), json!(443)),
        ]
        .into()
    );
    // `set` of a struct writes the section the same way.
    store
        .set(
            "server",
            &Server {
                port: 8443,
                host: "h".into(),
            },
        )
        .unwrap();
    assert_eq!(store.get::<u16>("server.port").unwrap(), Some(8443));
    let history = store.history("server.legacy", 10).unwrap();
    assert_eq!(
        history.last().map(|entry| entry.new_value().cloned()),
        Some(None)
    );
}

#[test]
fn a_store_without_layers_reads_the_database_view() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("k", &1).unwrap();
    let explained = store.explain("k").unwrap();
    assert_eq!(explained.layer, Some(Layer::Database));
    assert!(!explained.shadowed);
    assert_eq!(explained.default, None);
}

#[test]
fn a_typed_validator_judges_the_section_as_readers_see_it_with_its_defaults() {
    let db = TempDb::new();
    let store = Options::new()
        .with_defaults_of::<Server>("server")
        .unwrap()
        .open(&db.path)
        .unwrap();
    store
        .add_validator::<Server>("server", |server| {
            if server.port == 1 {
                Err("port 1 is reserved".to_owned())
            } else {
                Ok(())
            }
        })
        .unwrap();
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
    // Only one field stored: the default fills the other for the check.
    store.set("server.port", &8080).unwrap();
    assert_eq!(
        store.get::<String>("server.host").unwrap().as_deref(),
        Some("")
    );
    assert!(store.set("server.port", &1).is_err());
    // A foreign write the validator refuses is kept out as usual.
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '1' WHERE key = 'server.port'",
    );
    wait_until("the refusal", || !store.rejected().is_empty());
    assert_eq!(store.get::<u16>("server.port").unwrap(), Some(8080));
}
