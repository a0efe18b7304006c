//! Hostile input: SQL fragments, control characters and oversized keys,
//! values nested 10 000 deep and 100 MB strings, conflicting documents,
//! invalid UTF-8 given to `import`. Each gets a clear error and leaves the
//! database exactly as it was. Plus a proptest fuzzer (runs in CI) for the
//! key parser, the flatten/unflatten pair, the CHECK constraint and import.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use livesettings::{Error, MAX_KEY_BYTES, Options, Store, WatchMode, flatten, unflatten};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::{TempDb, db_contents, fingerprint, sqlite3_command, store_map, table_exists};

const BIN: &str = env!("CARGO_BIN_EXE_livesettings");

fn seeded() -> (TempDb, Store) {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    store
        .merge(&json!({"app": {"name": "demo", "physics": {"damping": 0.6}}, "x": 1}))
        .unwrap();
    (db, store)
}

fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "'; DROP TABLE settings; --",
        "a'; DROP TABLE settings; --",
        "a\"; DELETE FROM settings; --",
        "x); DROP TABLE settings_log; --",
        "a OR 1=1",
        "a%",
        "a_b*",
        "a\0b",
        "\0",
        "a\nb",
        "a\rb",
        "a\tb",
        "\u{1b}[31mred",
        "a\u{7f}",
        "a\u{200b}b",
        "é",
        "",
        ".",
        "..",
        ".a",
        "a.",
        "a..b",
        "a. b",
        " a",
        "a/b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    keys.push("k".repeat(10_000));
    keys.push("a.".repeat(5_000) + "a");
    keys.push("k".repeat(MAX_KEY_BYTES + 1));
    keys.push("é".repeat(300));
    keys
}

fn assert_invalid_key(result: livesettings::Result<impl std::fmt::Debug>, key: &str, op: &str) {
    match result {
        Err(Error::InvalidKey { key: shown, reason }) => {
            assert!(
                shown.len() < 200 && reason.len() < 300,
                "{op} {key:.40?}: the error echoes too much ({} + {} bytes)",
                shown.len(),
                reason.len()
            );
        }
        other => panic!("{op} {key:.40?}: expected InvalidKey, got {other:?}"),
    }
}

#[test]
fn hostile_keys_are_refused_and_change_nothing() {
    let (db, store) = seeded();
    let before = fingerprint(&db.path);
    let snapshot_before = store_map(&store);
    for key in hostile_keys() {
        assert_invalid_key(store.set(&key, &1), &key, "set");
        assert_invalid_key(store.unset(&key), &key, "unset");
        if !key.is_empty() {
            assert_invalid_key(store.unset_section(&key), &key, "unset_section");
            assert_invalid_key(store.subscribe(&key), &key, "subscribe");
        }
        assert_invalid_key(store.history(&key, 10), &key, "history");
        let mut doc = Map::new();
        doc.insert(key.clone(), json!(1));
        assert_invalid_key(store.merge(&Value::Object(doc)), &key, "merge");
        // Reads of hostile keys are simply absent, never an error or a panic.
        assert_eq!(store.get_json(&key), None);
    }
    assert!(table_exists(&db.path, "settings"));
    assert!(table_exists(&db.path, "settings_log"));
    assert_eq!(fingerprint(&db.path), before, "the database changed");
    assert_eq!(store_map(&store), snapshot_before);
}

#[test]
fn hostile_keys_through_the_cli_are_refused() {
    let (db, store) = seeded();
    drop(store);
    let before = fingerprint(&db.path);
    for key in [
        "'; DROP TABLE settings; --",
        "a..b",
        "a\u{1b}b",
        &"k".repeat(10_000),
    ] {
        let out = Command::new(BIN)
            .arg("--db")
            .arg(&db.path)
            .args(["set", key, "1"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "set {key:.40?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid key") && stderr.len() < 1000,
            "set {key:.40?}: unclear stderr: {stderr:.500}"
        );
    }
    assert_eq!(fingerprint(&db.path), before);
}

/// `[[[ … 1 … ]]]` nested `depth` deep, built without recursion.
fn deep_array(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// Drops a deeply nested value without recursion.
fn drop_deep(mut value: Value) {
    let mut stack = Vec::new();
    loop {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
        match stack.pop() {
            Some(next) => value = next,
            None => return,
        }
    }
}

#[test]
fn values_nested_10000_deep_are_refused() {
    let (db, store) = seeded();
    let before = fingerprint(&db.path);
    let deep = deep_array(10_000);

    let mut doc = Map::new();
    doc.insert("deep".to_owned(), deep);
    let doc = Value::Object(doc);
    match store.merge(&doc) {
        Err(Error::InvalidValue { reason, .. }) => assert!(reason.contains("deeper"), "{reason}"),
        other => panic!("merge of a 10 000-deep array: {other:?}"),
    }
    // `set` takes any Serialize; serializing a 10 000-deep Value recurses,
    // so run it on a thread with a stack large enough for serde itself and
    // check the store refuses the result.
    let deep = match doc {
        Value::Object(mut map) => map.remove("deep").unwrap(),
        _ => unreachable!(),
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(scope, || {
                match store.set("deep", &deep) {
                    Err(Error::InvalidValue { reason, .. }) => {
                        assert!(reason.contains("deeper"), "{reason}")
                    }
                    other => panic!("set of a 10 000-deep array: {other:?}"),
                }
                drop_deep(deep);
            })
            .unwrap()
            .join()
            .unwrap();
    });

    // Objects nested 10 000 deep are sections: the dotted key is far too long.
    let mut nested = json!(1);
    for _ in 0..10_000 {
        let mut map = Map::new();
        map.insert("a".to_owned(), nested);
        nested = Value::Object(map);
    }
    match store.merge(&nested) {
        Err(Error::InvalidKey { reason, .. }) => assert!(reason.contains("at most"), "{reason}"),
        other => panic!("merge of objects 10 000 deep: {other:?}"),
    }
    drop_deep(nested);

    // The same as JSON text through the CLI.
    let text = "[".repeat(10_000) + &"]".repeat(10_000);
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&db.path)
        .args(["set", "deep", &text])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fingerprint(&db.path), before);
    drop(store);
}

#[test]
fn strings_of_100_mb_are_refused() {
    const BYTES: usize = 100 * 1024 * 1024;
    let (db, store) = seeded();
    let before = fingerprint(&db.path);
    let huge = "x".repeat(BYTES);
    match store.set("big", &huge) {
        Err(Error::InvalidValue { reason, key }) => {
            assert!(reason.contains("at most"), "{reason}");
            assert!(reason.len() + key.len() < 300, "the error echoes the value");
        }
        other => panic!("set of 100 MB: {:.200?}", other),
    }
    let doc = json!({"app": {"big": huge}});
    drop(huge);
    match store.merge(&doc) {
        Err(Error::InvalidValue { reason, .. }) => assert!(reason.contains("at most"), "{reason}"),
        other => panic!("merge of 100 MB: {:.200?}", other),
    }
    drop(doc);
    assert_eq!(fingerprint(&db.path), before);
    assert_eq!(store.get_json("app.big"), None);
}

#[test]
fn a_key_that_is_both_a_leaf_and_a_section_is_a_conflict() {
    let (db, store) = seeded();
    let before = fingerprint(&db.path);
    let snap = store_map(&store);
    for doc in [
        json!({"a": 1, "a.b": 2}),
        json!({"a.b": 2, "a": 1}),
        json!({"a": {"b": 1}, "a.b": 2}),
        json!({"a": 1, "a-b": 3, "a.c": 2}),
        // Against what is stored: `x` holds a value, `app.physics` is a section.
        json!({"x": {"y": 1}}),
        json!({"x.y": 1}),
        json!({"app": {"physics": 3}}),
        // A valid part first: nothing of it may be written.
        json!({"aaa": 1, "app": {"name": {"deeper": true}}}),
    ] {
        match store.merge(&doc) {
            Err(Error::Conflict { .. }) => {}
            other => panic!("merge {doc}: expected Conflict, got {other:?}"),
        }
    }
    assert!(matches!(store.set("x.y", &1), Err(Error::Conflict { .. })));
    assert!(matches!(store.set("app", &1), Err(Error::Conflict { .. })));
    assert_eq!(fingerprint(&db.path), before);
    assert_eq!(store_map(&store), snap);
}

#[test]
fn import_refuses_invalid_utf8_and_hostile_documents() {
    let (db, store) = seeded();
    drop(store);
    let before = fingerprint(&db.path);
    let file = db.sibling("bad.json");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"a\": \"\xff\xfe\xc3\x28\"}".to_vec(),
            "UTF-8",
        ),
        ("truncated JSON", b"{\"a\": ".to_vec(), "JSON"),
        (
            "SQL in a key",
            br#"{"'; DROP TABLE settings; --": 1}"#.to_vec(),
            "invalid key",
        ),
        ("conflict", br#"{"a": 1, "a.b": 2}"#.to_vec(), "conflict"),
        ("not an object", b"[1, 2]".to_vec(), "object"),
    ];
    for (what, bytes, needle) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new(BIN)
            .arg("--db")
            .arg(&db.path)
            .arg("import")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: import succeeded");
        assert!(
            stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: stderr lacks {needle:?}: {stderr}"
        );
        assert_eq!(
            fingerprint(&db.path),
            before,
            "{what}: the database changed"
        );
    }
}

/// The schema's CHECK must refuse every key `validate_key` refuses, so an
/// operator's raw SQL cannot store a key the library cannot read. SQLite's
/// GLOB stops at the first NUL, so `'A' || char(0) || ';'` passes
/// `key NOT GLOB '*[^A-Za-z0-9_.-]*'`.
#[test]
fn check_constraint_refuses_nul_in_keys() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let before = fingerprint(&db.path);
    for key in ["A\0", "a\0'; DROP TABLE settings; --", "a\0..b"] {
        assert!(livesettings::validate_key(key).is_err());
        let result = store.write(|tx| {
            tx.execute("INSERT INTO settings (key, value) VALUES (?1, '1')", [key])?;
            Ok(())
        });
        assert!(
            result.is_err(),
            "raw SQL stored the key {key:?}, which validate_key refuses"
        );
    }
    // The sqlite3 shell, as an operator would type it.
    let out = sqlite3_command(&db.path)
        .arg("INSERT INTO settings (key, value) VALUES ('B' || char(0) || ' x', '1');")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the shell stored a key with a NUL");
    assert_eq!(fingerprint(&db.path), before);
}

/// A float written through the store reads back as the same `f64`
/// (read-your-writes must not round). serde_json parses floats exactly only
/// with its `float_roundtrip` feature.
#[test]
fn floats_read_back_exactly() {
    let db = TempDb::new();
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .unwrap();
    let mut wrong = Vec::new();
    for value in [
        -950432304.4619521f64,
        0.1,
        1e-300,
        2.0f64.sqrt(),
        123456.78901234567,
    ] {
        store.set("f", &value).unwrap();
        let back: f64 = store.get("f").unwrap().unwrap();
        if back.to_bits() != value.to_bits() {
            wrong.push((value, back));
        }
    }
    assert!(wrong.is_empty(), "written → read back: {wrong:?}");
}

// ---------------------------------------------------------------- fuzzer

/// The documented grammar, checked independently of the library: 1 to 512
/// bytes; segments of ASCII letters, digits, `_` and `-`; single dots
/// between non-empty segments.
fn grammar_accepts(key: &str) -> bool {
    if key.is_empty() || key.len() > 512 {
        return false;
    }
    key.split('.').all(|segment| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Key-like strings: mostly from the key alphabet, with dots, spaces,
/// quotes, NUL and other control characters, non-ASCII, sometimes long.
fn key_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        8 => "[a-zA-Z0-9_-]{1,6}",
        3 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => "[ '\";%*()=\\\\/\\[\\]]",
        1 => "[\\x00-\\x1f\\x7f]",
        1 => "[é\u{200b}\u{feff}ß😀]",
        1 => "[a-z]{100,200}",
    ];
    prop_oneof![
        6 => prop::collection::vec(atom, 0..12).prop_map(|parts| parts.concat()),
        2 => any::<String>(),
        1 => "[a-z.]{500,520}",
    ]
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,8}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(|v| json!(v)),
        Just(json!([{"a": 1}, [], {}])),
    ]
}

/// Nested objects with valid segment names and no empty objects (which
/// hold no leaf and vanish when flattened).
fn tree() -> impl Strategy<Value = Value> {
    let node = leaf().prop_recursive(4, 48, 5, |inner| {
        prop::collection::btree_map(segment(), inner, 1..5)
            .prop_map(|map| Value::Object(map.into_iter().collect()))
    });
    prop::collection::btree_map(segment(), node, 1..6)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// Any JSON document, including hostile ones (dotted and bad keys, deep
/// nesting, non-objects).
fn any_document() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => segment(),
        1 => "[a-z]{1,3}\\.[a-z]{1,3}",
        1 => key_like(),
    ];
    let json_leaf = prop_oneof![leaf(), Just(json!({}))];
    json_leaf.prop_recursive(6, 64, 4, move |inner| {
        prop_oneof![
            prop::collection::btree_map(key.clone(), inner.clone(), 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn fuzz_validate_key_matches_the_grammar(key in key_like()) {
        let accepted = livesettings::validate_key(&key).is_ok();
        prop_assert_eq!(accepted, grammar_accepts(&key), "key {:?}", key);
        // The prefix parser: the whole tree, or a key.
        let prefix_ok = livesettings::validate_prefix(&key).is_ok();
        prop_assert_eq!(prefix_ok, key.is_empty() || grammar_accepts(&key));
    }

    #[test]
    fn fuzz_flatten_unflatten_round_trips(tree in tree()) {
        let flat = flatten("", &tree).unwrap();
        for key in flat.keys() {
            prop_assert!(grammar_accepts(key), "flatten produced {:?}", key);
        }
        let rebuilt = unflatten("", flat.iter().map(|(k, v)| (k.as_str(), v))).unwrap();
        prop_assert_eq!(&rebuilt, &tree);
        // Under a prefix, every key gains it and the relative keys rebuild the tree.
        let under = flatten("p.q", &tree).unwrap();
        prop_assert_eq!(under.len(), flat.len());
        let relative: Vec<(&str, &Value)> = under
            .iter()
            .map(|(k, v)| (k.strip_prefix("p.q.").unwrap(), v))
            .collect();
        prop_assert_eq!(unflatten("p.q", relative).unwrap(), tree);
    }
}

proptest! {
    #![proptest_config(cases(96))]

    /// The CHECK constraint in the schema agrees with `validate_key`: raw SQL
    /// through `write` stores a key exactly when the parser accepts it.
    #[test]
    fn fuzz_check_constraint_agrees_with_validate_key(
        // NUL has its own test below (the CHECK lets it through).
        keys in prop::collection::vec(key_like().prop_map(|k| k.replace('\0', "~")), 1..8)
    ) {
        let db = TempDb::new();
        let store = Options::new().with_watch(WatchMode::Off).open(&db.path).unwrap();
        for key in keys {
            let before = db_contents(&db.path);
            let result = store.write(|tx| {
                tx.execute(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, '42')",
                    [&key],
                )?;
                Ok(())
            });
            let valid = livesettings::validate_key(&key).is_ok();
            prop_assert_eq!(
                result.is_ok(), valid,
                "key {:?}: CHECK says {:?}, validate_key says {}", key, result, valid
            );
            let after = db_contents(&db.path);
            if valid {
                prop_assert_eq!(store.get_json(&key), Some(json!(42)));
                prop_assert_eq!(after.get(&key), Some(&json!(42)));
            } else {
                prop_assert_eq!(after, before);
            }
        }
    }

    /// `merge` (what `import` runs) on arbitrary documents: never
    /// panics; on success the database holds exactly the old contents plus
    /// the document's leaves; on error it is unchanged.
    #[test]
    fn fuzz_merge_json_is_all_or_nothing(docs in prop::collection::vec(any_document(), 1..4)) {
        let db = TempDb::new();
        let store = Options::new().with_watch(WatchMode::Off).open(&db.path).unwrap();
        for doc in docs {
            let before = db_contents(&db.path);
            let result = store.merge(&doc);
            let after = db_contents(&db.path);
            match result {
                Ok(_) => {
                    let mut expected: BTreeMap<String, Value> = before;
                    for (key, value) in flatten("", &doc).unwrap() {
                        // Through text and back, as stored: float parsing
                        // precision has its own test below.
                        expected.insert(key, serde_json::from_str(&value.to_string()).unwrap());
                    }
                    prop_assert_eq!(&after, &expected, "doc {}", doc);
                }
                Err(error) => {
                    prop_assert!(
                        matches!(
                            error,
                            Error::InvalidKey { .. } | Error::InvalidValue { .. } | Error::Conflict { .. }
                        ),
                        "doc {}: unexpected error {:?}", doc, error
                    );
                    prop_assert_eq!(&after, &before, "doc {} failed ({}) but changed the db", doc, error);
                }
            }
            prop_assert_eq!(store_map(&store), after);
        }
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// The CLI `import` on arbitrary bytes: exits 0 or with a message, never
    /// crashes, and changes nothing when it fails.
    #[test]
    fn fuzz_cli_import_of_arbitrary_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_document().prop_map(|doc| doc.to_string().into_bytes()),
    ]) {
        let db = TempDb::new();
        let store = Options::new().with_watch(WatchMode::Off).open(&db.path).unwrap();
        store.merge(&json!({"keep": {"me": 1}})).unwrap();
        drop(store);
        let before = db_contents(&db.path);
        let file = db.sibling("doc.json");
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new(BIN).arg("--db").arg(&db.path).arg("import").arg(&file).output().unwrap();
        let code = out.status.code();
        prop_assert!(code.is_some(), "import was killed by a signal: {:?}", out.status);
        if !out.status.success() {
            prop_assert!(!out.stderr.is_empty(), "failed silently");
            prop_assert_eq!(db_contents(&db.path), before);
        }
    }
}
