//! `import` and `export` in JSON, TOML and YAML: the format by extension or
//! `--format`, exact round trips (floats, big integers, strings that look
//! like other types), what TOML cannot hold, and malformed files reported
//! by file, line and column with nothing written.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use support::*;

const FORMATS: [&str; 3] = ["json", "toml", "yaml"];

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Runs the CLI with `input` on stdin.
fn cli_stdin(db: &Path, args: &[&str], input: &str) -> Output {
    let mut child = cli_command(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the livesettings binary");
    child
        .stdin
        .take()
        .expect("a stdin pipe")
        .write_all(input.as_bytes())
        .expect("write the document to stdin");
    child.wait_with_output().expect("wait for livesettings")
}

/// A database holding `document` (imported as JSON).
fn db_with(document: &Value) -> TempDb {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let file = db.sibling("seed.json");
    std::fs::write(&file, document.to_string()).unwrap();
    cli_ok(&db.path, &["import", path_str(&file)]);
    db
}

/// A failed command: exit 2, one line on stderr containing every word,
/// nothing on stdout, and the database exactly as before.
fn assert_fails_cleanly(db: &Path, args: &[&str], words: &[&str]) -> String {
    let before = fingerprint(db);
    let output = cli(db, args);
    let message = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    for word in words {
        assert!(
            message.contains(word),
            "{args:?}: {word:?} missing in {message}"
        );
    }
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert_eq!(fingerprint(db), before, "nothing was written");
    message
}

/// Values a format could round or retype: floats at the edges of f64, the
/// 64-bit integer limits, strings that read as numbers, booleans, nulls or
/// dates in YAML, keys that look like other types, mixed arrays.
fn tricky() -> Value {
    json!({
        "floats": {
            "tenth": 0.1, "third": 0.3333333333333333, "huge": 1e300,
            "max": 1.7976931348623157e308, "tiny": 5e-324, "one": 1.0,
            "negative": -2.5e-10, "integral_big": 1.2345678901234567e22
        },
        "integers": { "min": i64::MIN, "max": i64::MAX, "zero": 0 },
        "strings": {
            "decimal": "0.10", "integer": "1", "yes": "yes", "no": "NO", "on": "on",
            "off": "Off", "y": "y", "true": "true", "null": "null", "tilde": "~",
            "exponent": "1e3", "hex": "0x10", "octal": "012", "underscored": "1_000",
            "date": "2001-12-14", "inf": ".inf", "empty": "", "space": " lead",
            "lines": "a\nb", "colon": "a: b", "hash": "#x", "quote": "'\"", "dash": "-"
        },
        "keys": { "on": 1, "yes": 2, "1": 3, "null": 4, "true": 5, "NO": 6, "y": 7 },
        "arrays": {
            "mixed": [1, "x", true, 2.5, {"a": [1, {"b": "c"}]}, []],
            "tables": [{"a": 1}, {"a": 2}],
            "empty": []
        },
        "flags": { "enabled": true, "disabled": false }
    })
}

/// The tricky values plus what only JSON and YAML can hold.
fn tricky_with_null_and_u64() -> Value {
    let mut document = tricky();
    document["extra"] = json!({ "nothing": null, "u64_max": u64::MAX, "nulls": [null, 1] });
    document
}

/// `export --format X` then `import` of that file changes nothing, in every
/// format: no new log rows, no value rounded or retyped.
#[test]
fn export_then_import_leaves_the_database_unchanged_in_every_format() {
    for format in FORMATS {
        let document = if format == "toml" {
            tricky()
        } else {
            tricky_with_null_and_u64()
        };
        let db = db_with(&document);
        let before = fingerprint(&db.path);
        let exported = cli_ok(&db.path, &["export", "--format", format]);
        let file = db.sibling(&format!("exported.{format}"));
        std::fs::write(&file, &exported).unwrap();
        cli_ok(&db.path, &["import", path_str(&file)]);
        assert_eq!(fingerprint(&db.path), before, "{format}: unchanged");

        // And into an empty database: exactly the same keys and values.
        let other = TempDb::new();
        cli_ok(&other.path, &["init"]);
        cli_ok(&other.path, &["import", path_str(&file)]);
        assert_eq!(
            db_contents(&other.path),
            before.0,
            "{format}: same contents"
        );
    }
}

/// The bundled VisionFlow fixture survives JSON → TOML → YAML → JSON with
/// every value exactly equal.
#[test]
fn fixture_round_trips_exactly_through_toml_and_yaml() {
    let first = TempDb::new();
    cli_ok(&first.path, &["init"]);
    cli_ok(&first.path, &["import", path_str(&fixture_path())]);
    let original = db_contents(&first.path);
    assert!(original.len() > 400, "the fixture is imported");

    let toml = first.sibling("settings.toml");
    cli_ok(&first.path, &["export", "-o", path_str(&toml)]);
    let second = TempDb::new();
    cli_ok(&second.path, &["init"]);
    cli_ok(&second.path, &["import", path_str(&toml)]);
    assert_eq!(db_contents(&second.path), original, "through TOML");

    let yaml = first.sibling("settings.yaml");
    cli_ok(&second.path, &["export", "-o", path_str(&yaml)]);
    let third = TempDb::new();
    cli_ok(&third.path, &["init"]);
    cli_ok(&third.path, &["import", path_str(&yaml)]);
    assert_eq!(db_contents(&third.path), original, "through YAML");

    let exported: Value = serde_json::from_str(&cli_ok(&third.path, &["export"])).unwrap();
    assert_eq!(exported, fixture(), "back to the fixture's JSON");
}

/// `import --prefix P` reads back what `export P` printed, in every format,
/// for a section; for a single value in JSON and YAML (a TOML document is a
/// table, so `export --format toml KEY` of a value is refused by name).
#[test]
fn import_prefix_round_trips_export_prefix_in_every_format() {
    let db = db_with(&tricky_with_null_and_u64());
    let before = fingerprint(&db.path);
    for format in FORMATS {
        for prefix in ["strings", "arrays", "floats.tenth", "strings.decimal"] {
            let leaf = prefix.contains('.');
            if format == "toml" && leaf {
                assert_fails_cleanly(
                    &db.path,
                    &["export", "--format", format, prefix],
                    &[prefix, "TOML document is a table"],
                );
                continue;
            }
            let exported = cli_ok(&db.path, &["export", "--format", format, prefix]);
            let output = cli_stdin(
                &db.path,
                &["import", "--format", format, "--prefix", prefix, "-"],
                &exported,
            );
            assert!(
                output.status.success(),
                "{format} {prefix}: {}",
                stderr_of(&output)
            );
            assert_eq!(
                fingerprint(&db.path),
                before,
                "{format} {prefix}: unchanged"
            );

            // Into another database, the section lands where it was.
            let other = TempDb::new();
            cli_ok(&other.path, &["init"]);
            let output = cli_stdin(
                &other.path,
                &["import", "--format", format, "--prefix", prefix, "-"],
                &exported,
            );
            assert!(
                output.status.success(),
                "{format} {prefix}: {}",
                stderr_of(&output)
            );
            let expected: Vec<_> = before
                .0
                .iter()
                .filter(|(key, _)| *key == prefix || key.starts_with(&format!("{prefix}.")))
                .collect();
            let contents = db_contents(&other.path);
            assert_eq!(
                contents.iter().collect::<Vec<_>>(),
                expected,
                "{format} {prefix}"
            );
        }
    }
}

/// The format comes from the extension (`.json`, `.toml`, `.yaml`, `.yml`,
/// any case), `--format` wins over it, and anything else is JSON as before.
#[test]
fn format_is_chosen_by_extension_unless_format_is_given() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let files = [
        ("a.toml", "[ui]\ntheme = \"dark\"\n"),
        ("b.yaml", "ui:\n  size: 12\n"),
        ("c.YML", "ui: {scale: 1.5}\n"),
        ("d.json", "{\"ui\": {\"font\": \"mono\"}}"),
        ("e.settings", "{\"ui\": {\"lang\": \"en\"}}"),
    ];
    for (name, text) in files {
        let file = db.sibling(name);
        std::fs::write(&file, text).unwrap();
        cli_ok(&db.path, &["import", path_str(&file)]);
    }
    // YAML text in a file named .json, read as YAML on request.
    let odd = db.sibling("really-yaml.json");
    std::fs::write(&odd, "ui:\n  mode: compact\n").unwrap();
    cli_ok(&db.path, &["import", "--format", "yaml", path_str(&odd)]);
    assert_eq!(
        serde_json::from_str::<Value>(&cli_ok(&db.path, &["export", "ui"])).unwrap(),
        json!({"theme": "dark", "size": 12, "scale": 1.5, "font": "mono", "lang": "en", "mode": "compact"})
    );

    // Standard input is JSON unless told otherwise.
    let output = cli_stdin(&db.path, &["import", "-"], "ui:\n  mode: wide\n");
    assert_eq!(output.status.code(), Some(2), "YAML on stdin is not JSON");
    assert!(
        stderr_of(&output).contains("not valid JSON"),
        "{}",
        stderr_of(&output)
    );
    let output = cli_stdin(
        &db.path,
        &["import", "--format", "yaml", "-"],
        "ui:\n  mode: wide\n",
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(db_value(&db.path, "ui.mode"), Some(json!("wide")));

    // `export -o FILE` picks the format by FILE's extension; --format wins.
    let toml = db.sibling("out.toml");
    cli_ok(&db.path, &["export", "ui", "-o", path_str(&toml)]);
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("theme = \"dark\""), "TOML: {text}");
    let forced = db.sibling("out.toml.txt");
    cli_ok(
        &db.path,
        &["export", "ui", "--format", "yaml", "-o", path_str(&forced)],
    );
    let text = std::fs::read_to_string(&forced).unwrap();
    assert!(text.contains("theme: dark"), "YAML: {text}");
    // And what `-o` wrote is what stdout would have printed.
    assert_eq!(
        std::fs::read_to_string(&toml).unwrap(),
        cli_ok(&db.path, &["export", "ui", "--format", "toml"])
    );
}

/// `init --defaults` reads TOML and YAML files too.
#[test]
fn defaults_file_may_be_toml_or_yaml() {
    let db = TempDb::new();
    let toml = db.sibling("defaults.toml");
    std::fs::write(&toml, "[physics]\ndamping = 0.95\n").unwrap();
    let yaml = db.sibling("defaults.yaml");
    std::fs::write(&yaml, "physics:\n  springs: 0.10\n").unwrap();
    cli_ok(&db.path, &["init", "--defaults", path_str(&toml)]);
    cli_ok(&db.path, &["init", "--defaults", path_str(&yaml)]);
    assert_eq!(db_value(&db.path, "physics.damping"), Some(json!(0.95)));
    assert_eq!(db_value(&db.path, "physics.springs"), Some(json!(0.1)));
}

/// A malformed TOML or YAML file fails in one line naming the file, the
/// line and the column, exit 2, and writes nothing.
#[test]
fn malformed_toml_or_yaml_reports_file_line_and_column_and_writes_nothing() {
    let db = db_with(&json!({"kept": {"value": 1}}));
    let cases = [
        (
            "broken.toml",
            "[ui]\ntheme = \"dark\"\nsize 12\n",
            "line 3, column 6",
        ),
        ("missing.toml", "a = 1\nb = \n", "line 2, column 5"),
        ("twice.toml", "[a]\nb = 1\n[a]\nc = 2\n", "line 3, column 2"),
        ("broken.yaml", "a: [1, 2\nb: 3\n", "line 2, column 2"),
        ("indent.yml", "a:\n  b: 1\n c: 2\n", "line 3, column 2"),
        ("twice.yaml", "a: 1\na: 2\n", "line 2, column 1"),
    ];
    for (name, text, at) in cases {
        let file = db.sibling(name);
        std::fs::write(&file, text).unwrap();
        let message = assert_fails_cleanly(
            &db.path,
            &["import", path_str(&file)],
            &[&format!("cannot read {}: {at}: ", file.display())],
        );
        assert!(message.starts_with("livesettings: "), "{message}");
    }
}

/// TOML has no null: exporting one is refused naming the key, and neither
/// stdout nor the `-o` file gets a document that silently lacks it.
#[test]
fn toml_export_of_a_null_names_the_key_and_prints_nothing() {
    let db = db_with(&json!({"a": {"b": null, "c": 1}, "list": {"of": [1, null]}, "ok": {"c": 1}}));
    assert_fails_cleanly(
        &db.path,
        &["export", "--format", "toml"],
        &["'a.b'", "TOML has no null"],
    );
    assert_fails_cleanly(
        &db.path,
        &["export", "--format", "toml", "list"],
        &["'list.of'", "null"],
    );
    let file = db.sibling("out.toml");
    assert_fails_cleanly(&db.path, &["export", "-o", path_str(&file)], &["'a.b'"]);
    assert!(!file.exists(), "no file written");
    // The rest of the tree exports fine, and so does YAML.
    assert_eq!(
        cli_ok(&db.path, &["export", "--format", "toml", "ok"]),
        "c = 1\n"
    );
    assert!(cli_ok(&db.path, &["export", "--format", "yaml"]).contains("b: null"));
}

/// TOML integers are 64-bit signed: a u64 above i64::MAX is refused by key
/// on export (JSON and YAML keep it).
#[test]
fn toml_export_of_an_integer_above_i64_max_names_the_key() {
    let db = db_with(&json!({"ids": {"max": u64::MAX}}));
    assert_fails_cleanly(
        &db.path,
        &["export", "--format", "toml"],
        &["'ids.max'", "18446744073709551615", "largest TOML integer"],
    );
    assert!(cli_ok(&db.path, &["export", "--format", "yaml"]).contains("18446744073709551615"));
}

/// What TOML has and JSON lacks: NaN and infinities are refused naming the
/// key; a date becomes its text.
#[test]
fn toml_nan_is_refused_by_key_and_a_date_is_kept_as_text() {
    let db = db_with(&json!({"kept": 1}));
    let file = db.sibling("odd.toml");
    std::fs::write(&file, "[physics]\ndamping = nan\n").unwrap();
    assert_fails_cleanly(
        &db.path,
        &["import", path_str(&file)],
        &["'physics.damping'", "NaN"],
    );
    std::fs::write(&file, "[physics]\nlimit = -inf\n").unwrap();
    assert_fails_cleanly(&db.path, &["import", path_str(&file)], &["'physics.limit'"]);
    std::fs::write(&file, "[release]\nat = 1979-05-27T07:32:00Z\n").unwrap();
    cli_ok(&db.path, &["import", path_str(&file)]);
    assert_eq!(
        db_value(&db.path, "release.at"),
        Some(json!("1979-05-27T07:32:00Z"))
    );
}

/// YAML is read by the 1.2 core schema: `yes`, `on`, `NO` stay strings
/// (no Norway problem), so do `0123`, `1_000` and quoted `"0.10"`; keys
/// like `on`, `1` and `null` are the strings they spell. `export` quotes
/// such strings, so YAML 1.1 readers see strings too.
#[test]
fn yaml_scalars_that_look_like_other_types_stay_strings() {
    let db = TempDb::new();
    cli_ok(&db.path, &["init"]);
    let file = db.sibling("ambiguous.yaml");
    std::fs::write(
        &file,
        "values:\n  country: NO\n  answer: yes\n  switch: on\n  zip: 01234\n  \
         count: 1_000\n  decimal: \"0.10\"\n  plain_decimal: 0.10\n  really: true\n  \
         nothing: null\nkeys:\n  on: 1\n  1: 2\n  null: 3\n  yes: 4\n",
    )
    .unwrap();
    cli_ok(&db.path, &["import", path_str(&file)]);
    let contents = db_contents(&db.path);
    let expect = [
        ("values.country", json!("NO")),
        ("values.answer", json!("yes")),
        ("values.switch", json!("on")),
        ("values.zip", json!("01234")),
        ("values.count", json!("1_000")),
        ("values.decimal", json!("0.10")),
        ("values.plain_decimal", json!(0.1)),
        ("values.really", json!(true)),
        ("values.nothing", Value::Null),
        ("keys.on", json!(1)),
        ("keys.1", json!(2)),
        ("keys.null", json!(3)),
        ("keys.yes", json!(4)),
    ];
    for (key, value) in &expect {
        assert_eq!(contents.get(*key), Some(value), "{key}");
    }
    assert_eq!(contents.len(), expect.len());

    // Exported, every ambiguous string (and key) is quoted.
    let exported = cli_ok(&db.path, &["export", "--format", "yaml"]);
    for word in ["NO", "yes", "on", "01234", "1_000", "0.10"] {
        let bare = exported
            .lines()
            .flat_map(|line| line.trim().split(": "))
            .any(|part| part.trim_end_matches(':') == word);
        assert!(!bare, "{word} is quoted in:\n{exported}");
    }
    for key in ["1", "null"] {
        let bare = exported
            .lines()
            .any(|line| line.trim().starts_with(&format!("{key}:")));
        assert!(!bare, "key {key} is quoted in:\n{exported}");
    }
}

/// An integer literal beyond 64 bits in YAML is refused naming the key
/// (the parser would round it to a float), as for JSON; written as a float
/// on purpose it is accepted.
#[test]
fn yaml_integer_beyond_64_bits_is_refused_by_key() {
    let db = db_with(&json!({"kept": 1}));
    let file = db.sibling("big.yaml");
    std::fs::write(
        &file,
        "ids:\n  small: 1\n  big: 123456789012345678901234567890\n",
    )
    .unwrap();
    assert_fails_cleanly(
        &db.path,
        &["import", path_str(&file)],
        &["'ids.big'", "123456789012345678901234567890", "64-bit"],
    );
    std::fs::write(&file, "ids:\n  list: [1, {a: -99999999999999999999999}]\n").unwrap();
    assert_fails_cleanly(&db.path, &["import", path_str(&file)], &["'ids.list'"]);
    // In range for u64, and as a float: accepted.
    std::fs::write(
        &file,
        "ids:\n  max: 18446744073709551615\n  float: 1.2345678901234568e29\n",
    )
    .unwrap();
    cli_ok(&db.path, &["import", path_str(&file)]);
    assert_eq!(db_value(&db.path, "ids.max"), Some(json!(u64::MAX)));
    assert_eq!(
        db_value(&db.path, "ids.float"),
        Some(json!(1.2345678901234568e29))
    );
    // TOML refuses the big literal in its parser, with its place.
    let toml = db.sibling("big.toml");
    std::fs::write(&toml, "[ids]\nbig = 123456789012345678901234567890\n").unwrap();
    assert_fails_cleanly(
        &db.path,
        &["import", path_str(&toml)],
        &["line 2, column 7"],
    );
}

/// YAML values JSON cannot hold and tags it does not know are refused,
/// not turned into something else.
#[test]
fn yaml_infinities_and_unknown_tags_are_refused() {
    let db = db_with(&json!({"kept": 1}));
    let file = db.sibling("odd.yaml");
    for text in ["a: .inf\n", "a: .nan\n", "a: !secret xyz\n"] {
        std::fs::write(&file, text).unwrap();
        assert_fails_cleanly(
            &db.path,
            &["import", path_str(&file)],
            &["odd.yaml", "line 1"],
        );
    }
}
