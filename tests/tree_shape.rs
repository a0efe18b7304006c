//! The tree shape is enforced by the database itself (schema version 3): a
//! key below a key that holds a value, or a value at a key that has keys
//! below it, is refused by BEFORE triggers on `settings` for every writer —
//! the `sqlite3` shell (3.40 here), a plain connection of the bundled
//! SQLite, raw SQL through `Store::write`, the CLI — and the refusal changes
//! nothing. Rows stored before the triggers existed are still refused on the
//! store's side (tests/refused_rows.rs).

mod support;

use std::process::Output;

use livesettings::{Error, Options, Store, WatchMode};
use serde_json::json;
use support::*;

const BELOW_A_VALUE: &str = "livesettings: a key cannot lie below a key that holds a value";
const ABOVE_KEYS: &str = "livesettings: a key that has keys below it cannot hold a value";

/// Runs `sql` in a `sqlite3` shell process, whatever its outcome.
fn shell(db: &TempDb, sql: &str) -> Output {
    sqlite3_command(&db.path)
        .arg(sql)
        .output()
        .expect("run the sqlite3 shell (is it installed?)")
}

/// Runs `sql` in the shell, which must fail with `message`; the file must be
/// unchanged (rows and change log).
fn assert_shell_refuses(db: &TempDb, sql: &str, message: &str) {
    let before = fingerprint(&db.path);
    let output = shell(db, sql);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{sql}: the shell succeeded");
    assert!(stderr.contains(message), "{sql}: {stderr}");
    assert_eq!(fingerprint(&db.path), before, "{sql} changed the file");
}

/// A database holding the value `a.b` and the section `s` (`s.x.y`).
fn seeded() -> (TempDb, Store) {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store
        .merge(&json!({"a": {"b": 1, "b-x": 2}, "s": {"x": {"y": 3}}}))
        .unwrap();
    (db, store)
}

#[test]
fn the_shell_cannot_store_a_key_below_a_value_or_a_value_above_keys() {
    let (db, _store) = seeded();
    for (sql, message) in [
        (
            "INSERT INTO settings (key, value) VALUES ('a.b.c', '1')",
            BELOW_A_VALUE,
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('a.b.c.d.e', '1')",
            BELOW_A_VALUE,
        ),
        (
            "INSERT OR IGNORE INTO settings (key, value) VALUES ('a.b.c', '1')",
            BELOW_A_VALUE,
        ),
        (
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('a.b.c', '1')",
            BELOW_A_VALUE,
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('a.b.c', '1') \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            BELOW_A_VALUE,
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('s', '1')",
            ABOVE_KEYS,
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('s.x', '1')",
            ABOVE_KEYS,
        ),
        (
            "UPDATE settings SET key = 'a.b.moved' WHERE key = 'a.b-x'",
            BELOW_A_VALUE,
        ),
        (
            "UPDATE settings SET key = 's.x' WHERE key = 'a.b-x'",
            ABOVE_KEYS,
        ),
        // A whole transaction stops at the refused statement (-bail).
        (
            "BEGIN; INSERT INTO settings (key, value) VALUES ('fine', '1'); \
             INSERT INTO settings (key, value) VALUES ('a.b.c', '1'); COMMIT;",
            BELOW_A_VALUE,
        ),
    ] {
        assert_shell_refuses(&db, sql, message);
    }
}

#[test]
fn keys_that_only_share_a_prefix_and_rewrites_of_a_key_in_place_are_allowed() {
    let (db, _store) = seeded();
    sqlite3(
        &db.path,
        // `a.bb` and `a.b-y` start with `a.b` but are not below it; `s.xz`
        // is not above `s.x.y`.
        "INSERT INTO settings (key, value) VALUES ('a.bb', '1'), ('a.b-y.z', '2'), ('s.xz', '3'); \
         INSERT OR REPLACE INTO settings (key, value) VALUES ('a.b', '10'); \
         INSERT INTO settings (key, value) VALUES ('a.b', '11') \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value; \
         UPDATE settings SET key = 'a.b.c' WHERE key = 'a.b'; \
         UPDATE settings SET key = 's.x' WHERE key = 's.x.y';",
    );
    let contents = db_contents(&db.path);
    assert_eq!(contents.get("a.b.c"), Some(&json!(11)), "{contents:?}");
    assert_eq!(contents.get("s.x"), Some(&json!(3)), "{contents:?}");
    assert!(!contents.contains_key("a.b"), "{contents:?}");
}

#[test]
fn a_plain_connection_of_the_bundled_sqlite_gets_the_same_refusal() {
    let (db, _store) = seeded();
    let before = fingerprint(&db.path);
    let conn = connect(&db.path);
    for (sql, message) in [
        (
            "INSERT INTO settings (key, value) VALUES ('a.b.c', '1')",
            BELOW_A_VALUE,
        ),
        (
            "INSERT INTO settings (key, value) VALUES ('s.x', '1')",
            ABOVE_KEYS,
        ),
    ] {
        let error = conn.execute(sql, []).unwrap_err();
        assert_eq!(
            error.sqlite_error().map(|error| error.extended_code),
            Some(livesettings::rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER),
            "{sql}: {error}"
        );
        assert!(error.to_string().starts_with(message), "{sql}: {error}");
    }
    assert_eq!(fingerprint(&db.path), before);
}

/// The triggers run before the CHECK constraints: a malformed key must get
/// the CHECK's message (the key rules), not a misleading tree-shape one.
#[test]
fn a_malformed_key_is_refused_by_the_key_rules_not_the_tree_shape() {
    let (db, _store) = seeded();
    for key in [
        "'a.b.'",
        "'a.b..c'",
        "'.a.b'",
        "'a.b.c d'",
        "'a.b.' || char(0) || 'c'",
        "'a.b.' || replace(hex(zeroblob(300)), '0', 'x')",
        "CAST('a.b.c' AS BLOB)",
    ] {
        let sql = format!("INSERT INTO settings (key, value) VALUES ({key}, '1')");
        let before = fingerprint(&db.path);
        let output = shell(&db, &sql);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sql}: the shell succeeded");
        assert!(
            stderr.contains("CHECK constraint failed"),
            "{sql}: {stderr}"
        );
        assert!(!stderr.contains("livesettings:"), "{sql}: {stderr}");
        assert_eq!(fingerprint(&db.path), before, "{sql} changed the file");
    }
}

/// The 3.40 shell's plans of the triggers' statements: every look-up in
/// `settings` is a primary-key search, never a scan.
#[test]
fn the_shell_plans_the_shape_triggers_as_primary_key_searches() {
    let (db, _store) = seeded();
    let output = std::process::Command::new("sqlite3")
        .args(["-bail", "-cmd", ".eqp trigger"])
        .arg(&db.path)
        .arg("INSERT INTO settings (key, value) VALUES ('q.r.s.t', '1')")
        .output()
        .expect("run the sqlite3 shell");
    assert!(output.status.success(), "{output:?}");
    let plans = String::from_utf8_lossy(&output.stdout);
    let shape: Vec<&str> = plans
        .split("TRIGGER ")
        .find(|plan| plan.starts_with("settings_shape_insert"))
        .unwrap_or_else(|| panic!("no plan of settings_shape_insert in {plans}"))
        .lines()
        .filter(|line| line.starts_with(['|', '`']))
        .collect();
    let on_settings: Vec<&&str> = shape
        .iter()
        .filter(|line| line.contains(" settings "))
        .collect();
    assert_eq!(on_settings.len(), 2, "{shape:#?}");
    for line in on_settings {
        assert!(
            line.contains("SEARCH settings USING COVERING INDEX sqlite_autoindex_settings_1"),
            "{shape:#?}"
        );
    }
    assert!(
        shape.iter().any(|line| line.contains("(key=?)")),
        "{shape:#?}"
    );
    assert!(
        shape.iter().any(|line| line.contains("(key>? AND key<?)")),
        "{shape:#?}"
    );
}

/// The bundled SQLite's own count of full-scan steps for an insert (the
/// trigger programs run in the statement's VM, so their steps count too; a
/// temporary trigger that scans shows the counter sees them).
#[test]
fn an_insert_runs_the_shape_triggers_without_a_full_scan() {
    use livesettings::rusqlite::StatementStatus;
    let (db, store) = seeded();
    store
        .write(|tx| {
            let mut insert = tx.prepare("INSERT INTO settings (key, value) VALUES (?1, '1')")?;
            for n in 0..2_000 {
                insert.execute([format!("bulk.g{:04}.physics.damping", n)])?;
            }
            Ok(())
        })
        .unwrap();
    store.close().unwrap();
    let conn = connect(&db.path);
    let full_scan_steps = |key: &str| {
        let mut insert = conn
            .prepare("INSERT INTO settings (key, value) VALUES (?1, '1')")
            .unwrap();
        insert.execute([key]).unwrap();
        insert.get_status(StatementStatus::FullscanStep)
    };
    assert_eq!(full_scan_steps("bulk.g0001.physics.spring"), 0);
    assert_eq!(full_scan_steps("bulk.new.deep.er.key"), 0);
    conn.execute_batch(
        "CREATE TEMP TRIGGER scan_control BEFORE INSERT ON main.settings BEGIN \
         SELECT count(*) FROM main.settings WHERE value = NEW.value; END;",
    )
    .unwrap();
    assert!(
        full_scan_steps("bulk.control") > 0,
        "the counter counts triggers"
    );
}

#[test]
fn raw_sql_that_inserts_below_a_value_before_deleting_it_is_refused_and_changes_nothing() {
    let (db, store) = seeded();
    let before = fingerprint(&db.path);
    let snapshot = store_map(&store);
    let refused = store.write(|tx| {
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ('a.b.c', '5')",
            [],
        )?;
        tx.execute("DELETE FROM settings WHERE key = 'a.b'", [])?;
        Ok(())
    });
    match refused {
        Err(Error::Misplaced { ref reason }) => {
            assert!(
                reason.contains("below a key that holds a value"),
                "{reason}"
            );
            let message = refused.as_ref().unwrap_err().to_string();
            assert!(
                message.starts_with("refused by the database: "),
                "{message}"
            );
        }
        other => panic!("expected Error::Misplaced, got {other:?}"),
    }
    assert_eq!(fingerprint(&db.path), before);
    assert_eq!(store_map(&store), snapshot);
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());

    // The other order is a restructuring, applied whole.
    store
        .write(|tx| {
            tx.execute("DELETE FROM settings WHERE key = 'a.b'", [])?;
            tx.execute(
                "INSERT INTO settings (key, value) VALUES ('a.b.c', '5')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.subtree("a").unwrap(),
        Some(json!({"b": {"c": 5}, "b-x": 2}))
    );
    // And back: the section's keys first, then the value.
    let refused = store.write(|tx| {
        tx.execute("INSERT INTO settings (key, value) VALUES ('a.b', '6')", [])?;
        Ok(())
    });
    assert!(
        matches!(refused, Err(Error::Misplaced { ref reason }) if reason.contains("has keys below it")),
        "{refused:?}"
    );
    store
        .write(|tx| {
            tx.execute(
                "DELETE FROM settings WHERE key >= 'a.b.' AND key < 'a.b/'",
                [],
            )?;
            tx.execute("INSERT INTO settings (key, value) VALUES ('a.b', '6')", [])?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.get::<i64>("a.b").unwrap(), Some(6));
    assert!(store.keys("a.b.").is_empty());
}

/// `revert_to` restores a past state as one commit: a value that became a
/// section (and a section that became a value) must go back, so its
/// deletes run before its inserts.
#[test]
fn revert_to_turns_a_section_back_into_a_value_and_back() {
    let (_db, store) = seeded();
    let as_value = store.set("a.b", &7).unwrap().seq;
    store.unset("a.b").unwrap();
    let as_section = store.merge(&json!({"a": {"b": {"c": 8}}})).unwrap().seq;
    store.revert_to(as_value).unwrap();
    assert_eq!(store.get::<i64>("a.b").unwrap(), Some(7));
    assert!(!store.contains("a.b.c"));
    store.revert_to(as_section).unwrap();
    assert_eq!(store.subtree("a.b").unwrap(), Some(json!({"c": 8})));
    assert!(!store.contains("a.b"));
    assert!(store.rejected().is_empty(), "{:?}", store.rejected());
}

/// The store serves the section `x.y.z`, and a shell session that dropped
/// the trigger stored `x.y` too (the store refuses it and keeps serving the
/// section): the store's own write next to that row passes the store's check
/// and is refused by the database, with a clear error.
#[test]
fn a_store_write_next_to_a_refused_row_gets_the_database_refusal() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store.set("x.y.z", &1).unwrap();
    sqlite3(
        &db.path,
        "DROP TRIGGER settings_shape_insert; \
         INSERT INTO settings (key, value) VALUES ('x.y', '2');",
    );
    // A write catches up first (recreating the trigger, reloading).
    store.set("other", &1).unwrap();
    assert_eq!(store.subtree("x").unwrap(), Some(json!({"y": {"z": 1}})));
    assert!(
        store
            .rejected()
            .iter()
            .any(|rejection| rejection.keys == ["x.y"]),
        "{:?}",
        store.rejected()
    );
    let refused = store.set("x.y.w", &3);
    assert!(
        matches!(refused, Err(Error::Misplaced { .. })),
        "{refused:?}"
    );
    assert!(!db_contents(&db.path).contains_key("x.y.w"));
    assert!(!store.contains("x.y.w"));
}

/// A file of schema version 2 (no shape triggers, possibly holding a key
/// below a value) is migrated at its next read-write open: version 3, the
/// triggers in place, the old row still refused on the store's side.
#[test]
fn a_version_2_file_gets_the_shape_triggers_at_its_next_read_write_open() {
    let db = TempDb::new();
    Store::open(&db.path).unwrap().close().unwrap();
    sqlite3(
        &db.path,
        "DROP TRIGGER settings_shape_insert; DROP TRIGGER settings_shape_update; \
         UPDATE livesettings_meta SET value = '2' WHERE name = 'schema_version'; \
         INSERT INTO settings (key, value) VALUES ('a.b', '1'), ('a.b.c', '2');",
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT value FROM livesettings_meta WHERE name = 'schema_version'"
        )
        .as_deref(),
        Some("3")
    );
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
             AND name IN ('settings_shape_insert', 'settings_shape_update')"
        )
        .as_deref(),
        Some("2")
    );
    assert_eq!(store.get::<i64>("a.b").unwrap(), Some(1));
    assert_eq!(store.rejected().len(), 1, "{:?}", store.rejected());
    assert_eq!(store.rejected()[0].keys, ["a.b.c"]);
    assert_shell_refuses(
        &db,
        "INSERT INTO settings (key, value) VALUES ('a.b.d', '1')",
        BELOW_A_VALUE,
    );
}

/// An operator drops a shape trigger while a store runs: the store's watcher
/// notices the schema change and recreates it.
#[test]
fn a_dropped_shape_trigger_is_recreated_by_the_running_store() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("a.b", &1).unwrap();
    sqlite3(&db.path, "DROP TRIGGER settings_shape_insert");
    wait_until("the store recreates the trigger", || {
        db_scalar(
            &db.path,
            "SELECT count(*) FROM sqlite_master WHERE name = 'settings_shape_insert'",
        )
        .as_deref()
            == Some("1")
    });
    assert_shell_refuses(
        &db,
        "INSERT INTO settings (key, value) VALUES ('a.b.c', '1')",
        BELOW_A_VALUE,
    );
    drop(store);
}

/// `livesettings set` below a value, or at a section, is refused by the
/// store's own check before anything is written (it names both keys).
#[test]
fn the_cli_refuses_a_set_below_a_value_or_at_a_section_naming_both_keys() {
    let (db, store) = seeded();
    store.close().unwrap();
    for (args, words) in [
        (["set", "a.b.c", "1"], ["'a.b.c'", "'a.b' holds a value"]),
        (["set", "s.x", "1"], ["'s.x'", "'s.x.y' below it"]),
    ] {
        let before = fingerprint(&db.path);
        let output = cli(&db.path, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{args:?}: {word} in {stderr}");
        }
        assert!(output.stdout.is_empty(), "{args:?}");
        assert_eq!(fingerprint(&db.path), before, "{args:?} wrote");
    }
}
