//! What a value may be, on every path into the store: the depth limit
//! (`MAX_VALUE_DEPTH` levels, one per array or object), integers that a JSON
//! number cannot hold exactly (refused, never rounded), and decode errors
//! that name the path of the field that does not fit.

mod support;

use livesettings::{Error, Event, MAX_VALUE_DEPTH, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use support::*;

/// JSON text of `levels` arrays around `1`: `[[1]]` for 2.
fn nested_text(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// The value of [`nested_text`].
fn nested(levels: usize) -> Value {
    serde_json::from_str(&nested_text(levels)).expect("nested arrays are JSON")
}

/// `levels` levels that alternate arrays and objects, starting with an
/// array: `[{"a": [1]}]` for 3.
fn nested_mixed(levels: usize) -> Value {
    let mut value = json!(1);
    for level in 0..levels {
        // The outermost level is an array, so the value is a leaf.
        value = if (levels - level) % 2 == 1 {
            json!([value])
        } else {
            json!({ "a": value })
        };
    }
    value
}

fn assert_too_deep(result: Result<livesettings::Commit, Error>, key: &str) {
    match result {
        Err(Error::InvalidValue {
            key: refused,
            reason,
        }) => {
            assert_eq!(refused, key);
            assert_eq!(
                reason,
                format!("nested deeper than {MAX_VALUE_DEPTH} levels")
            );
        }
        other => panic!("expected a depth refusal for {key}, got {other:?}"),
    }
}

fn sql_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------
// 1. Depth: exactly MAX_VALUE_DEPTH (64) levels, as the README says

#[test]
fn set_accepts_64_levels_and_refuses_65() {
    assert_eq!(MAX_VALUE_DEPTH, 64, "README's Limits says 64 levels");
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();

    store.set("deep.two", &nested(2)).unwrap();
    assert_eq!(store.get_json("deep.two"), Some(json!([[1]])));

    store.set("deep.arrays", &nested(64)).unwrap();
    assert_eq!(store.get_json("deep.arrays"), Some(nested(64)));
    assert_eq!(db_value(&db.path, "deep.arrays"), Some(nested(64)));
    // Objects inside an array are levels of the value too.
    store.set("deep.mixed", &nested_mixed(64)).unwrap();
    assert_eq!(store.get_json("deep.mixed"), Some(nested_mixed(64)));

    assert_too_deep(store.set("deep.refused", &nested(65)), "deep.refused");
    assert_too_deep(store.set("deep.refused", &nested_mixed(65)), "deep.refused");
    assert!(!store.contains("deep.refused"));
    assert_eq!(db_value(&db.path, "deep.refused"), None);
}

#[test]
fn merge_json_counts_levels_of_the_leaf_not_the_sections_above_it() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    // Three sections above the leaf do not count against its 64 levels.
    let document = json!({"a": {"b": {"c": nested(64), "m": [nested_mixed(63)]}}});
    store.merge(&document).unwrap();
    assert_eq!(store.get_json("a.b.c"), Some(nested(64)));
    assert_eq!(store.get_json("a.b.m"), Some(json!([nested_mixed(63)])));

    assert_too_deep(
        store.merge(&json!({"a": {"b": {"d": nested(65)}}})),
        "a.b.d",
    );
    assert_too_deep(store.seed(&json!({"x": [nested_mixed(64)]})), "x");
    assert!(!store.contains("a.b.d"));
    assert!(!store.contains("x"));
}

#[test]
fn values_stored_by_the_shell_are_read_back_up_to_64_levels() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let events = store.subscribe("deep").unwrap();

    sqlite3(
        &db.path,
        &format!(
            "INSERT INTO settings (key, value) VALUES ('deep.ok', {})",
            sql_quote(&nested_text(64))
        ),
    );
    let change = next_change(&events, "the 64-level value from the shell");
    assert_eq!(change.key, "deep.ok");
    assert_eq!(change.new_value().cloned(), Some(nested(64)));
    assert_eq!(store.get_json("deep.ok"), Some(nested(64)));

    sqlite3(
        &db.path,
        &format!(
            "INSERT INTO settings (key, value) VALUES ('deep.refused', {})",
            sql_quote(&nested_text(65))
        ),
    );
    match next_event(&events, "the refusal of the 65-level value") {
        Event::Rejected(rejection) => {
            assert_eq!(rejection.keys, ["deep.refused"]);
            assert!(
                rejection.reason.contains("nested deeper than 64 levels"),
                "{}",
                rejection.reason
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!store.contains("deep.refused"));
    drop(store);

    // A full load of the file follows the same rule.
    let reopened = Store::open(&db.path).unwrap();
    assert_eq!(reopened.get_json("deep.ok"), Some(nested(64)));
    assert!(!reopened.contains("deep.refused"));
}

// ---------------------------------------------------------------------------
// 2. Integers that do not fit i64 or u64 are refused, never rounded

#[test]
fn parse_json_value_refuses_integers_that_would_be_rounded() {
    for literal in [
        "12345678901234567890123",
        "-12345678901234567890123",
        "18446744073709551616",
        "-9223372036854775809",
    ] {
        match livesettings::parse_json_value("app.id", literal) {
            Err(Error::InvalidValue { key, reason }) => {
                assert_eq!(key, "app.id");
                assert!(reason.contains(literal), "{reason}");
                assert!(reason.contains("i64 or u64"), "{reason}");
                assert!(reason.contains("string"), "{reason}");
                assert!(reason.contains("float"), "{reason}");
            }
            other => panic!("{literal}: expected a refusal, got {other:?}"),
        }
    }
    // Inside a document, the error names the key the leaf would be stored at.
    let document =
        r#"{"app": {"name": "x", "limits": {"ids": [1, 2.5, 12345678901234567890123]}}}"#;
    match livesettings::parse_json_value("", document) {
        Err(error @ Error::InvalidValue { .. }) => {
            let Error::InvalidValue { key, .. } = &error else {
                unreachable!()
            };
            assert_eq!(key, "app.limits.ids");
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "invalid value for key 'app.limits.ids': the integer 12345678901234567890123"
                ),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match livesettings::parse_json_value("app", r#"{"big": 1e300, "n": 99999999999999999999}"#) {
        Err(Error::InvalidValue { key, .. }) => assert_eq!(key, "app.n"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn parse_json_value_keeps_every_number_that_survives_exactly() {
    let parse = |text: &str| livesettings::parse_json_value("k", text).unwrap();
    assert_eq!(parse("18446744073709551615"), json!(u64::MAX));
    assert_eq!(parse("-9223372036854775808"), json!(i64::MIN));
    assert_eq!(parse("[0, -0, 1.5, 2]"), json!([0, -0.0, 1.5, 2]));
    // Floats written on purpose, and big integers as strings, are kept.
    assert_eq!(parse("1e22"), json!(1e22));
    assert_eq!(
        parse("12345678901234567890123.0"),
        json!(1.2345678901234568e22)
    );
    assert_eq!(
        parse(r#""12345678901234567890123""#),
        json!("12345678901234567890123")
    );
    // Digits in names, in strings and after escapes are not numbers.
    assert_eq!(
        parse(r#"{"12345678901234567890123": "a\"99999999999999999999", "f": 0.5}"#),
        json!({"12345678901234567890123": "a\"99999999999999999999", "f": 0.5})
    );
    assert!(matches!(
        livesettings::parse_json_value("k", "{bad"),
        Err(Error::Json { .. })
    ));
}

#[test]
fn oversized_integers_stored_by_the_shell_are_refused_not_rounded() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("ids.big", &1).unwrap();
    let events = store.subscribe("ids").unwrap();

    sqlite3(
        &db.path,
        "UPDATE settings SET value = '12345678901234567890123' WHERE key = 'ids.big'",
    );
    match next_event(&events, "the refusal of the oversized integer") {
        Event::Rejected(rejection) => {
            assert_eq!(rejection.keys, ["ids.big"]);
            // Named by key and problem; the stored text is never quoted
            // (it goes to logs, and the key may be secret).
            assert!(
                rejection.reason.contains("i64 or u64")
                    && !rejection.reason.contains("12345678901234567890123"),
                "{}",
                rejection.reason
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // The last good value stays; nothing was rounded.
    assert_eq!(store.get_json("ids.big"), Some(json!(1)));

    // Floats and integers within u64 written by the shell are read as usual.
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('ids.max', '18446744073709551615'), \
         ('ids.float', '1.2345678901234568e22')",
    );
    wait_until("the shell's numbers", || {
        store.contains("ids.max") && store.contains("ids.float")
    });
    assert_eq!(store.get::<u64>("ids.max").unwrap(), Some(u64::MAX));
    assert_eq!(
        store.get_json("ids.float"),
        Some(json!(1.2345678901234568e22))
    );
}

#[test]
fn set_refuses_rust_integers_wider_than_64_bits() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    for result in [store.set("n", &u128::MAX), store.set("n", &i128::MIN)] {
        match result {
            Err(Error::InvalidValue { key, .. }) => assert_eq!(key, "n"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    store.set("n", &u128::from(u64::MAX)).unwrap();
    assert_eq!(store.get::<u128>("n").unwrap(), Some(u128::from(u64::MAX)));
    assert_eq!(db_value(&db.path, "n"), Some(json!(u64::MAX)));
}

// ---------------------------------------------------------------------------
// 3. Decode errors name the path of the field that does not fit

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Server {
    host: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct App {
    server: Server,
    #[serde(default)]
    ports: Vec<u16>,
}

fn assert_decode(error: Error, path: &str, message: &str) {
    let text = error.to_string();
    match error {
        Error::Decode { key, source } => {
            assert_eq!(key, path, "{text}");
            assert_eq!(source.to_string(), message, "{text}");
            assert!(text.contains(&format!("{path}': {message}")), "{text}");
        }
        other => panic!("expected a decode error at {path}, got {other:?}"),
    }
}

#[test]
fn section_errors_name_the_field_path() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"server": {"host": "h", "port": "x"}}))
        .unwrap();
    let error = store.section::<Server>("server").unwrap_err();
    assert_decode(
        error,
        "server.port",
        r#"invalid type: string "x", expected u16"#,
    );
    assert_decode(
        store.snapshot().section::<Server>("server").unwrap_err(),
        "server.port",
        r#"invalid type: string "x", expected u16"#,
    );

    // Nested sections and array elements.
    store
        .merge(&json!({"app": {"server": {"host": "h", "port": 70000}, "ports": [1, 2]}}))
        .unwrap();
    assert_decode(
        store.section::<App>("app").unwrap_err(),
        "app.server.port",
        "invalid value: integer `70000`, expected u16",
    );
    store
        .merge(&json!({"app": {"server": {"port": 80}, "ports": [1, "two"]}}))
        .unwrap();
    assert_decode(
        store.section::<App>("app").unwrap_err(),
        "app.ports[1]",
        r#"invalid type: string "two", expected u16"#,
    );
    // The whole document at the root.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Root {
        app: App,
    }
    assert_decode(
        store.section::<Root>("").unwrap_err(),
        "app.ports[1]",
        r#"invalid type: string "two", expected u16"#,
    );

    // A missing field is an error of the section itself.
    store.merge(&json!({"partial": {"port": 1}})).unwrap();
    assert_decode(
        store.section::<Server>("partial").unwrap_err(),
        "partial",
        "missing field `host`",
    );
}

#[test]
fn get_errors_name_the_path_inside_the_value() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store.set("server.ports", &json!([80, "x"])).unwrap();
    assert_decode(
        store.get::<Vec<u16>>("server.ports").unwrap_err(),
        "server.ports[1]",
        r#"invalid type: string "x", expected u16"#,
    );
    assert_decode(
        store.get::<String>("server.ports").unwrap_err(),
        "server.ports",
        "invalid type: sequence, expected a string",
    );
}

#[test]
fn live_errors_name_the_field_path() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    store
        .merge(&json!({"server": {"host": "h", "port": "x"}}))
        .unwrap();
    assert_decode(
        store
            .live::<Server>("server")
            .err()
            .expect("port is not a u16"),
        "server.port",
        r#"invalid type: string "x", expected u16"#,
    );

    store.set("server.port", &8080).unwrap();
    let live = store.live::<Server>("server").unwrap();
    assert_eq!(live.load().port, 8080);
    store.set("server.port", &"y").unwrap();
    wait_until("the live handle's error", || live.last_error().is_some());
    let error = live.last_error().unwrap_or_default();
    assert!(
        error.contains(r#"'server.port': invalid type: string "y", expected u16"#),
        "{error}"
    );
    assert_eq!(live.load().port, 8080, "the last good value is kept");
}
