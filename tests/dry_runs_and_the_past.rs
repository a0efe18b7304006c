//! Dry runs (`--dry-run`, `Store::plan`), the past (`diff`, `export --at`,
//! `Store::state_at`, `Store::diff`) and named checkpoints, driven through
//! the real binary where an operator would use them.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use livesettings::{Options, PlannedChange, WatchMode};
use serde_json::{Value, json};

use support::*;

const PORT_RULE: &str = r#"{"rules":[{"keys":"app.port","type":"integer","maximum":65535}]}"#;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A digest of a file's bytes (its length and a hash), `None` when absent.
fn digest(file: &Path) -> Option<(usize, u64)> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(file).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some((bytes.len(), hasher.finish()))
}

/// The bytes of the database and its `-wal` (as digests), and `PRAGMA
/// data_version` as `observer` (a connection kept open across the commands)
/// sees it.
fn untouched_state(db: &Path, observer: &rusqlite::Connection) -> [Option<(usize, u64)>; 3] {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let version: i64 = observer
        .query_row("PRAGMA data_version", [], |row| row.get(0))
        .expect("read data_version");
    [
        digest(db),
        digest(Path::new(&wal)),
        Some((0, version as u64)),
    ]
}

fn write_rules(db: &TempDb) {
    std::fs::write(db.sibling("settings.db.schema.json"), PORT_RULE).expect("write the rules file");
}

fn flat(tree: &Value) -> BTreeMap<String, Value> {
    livesettings::flatten("", tree).expect("an exported tree is an object")
}

// ---------------------------------------------------------------------------
// Dry runs

#[test]
fn dry_runs_of_set_unset_import_and_revert_print_the_diff_and_write_nothing() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let first: i64 = cli_ok(&db.path, &["set", "app.port", "80"])
        .trim()
        .parse()
        .unwrap();
    cli_ok(&db.path, &["set", "app.host", r#""a""#]);
    let third: i64 = cli_ok(&db.path, &["set", "app.port", "8080"])
        .trim()
        .parse()
        .unwrap();
    let document = db.sibling("import.json");
    std::fs::write(&document, r#"{"app":{"port":81,"name":"x"}}"#).unwrap();
    let observer = connect(&db.path);
    let before = untouched_state(&db.path, &observer);
    let contents = db_contents(&db.path);

    let cases: [(&[&str], &str); 6] = [
        (&["set", "app.port", "9000"], "app.port: 8080 → 9000\n"),
        (&["unset", "app.host"], "app.host: \"a\" → (removed)\n"),
        (
            &["unset", "--recursive", "app"],
            "app.host: \"a\" → (removed)\napp.port: 8080 → (removed)\n",
        ),
        (
            &["import", document.to_str().unwrap()],
            "app.name: (absent) → \"x\"\napp.port: 8080 → 81\n",
        ),
        (&["revert", &third.to_string()], "app.port: 8080 → 80\n"),
        (
            &["revert", "--to", &first.to_string()],
            "app.host: \"a\" → (removed)\napp.port: 8080 → 80\n",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.push("--dry-run");
        let output = cli(&db.path, &args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(stdout(&output), expected, "{args:?}");
        assert!(stderr(&output).contains("nothing was written"), "{args:?}");
        assert_eq!(
            untouched_state(&db.path, &observer),
            before,
            "{args:?} wrote"
        );
    }
    assert_eq!(db_contents(&db.path), contents);
    assert_eq!(log_rows(&db.path), 3);
}

#[test]
fn dry_run_json_prints_one_object_per_key_with_removals_marked() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    cli_ok(&db.path, &["set", "app.host", "null"]);
    let document = db.sibling("import.json");
    std::fs::write(&document, r#"{"app":{"port":81,"name":"x"}}"#).unwrap();
    let output = cli_ok(
        &db.path,
        &["import", document.to_str().unwrap(), "--dry-run", "--json"],
    );
    let objects: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            json!({"key": "app.name", "change": "added", "new": "x"}),
            json!({"key": "app.port", "change": "changed", "old": 80, "new": 81}),
        ]
    );
    // A null value is a value: its removal keeps `old: null`, and has no `new`.
    let output = cli_ok(&db.path, &["unset", "app.host", "--dry-run", "--json"]);
    let removal: Value = serde_json::from_str(output.trim()).unwrap();
    assert_eq!(
        removal,
        json!({"key": "app.host", "change": "removed", "old": null})
    );
}

#[test]
fn a_dry_run_the_rules_refuse_exits_1_naming_key_value_and_rule_and_writes_nothing() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    write_rules(&db);
    let observer = connect(&db.path);
    let before = untouched_state(&db.path, &observer);

    let output = cli(&db.path, &["set", "app.port", "70000", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    for part in ["app.port", "70000", "maximum 65535", "refused"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(message.lines().count(), 1, "{message}");
    assert_eq!(stdout(&output), "");

    // The same file through import: refused as a whole.
    let document = db.sibling("import.json");
    std::fs::write(&document, r#"{"app":{"port":70000,"name":"x"}}"#).unwrap();
    let output = cli(
        &db.path,
        &["import", document.to_str().unwrap(), "--dry-run"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("70000"), "{}", stderr(&output));

    // The tree's shape: a key below a key that holds a value.
    let output = cli(&db.path, &["set", "app.port.x", "1", "--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("app.port"), "{}", stderr(&output));

    // What the rules accept passes, and is still not written.
    let output = cli(&db.path, &["set", "app.port", "65535", "--dry-run"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(untouched_state(&db.path, &observer), before);
    assert_eq!(db_value(&db.path, "app.port"), Some(json!(80)));
}

#[test]
fn a_dry_run_without_a_database_creates_nothing() {
    let db = TempDb::new();
    for args in [
        &["set", "app.port", "80", "--dry-run"][..],
        &["unset", "app.port", "--dry-run"],
        &["revert", "--to", "0", "--dry-run"],
    ] {
        let output = cli(&db.path, args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("creates nothing"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(folder_state(db.dir.path()).len(), 0, "nothing was created");
}

#[test]
fn plan_applies_typed_validators_and_publishes_nothing() {
    #[derive(serde::Deserialize)]
    struct Server {
        port: u16,
    }
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("server.port", &80).unwrap();
    store
        .add_validator::<Server>("server", |server| {
            if server.port < 1024 {
                Ok(())
            } else {
                Err(format!("port {} is not privileged", server.port))
            }
        })
        .unwrap();
    let events = store.subscribe("").unwrap();
    let seq = store.snapshot().seq();

    let refused = store.plan(|store| store.set("server.port", &8080)).unwrap();
    let error = refused
        .refused
        .as_ref()
        .expect("the validator refuses 8080");
    assert!(error.to_string().contains("not privileged"), "{error}");

    let plan = store.plan(|store| store.set("server.port", &443)).unwrap();
    assert!(!plan.is_refused());
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].key, "server.port");
    assert_eq!(plan.changes[0].old_value(), Some(&json!(80)));
    assert_eq!(plan.changes[0].new_value(), Some(&json!(443)));

    // A plan covers one write.
    let second = store.plan(|store| {
        store.set("server.port", &1)?;
        store.set("server.port", &2)
    });
    assert!(second.is_err(), "{second:?}");

    assert_eq!(store.get::<i64>("server.port").unwrap(), Some(80));
    assert_eq!(store.snapshot().seq(), seq);
    assert!(events.try_recv().is_err(), "a dry run publishes nothing");
    assert_eq!(db_value(&db.path, "server.port"), Some(json!(80)));
    // The store still writes normally afterwards.
    assert_eq!(store.set("server.port", &22).unwrap().changes, 1);
}

// ---------------------------------------------------------------------------
// The past

/// The model's difference between two states, as `diff --json` prints it.
fn model_diff(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| {
            let mut object = json!({"key": key});
            object["change"] = json!(match (before.get(key), after.get(key)) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            });
            if let Some(old) = before.get(key) {
                object["old"] = old.clone();
            }
            if let Some(new) = after.get(key) {
                object["new"] = new.clone();
            }
            object
        })
        .collect()
}

#[test]
fn diff_and_export_at_match_a_model_of_random_writes() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let mut rng = Rng::new(0x5eed_1414);
    let keys = ["a.x", "a.y", "b.z", "c.w.v"];
    // The state after each commit, by its seq (0: before the first one).
    let mut model: BTreeMap<i64, BTreeMap<String, Value>> = BTreeMap::new();
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    model.insert(0, state.clone());
    for step in 0..60 {
        let key = keys[rng.below(keys.len())];
        let commit = match rng.below(5) {
            0 => {
                state.remove(key);
                store.unset(key).unwrap()
            }
            1 => {
                // A merge of two keys: one commit, two rows.
                let other = keys[rng.below(keys.len())];
                let mut tree = json!({});
                for (k, v) in [(key, json!(step)), (other, json!([step, "m"]))] {
                    state.insert(k.to_owned(), v.clone());
                    let (section, leaf) = k.rsplit_once('.').unwrap();
                    let mut node = &mut tree;
                    for part in section.split('.') {
                        node = node
                            .as_object_mut()
                            .unwrap()
                            .entry(part)
                            .or_insert(json!({}));
                    }
                    node[leaf] = v;
                }
                store.merge(&tree).unwrap()
            }
            2 => {
                // Another process's write, through the shell.
                let value = json!(format!("shell {step}"));
                state.insert(key.to_owned(), value.clone());
                let text = value.to_string();
                sqlite3(
                    &db.path,
                    &format!(
                        "INSERT INTO settings (key, value) VALUES ('{key}', '{text}') \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value;"
                    ),
                );
                let seq: i64 = db_scalar(&db.path, "SELECT max(seq) FROM settings_log")
                    .unwrap()
                    .parse()
                    .unwrap();
                model.insert(seq, state.clone());
                continue;
            }
            _ => {
                let value = if rng.below(2) == 0 {
                    json!(step)
                } else {
                    json!(null)
                };
                state.insert(key.to_owned(), value.clone());
                store.set(key, &value).unwrap()
            }
        };
        if commit.changes > 0 {
            model.insert(commit.seq, state.clone());
        }
    }
    assert_eq!(db_contents(&db.path), state, "the model follows the file");
    let seqs: Vec<i64> = model.keys().copied().collect();
    let newest = *seqs.last().unwrap();

    // The library, at every commit.
    for (&seq, expected) in &model {
        let snapshot = store.state_at(seq).unwrap();
        let got: BTreeMap<String, Value> = snapshot
            .entries("")
            .map(|(key, value)| (key.to_owned(), value.clone()))
            .collect();
        assert_eq!(&got, expected, "state_at({seq})");
    }
    for _ in 0..20 {
        let from = seqs[rng.below(seqs.len())];
        let to = seqs[rng.below(seqs.len())];
        let diff: Vec<Value> = store
            .diff(from, Some(to))
            .unwrap()
            .iter()
            .map(|change: &PlannedChange| {
                let mut object = json!({"key": change.key});
                object["change"] = json!(if change.old.is_none() {
                    "added"
                } else if change.new.is_none() {
                    "removed"
                } else {
                    "changed"
                });
                if let Some(old) = &change.old_value().cloned() {
                    object["old"] = old.clone();
                }
                if let Some(new) = &change.new_value().cloned() {
                    object["new"] = new.clone();
                }
                object
            })
            .collect();
        assert_eq!(
            diff,
            model_diff(&model[&from], &model[&to]),
            "diff({from}, {to})"
        );
    }
    store.close().unwrap();

    // The binary, at a sample of commits.
    for _ in 0..6 {
        let from = seqs[rng.below(seqs.len())];
        let to = seqs[rng.below(seqs.len())];
        let exported = cli_ok(&db.path, &["export", "--at", &from.to_string()]);
        let tree: Value = serde_json::from_str(&exported).unwrap();
        assert_eq!(flat(&tree), model[&from], "export --at {from}");
        let printed = cli_ok(
            &db.path,
            &["diff", &from.to_string(), &to.to_string(), "--json"],
        );
        let objects: Vec<Value> = printed
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            objects,
            model_diff(&model[&from], &model[&to]),
            "diff {from} {to}"
        );
        // Without TO: up to now.
        let printed = cli_ok(&db.path, &["diff", &from.to_string(), "--json"]);
        let objects: Vec<Value> = printed
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            objects,
            model_diff(&model[&from], &model[&newest]),
            "diff {from}"
        );
    }

    // A seq beyond the newest is refused.
    let output = cli(&db.path, &["export", "--at", &(newest + 5).to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn export_at_a_time_is_the_state_after_the_last_change_at_or_before_it() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    let second: i64 = cli_ok(&db.path, &["set", "app.port", "81"])
        .trim()
        .parse()
        .unwrap();
    let at = db_scalar(
        &db.path,
        &format!("SELECT at FROM settings_log WHERE seq = {second}"),
    )
    .unwrap();
    // Later changes, strictly after `at` (rows are timed to the millisecond).
    wait_until("the clock passes the second change", || {
        db_scalar(&db.path, "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").unwrap() > at
    });
    cli_ok(&db.path, &["set", "app.port", "82"]);
    cli_ok(&db.path, &["set", "app.host", r#""h""#]);

    let exported = cli_ok(&db.path, &["export", "--at", &at]);
    assert_eq!(
        flat(&serde_json::from_str(&exported).unwrap()),
        BTreeMap::from([("app.port".to_owned(), json!(81))])
    );
    // The same instant in RFC 3339 with an offset.
    let shifted = db_scalar(
        &db.path,
        &format!("SELECT strftime('%Y-%m-%dT%H:%M:%f', '{at}', '+2 hours') || '+02:00'"),
    )
    .unwrap();
    assert_eq!(cli_ok(&db.path, &["export", "--at", &shifted]), exported);
    // Before anything was written: empty; far in the future: now.
    assert_eq!(
        cli_ok(&db.path, &["export", "--at", "2000-01-01T00:00:00Z"]).trim(),
        "{}"
    );
    let future = cli_ok(&db.path, &["export", "--at", "2999-01-01T00:00:00Z"]);
    assert_eq!(future, cli_ok(&db.path, &["export"]));
    // Not a time, not a seq, not a checkpoint.
    let output = cli(&db.path, &["export", "--at", "yesterday"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("checkpoint"),
        "{}",
        stderr(&output)
    );
}

// ---------------------------------------------------------------------------
// Checkpoints

#[test]
fn checkpoints_resolve_in_diff_revert_export_and_watch_and_survive_across_processes() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    cli_ok(&db.path, &["set", "app.host", r#""a""#]);
    let output = cli(&db.path, &["checkpoint", "before-deploy"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoint: i64 = stdout(&output).trim().parse().unwrap();
    assert_eq!(checkpoint, 2);
    cli_ok(&db.path, &["set", "app.port", "8080"]);
    cli_ok(&db.path, &["unset", "app.host"]);

    // Another process lists it; a library store sees it.
    let listed = cli_ok(&db.path, &["checkpoint", "--list", "--json"]);
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed["name"], "before-deploy");
    assert_eq!(listed["seq"], 2);
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .read_only()
        .open(&db.path)
        .unwrap();
    assert_eq!(store.resolve_point("before-deploy").unwrap(), 2);
    assert_eq!(store.checkpoints().unwrap().len(), 1);
    store.close().unwrap();

    assert_eq!(
        cli_ok(&db.path, &["diff", "before-deploy"]),
        "app.host: \"a\" → (removed)\napp.port: 80 → 8080\n"
    );
    let exported: Value =
        serde_json::from_str(&cli_ok(&db.path, &["export", "--at", "before-deploy"])).unwrap();
    assert_eq!(exported, json!({"app": {"host": "a", "port": 80}}));
    assert_eq!(
        cli_ok(&db.path, &["revert", "--to", "before-deploy", "--dry-run"]),
        "app.host: (absent) → \"a\"\napp.port: 8080 → 80\n"
    );

    // watch --from replays the changes after the checkpoint.
    let watch = WatchProcess::spawn(&db.path, &["--from", "before-deploy", "--json"]);
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        let line = watch.lines.recv_timeout(TIMEOUT).expect("a watch line");
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "change" {
            replayed.push((event["seq"].clone(), event["key"].clone()));
        }
    }
    assert_eq!(
        replayed,
        [(json!(3), json!("app.port")), (json!(4), json!("app.host"))]
    );
    drop(watch);

    cli_ok(&db.path, &["revert", "--to", "before-deploy"]);
    assert_eq!(
        db_contents(&db.path),
        BTreeMap::from([
            ("app.host".to_owned(), json!("a")),
            ("app.port".to_owned(), json!(80))
        ])
    );

    // Re-using the name moves it, and says so.
    let output = cli(&db.path, &["checkpoint", "before-deploy"]);
    assert!(
        stderr(&output).contains("moved the checkpoint 'before-deploy' from seq 2"),
        "{}",
        stderr(&output)
    );
    assert!(cli_ok(&db.path, &["diff", "before-deploy"]).is_empty());
    // Deleted, it is gone for every process.
    cli_ok(&db.path, &["checkpoint", "--delete", "before-deploy"]);
    assert_eq!(cli_ok(&db.path, &["checkpoint", "--list"]), "");
    let output = cli(&db.path, &["diff", "before-deploy"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let output = cli(&db.path, &["checkpoint", "--delete", "before-deploy"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn checkpoint_names_outside_the_alphabet_are_refused() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    let too_long = "x".repeat(65);
    for bad in ["a b", "a/b", "123", "", too_long.as_str()] {
        let output = cli(&db.path, &["checkpoint", bad]);
        assert!(!output.status.success(), "{bad:?} was accepted");
    }
    assert_eq!(cli_ok(&db.path, &["checkpoint", "--list"]), "");
    cli_ok(&db.path, &["checkpoint", &"x".repeat(64)]);
    cli_ok(&db.path, &["checkpoint", "v1.2_rc-3"]);
    assert_eq!(
        cli_ok(&db.path, &["checkpoint", "--list"]).lines().count(),
        2
    );
}

#[test]
fn a_pruned_log_refuses_diff_export_and_revert_to_in_one_line_naming_the_oldest_seq() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    cli_ok(&db.path, &["checkpoint", "early"]);
    let early_at = db_scalar(&db.path, "SELECT at FROM settings_log WHERE seq = 1").unwrap();
    for port in 81..86 {
        cli_ok(&db.path, &["set", "app.port", &port.to_string()]);
    }
    cli_ok(&db.path, &["prune", "--keep", "2"]);
    let oldest = db_scalar(&db.path, "SELECT min(seq) FROM settings_log").unwrap();
    assert_eq!(oldest, "5");
    let contents = db_contents(&db.path);

    for args in [
        &["diff", "early"][..],
        &["diff", "1", "3"],
        &["export", "--at", "early"],
        &["export", "--at", "2"],
        &["export", "--at", &early_at],
        &["revert", "--to", "early"],
        &["revert", "--to", "early", "--dry-run"],
    ] {
        let output = cli(&db.path, args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(
            message.contains("no longer reaches back"),
            "{args:?}: {message}"
        );
        assert!(
            message.contains("oldest seq kept is 5"),
            "{args:?}: {message}"
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
    let output = cli(&db.path, &["diff", "early"]);
    assert!(
        stderr(&output).contains("checkpoint 'early' (seq 1)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(db_contents(&db.path), contents, "nothing was reverted");
    // What the log still reaches is fine: the state after seq 4 is kept.
    assert!(cli(&db.path, &["export", "--at", "4"]).status.success());
}

#[test]
fn checkpoints_are_meta_rows_every_process_sees_and_need_no_schema_change() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "app.port", "80"]);
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let (checkpoint, moved_from) = store.checkpoint("from-the-library").unwrap();
    assert_eq!((checkpoint.seq, moved_from), (1, None));
    // Another process (the shell) reads it in the meta table.
    let row = sqlite3(
        &db.path,
        "SELECT json_extract(value, '$.seq') FROM livesettings_meta \
         WHERE name = 'checkpoint:from-the-library';",
    );
    assert_eq!(row.trim(), "1");
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT value FROM livesettings_meta WHERE name = 'schema_version'"
        ),
        Some(livesettings::SCHEMA_VERSION.to_string())
    );
    // A hand-edited row that is not a checkpoint is left out, not an error.
    sqlite3(
        &db.path,
        "INSERT INTO livesettings_meta (name, value) VALUES ('checkpoint:broken', 'nope');",
    );
    let listed = cli_ok(&db.path, &["checkpoint", "--list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with("from-the-library\t1\t"), "{listed}");
    assert!(store.delete_checkpoint("from-the-library").unwrap());
    assert_eq!(cli_ok(&db.path, &["checkpoint", "--list"]), "");
}

#[test]
fn diff_and_dry_runs_redact_secret_values() {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "db.password", r#""hunter2""#]);
    cli_ok(&db.path, &["checkpoint", "before"]);
    std::fs::write(
        db.sibling("settings.db.schema.json"),
        r#"{"rules":[{"keys":"db.password","secret":true}]}"#,
    )
    .unwrap();
    let dry = cli(
        &db.path,
        &["set", "db.password", r#""swordfish""#, "--dry-run"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    cli_ok(&db.path, &["set", "db.password", r#""swordfish""#]);
    let diff = cli(&db.path, &["diff", "before", "--json"]);
    assert!(diff.status.success(), "{}", stderr(&diff));
    for output in [&dry, &diff] {
        let printed = stdout(output) + &stderr(output);
        assert!(printed.contains("db.password"), "{printed}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("swordfish"),
            "{printed}"
        );
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
