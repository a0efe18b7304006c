//! `livesettings serve` over HTTP: the real binary as a child process on an
//! ephemeral loopback port, every endpoint, status code and error, the
//! conditional writes racing a real `sqlite3` shell, and the event stream
//! (resume after a disconnect, a pruned log, a slow client).

#[path = "support/serve.rs"]
mod serve;
mod support;

use std::time::Duration;

use serde_json::{Value, json};

use serve::{Served, SseStream, request};
use support::{TempDb, db_contents, db_value, sqlite3};

fn started() -> (TempDb, Served) {
    let db = TempDb::new();
    let served = Served::start(&db.path, &[]);
    (db, served)
}

fn with_rules(db: &TempDb, rules: &str) -> Served {
    let file = db.sibling("rules.json");
    std::fs::write(&file, rules).expect("write the rules");
    let file = file.display().to_string();
    Served::start(&db.path, &["--schema", &file])
}

/// What the database holds: every row and the log length.
fn fingerprint(db: &TempDb) -> (std::collections::BTreeMap<String, Value>, i64) {
    (db_contents(&db.path), support::log_rows(&db.path))
}

// ---------------------------------------------------------------------------
// Reads

#[test]
fn a_get_returns_the_nested_section_and_the_current_seq_as_etag() {
    let (db, served) = started();
    sqlite3(
        &db.path,
        "INSERT INTO settings (key, value) VALUES ('graph.physics.damping', '0.9'), ('graph.physics.springs', '[1,2]'), ('graph.name', '\"g\"');",
    );
    let reply = served.call("GET", "/api/settings/graph.physics", None);
    // The sqlite3 commit may not be applied yet: wait for it.
    let reply = if reply.status == 404 {
        support::wait_until("the sqlite3 rows are served", || {
            served
                .call("GET", "/api/settings/graph.physics", None)
                .status
                == 200
        });
        served.call("GET", "/api/settings/graph.physics", None)
    } else {
        reply
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"damping": 0.9, "springs": [1, 2]}));
    assert_eq!(reply.etag_seq(), support::log_rows(&db.path));
    let all = served.call("GET", "/api/settings", None);
    assert_eq!(all.json()["graph"]["name"], "g");
    let leaf = served.call("GET", "/api/settings/graph.physics.damping", None);
    assert_eq!(leaf.json(), json!(0.9));
}

#[test]
fn a_get_of_an_empty_database_is_an_empty_document_and_a_missing_key_is_404() {
    let (_db, served) = started();
    let all = served.call("GET", "/api/settings", None);
    assert_eq!((all.status, all.json()), (200, json!({})));
    let missing = served.call("GET", "/api/settings/no.such.key", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["key"], "no.such.key");
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("no.such.key")
    );
}

// ---------------------------------------------------------------------------
// Writes

#[test]
fn a_put_sets_one_value_that_a_fresh_connection_reads() {
    let (db, served) = started();
    let reply = served.call("PUT", "/api/settings/physics.damping", Some("0.95"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["changes"], 1);
    assert_eq!(reply.etag_seq(), reply.json()["seq"].as_i64().unwrap());
    assert_eq!(db_value(&db.path, "physics.damping"), Some(json!(0.95)));
    let string = served.call("PUT", "/api/settings/ui.colour", Some("\"#ff0000\""));
    assert_eq!(string.status, 200);
    assert_eq!(db_value(&db.path, "ui.colour"), Some(json!("#ff0000")));
}

#[test]
fn a_put_of_an_object_is_refused_and_writes_nothing() {
    let (db, served) = started();
    let before = fingerprint(&db);
    let reply = served.call("PUT", "/api/settings/physics", Some(r#"{"damping": 1}"#));
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("PATCH"));
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn a_patch_merges_a_nested_document_in_one_transaction() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/physics.gravity", Some("9.8"));
    let mut events = SseStream::open(&served, "/api/events", &[]);
    assert_eq!(events.next().event, "snapshot");
    let reply = served.call(
        "PATCH",
        "/api/settings",
        Some(r#"{"physics": {"damping": 0.5, "springs": {"k": 3}}}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["changes"], 2);
    let contents = db_contents(&db.path);
    assert_eq!(contents["physics.damping"], json!(0.5));
    assert_eq!(contents["physics.springs.k"], json!(3));
    assert_eq!(
        contents["physics.gravity"],
        json!(9.8),
        "keys not in the document stay"
    );
    // One transaction: one commit event carrying both changes.
    let commit = events.next_commit().json();
    assert_eq!(commit["changes"].as_array().unwrap().len(), 2, "{commit}");
}

#[test]
fn a_patch_below_a_prefix_merges_into_that_section() {
    let (db, served) = started();
    let reply = served.call(
        "PATCH",
        "/api/settings/visualisation.graphs",
        Some(r#"{"logseq": {"physics": {"damping": 0.7}}}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        db_value(&db.path, "visualisation.graphs.logseq.physics.damping"),
        Some(json!(0.7))
    );
}

#[test]
fn post_update_accepts_the_original_applications_nested_document() {
    let (db, served) = started();
    let reply = served.call(
        "POST",
        "/api/settings/update",
        Some(r#"{"visualisation":{"graphs":{"logseq":{"physics":{"damping":0.95}}}}}"#),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        db_value(&db.path, "visualisation.graphs.logseq.physics.damping"),
        Some(json!(0.95))
    );
}

#[test]
fn a_patch_with_no_value_or_not_an_object_is_refused() {
    let (db, served) = started();
    let before = fingerprint(&db);
    assert_eq!(
        served.call("PATCH", "/api/settings", Some("{}")).status,
        400
    );
    assert_eq!(
        served.call("PATCH", "/api/settings", Some("[1]")).status,
        400
    );
    assert_eq!(
        served
            .call("PATCH", "/api/settings", Some("{\"a\": {}}"))
            .status,
        400
    );
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn a_delete_removes_a_key_and_a_recursive_delete_a_section() {
    let (db, served) = started();
    served.call(
        "PATCH",
        "/api/settings",
        Some(r#"{"a": {"x": 1, "y": {"z": 2}}, "b": 3}"#),
    );
    let one = served.call("DELETE", "/api/settings/a.x", None);
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(db_value(&db.path, "a.x"), None);
    let section = served.call("DELETE", "/api/settings/a.y", None);
    assert_eq!(section.status, 409, "a section needs ?recursive=true");
    assert_eq!(db_value(&db.path, "a.y.z"), Some(json!(2)));
    let recursive = served.call("DELETE", "/api/settings/a?recursive=true", None);
    assert_eq!(recursive.status, 200);
    assert_eq!(recursive.json()["changes"], 1);
    assert_eq!(db_contents(&db.path).len(), 1);
    let missing = served.call("DELETE", "/api/settings/a.x", None);
    assert_eq!(missing.status, 404);
    let bad = served.call("DELETE", "/api/settings/b?recursive=maybe", None);
    assert_eq!(bad.status, 400);
    assert_eq!(db_value(&db.path, "b"), Some(json!(3)));
}

// ---------------------------------------------------------------------------
// Conditional writes

#[test]
fn a_put_with_a_stale_if_match_is_refused_with_412() {
    let (db, served) = started();
    let first = served.call("PUT", "/api/settings/a.x", Some("1"));
    let seen = first.etag_seq();
    served.call("PUT", "/api/settings/a.x", Some("2"));
    let before = fingerprint(&db);
    let stale = served.call_with(
        "PUT",
        "/api/settings/a.x",
        &[("If-Match", &format!("\"{seen}\""))],
        Some("3"),
    );
    assert_eq!(stale.status, 412, "{}", stale.text());
    assert_eq!(stale.json()["key"], "a.x");
    assert_eq!(fingerprint(&db), before, "nothing written");
    let current = served.call("GET", "/api/settings/a.x", None).etag_seq();
    let fresh = served.call_with(
        "PUT",
        "/api/settings/a.x",
        &[("If-Match", &format!("\"{current}\""))],
        Some("3"),
    );
    assert_eq!(fresh.status, 200);
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(3)));
}

#[test]
fn an_if_match_covers_only_its_key_or_section() {
    let (db, served) = started();
    let seen = served
        .call("PUT", "/api/settings/a.x", Some("1"))
        .etag_seq();
    served.call("PUT", "/api/settings/b.y", Some("1"));
    // b changed, a did not: the write to a goes through.
    let tag = format!("{seen}");
    let other = served.call_with("PUT", "/api/settings/a.x", &[("If-Match", &tag)], Some("2"));
    assert_eq!(other.status, 200, "{}", other.text());
    // A section's PATCH and a recursive DELETE are judged on the section.
    let section = served.call_with(
        "PATCH",
        "/api/settings/a",
        &[("If-Match", &tag)],
        Some(r#"{"z": 1}"#),
    );
    assert_eq!(section.status, 412);
    let delete = served.call_with(
        "DELETE",
        "/api/settings/a?recursive=true",
        &[("If-Match", &tag)],
        None,
    );
    assert_eq!(delete.status, 412);
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(2)));
    let malformed = served.call_with(
        "PUT",
        "/api/settings/a.x",
        &[("If-Match", "yesterday")],
        Some("5"),
    );
    assert_eq!(malformed.status, 400);
}

#[test]
fn an_external_sqlite3_update_makes_an_if_match_from_before_it_stale() {
    let (db, served) = started();
    let seen = served
        .call("PUT", "/api/settings/a.x", Some("1"))
        .etag_seq();
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '42' WHERE key = 'a.x';",
    );
    // No wait for the store to apply it: the check reads the log inside the
    // write's own transaction.
    let stale = served.call_with(
        "PUT",
        "/api/settings/a.x",
        &[("If-Match", &seen.to_string())],
        Some("7"),
    );
    assert_eq!(stale.status, 412, "{}", stale.text());
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(42)));
}

#[test]
fn conditional_writes_racing_a_sqlite3_writer_never_overwrite_its_changes() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/race.k", Some("0"));
    let path = db.path.clone();
    // A real sqlite3 shell process commits 40 updates of the key, one
    // transaction each, while conditional PUTs of it run.
    let shell = std::thread::spawn(move || {
        let mut statements = String::new();
        for i in 1..=40 {
            statements.push_str(&format!(
                "UPDATE settings SET value = '\"shell-{i}\"' WHERE key = 'race.k';\n"
            ));
        }
        sqlite3(&path, &statements);
    });
    let mut written = Vec::new();
    let mut refused = 0;
    for i in 0..60 {
        let seen = served.call("GET", "/api/settings/race.k", None).etag_seq();
        let reply = served.call_with(
            "PUT",
            "/api/settings/race.k",
            &[("If-Match", &seen.to_string())],
            Some(&format!("\"http-{i}\"")),
        );
        match reply.status {
            200 => written.push((seen, reply.json()["seq"].as_i64().unwrap())),
            412 => refused += 1,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    shell.join().expect("the sqlite3 writer");
    assert!(!written.is_empty(), "some conditional writes went through");
    // Every accepted write's previous row for the key is at or before the
    // seq its If-Match named: no shell commit was overwritten unseen.
    let conn = support::connect(&db.path);
    for (seen, seq) in &written {
        let previous: i64 = conn
            .query_row(
                "SELECT max(seq) FROM settings_log WHERE key = 'race.k' AND seq < ?1",
                [seq],
                |row| row.get(0),
            )
            .expect("read the log");
        assert!(
            previous <= *seen,
            "the write at seq {seq} (If-Match {seen}) overwrote seq {previous} unseen"
        );
    }
    eprintln!("{} written, {refused} refused as stale", written.len());
}

// ---------------------------------------------------------------------------
// Validation

const RULES: &str = r#"{"rules": [
    {"keys": "physics.damping", "type": "number", "minimum": 0, "maximum": 1},
    {"keys": "db.password", "secret": true}
]}"#;

#[test]
fn a_value_a_rule_refuses_is_422_naming_key_value_and_rule_and_writes_nothing() {
    let db = TempDb::new();
    let served = with_rules(&db, RULES);
    served.call("PUT", "/api/settings/physics.damping", Some("0.5"));
    let before = fingerprint(&db);
    let reply = served.call("PUT", "/api/settings/physics.damping", Some("1.5"));
    assert_eq!(reply.status, 422, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["key"], "physics.damping");
    assert_eq!(body["value"], json!(1.5));
    let rule = body["rule"].as_str().expect("the rule");
    assert!(rule.contains("maximum"), "{rule}");
    assert_eq!(fingerprint(&db), before, "nothing written");
    // In a merged document too, and the whole document is refused.
    let merged = served.call(
        "PATCH",
        "/api/settings",
        Some(r#"{"physics": {"damping": "high", "other": 1}}"#),
    );
    assert_eq!(merged.status, 422);
    assert_eq!(merged.json()["value"], json!("high"));
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn an_external_write_a_rule_refuses_is_a_rejected_event() {
    let db = TempDb::new();
    let served = with_rules(&db, RULES);
    served.call("PUT", "/api/settings/physics.damping", Some("0.5"));
    let mut events = SseStream::open(&served, "/api/events", &[]);
    assert_eq!(events.next().event, "snapshot");
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '7' WHERE key = 'physics.damping';",
    );
    let rejected = loop {
        let event = events.next();
        if event.event == "rejected" {
            break event.json();
        }
    };
    assert_eq!(rejected["keys"], json!(["physics.damping"]));
    // The last good value is what the API serves.
    let served_value = served.call("GET", "/api/settings/physics.damping", None);
    assert_eq!(served_value.json(), json!(0.5));
}

#[test]
fn secrets_are_redacted_in_reads_history_events_and_errors() {
    let db = TempDb::new();
    let served = with_rules(&db, RULES);
    let mut events = SseStream::open(&served, "/api/events", &[]);
    events.next();
    served.call("PUT", "/api/settings/db.password", Some("\"hunter2\""));
    assert_eq!(db_value(&db.path, "db.password"), Some(json!("hunter2")));
    let redacted = json!({"<redacted>": true});
    assert_eq!(
        served.call("GET", "/api/settings/db.password", None).json(),
        redacted
    );
    assert_eq!(
        served.call("GET", "/api/settings", None).json()["db"]["password"],
        redacted
    );
    let history = served.call("GET", "/api/history/db.password", None);
    assert!(!history.text().contains("hunter2"), "{}", history.text());
    let commit = events.next_commit();
    assert!(!commit.data.contains("hunter2"), "{}", commit.data);
    assert_eq!(commit.json()["changes"][0]["new"], redacted);
    let mut fresh = SseStream::open(&served, "/api/events", &[]);
    let snapshot = fresh.next();
    assert!(!snapshot.data.contains("hunter2"), "{}", snapshot.data);
}

// ---------------------------------------------------------------------------
// History, revert, stats

#[test]
fn history_lists_a_keys_changes_and_revert_undoes_one() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/a.x", Some("1"));
    let second = served
        .call("PUT", "/api/settings/a.x", Some("2"))
        .etag_seq();
    let history = served.call("GET", "/api/history/a.x", None);
    assert_eq!(history.status, 200);
    let entries = history.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[1]["old"].clone(), entries[1]["new"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(entries[1]["origin"], "livesettings-serve");
    let revert = served.call("POST", &format!("/api/revert/{second}"), None);
    assert_eq!(revert.status, 200, "{}", revert.text());
    assert_eq!(db_value(&db.path, "a.x"), Some(json!(1)));
    let unknown = served.call("POST", "/api/revert/999", None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let nonsense = served.call("POST", "/api/revert/abc", None);
    assert_eq!(nonsense.status, 400);
    let limited = served.call("GET", "/api/history/a.x?limit=1", None);
    assert_eq!(limited.json()["entries"].as_array().unwrap().len(), 1);
    let section = served.call("GET", "/api/history/a?section=true", None);
    assert_eq!(section.json()["entries"].as_array().unwrap().len(), 3);
    assert_eq!(
        served.call("GET", "/api/history/a.x?limit=-1", None).status,
        400
    );
}

#[test]
fn stats_report_the_stores_counters() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/a.x", Some("1"));
    let stats = served.call("GET", "/api/stats", None);
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["keys"], 1);
    assert_eq!(stats["local_commits"], 1);
    assert_eq!(stats["applied_seq"], 1);
    assert_eq!(stats["path"], db.path.display().to_string());
}

// ---------------------------------------------------------------------------
// Hostile requests: clear 4xx, nothing stored changes

#[test]
fn hostile_requests_get_clear_4xx_errors_and_change_nothing() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/a.x", Some("1"));
    let before = fingerprint(&db);
    let bad_json = served.call("PUT", "/api/settings/a.x", Some("{not json"));
    assert_eq!(bad_json.status, 400, "{}", bad_json.text());
    assert_eq!(bad_json.json()["key"], "a.x");
    let bare_string = served.call("PUT", "/api/settings/a.x", Some("hello"));
    assert_eq!(bare_string.status, 400);
    assert!(
        bare_string.json()["error"]
            .as_str()
            .unwrap()
            .contains("quotes")
    );
    let not_utf8 = request(
        served.address,
        "PUT",
        "/api/settings/a.x",
        &[("Authorization", &format!("Bearer {}", served.token))],
        Some(&[0xff, 0xfe, b'1']),
    );
    assert_eq!(not_utf8.status, 400);
    let bad_key = served.call("PUT", "/api/settings/a..x", Some("1"));
    assert_eq!(bad_key.status, 400);
    assert_eq!(bad_key.json()["key"], "a..x");
    for traversal in [
        "/api/settings/../../etc/passwd",
        "/api/settings/a/../../x",
        "/api/settings/%2e%2e%2fetc",
        "/api/settings/a%00b",
    ] {
        let reply = served.call("PUT", traversal, Some("1"));
        assert!(
            matches!(reply.status, 400 | 404),
            "{traversal}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(reply.json()["error"].is_string(), "{traversal}");
    }
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let too_deep = served.call("PUT", "/api/settings/a.x", Some(&deep));
    assert!(matches!(too_deep.status, 400 | 422), "{}", too_deep.text());
    let huge_number = served.call(
        "PUT",
        "/api/settings/a.x",
        Some("123456789012345678901234567890"),
    );
    assert!(
        matches!(huge_number.status, 400 | 422),
        "{}",
        huge_number.text()
    );
    let unknown_route = served.call("GET", "/api/nothing", None);
    assert_eq!(unknown_route.status, 404);
    let wrong_method = served.call("PUT", "/api/stats", Some("1"));
    assert_eq!(wrong_method.status, 405);
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn an_oversize_body_is_refused_with_413_and_writes_nothing() {
    let db = TempDb::new();
    let served = Served::start(&db.path, &["--max-body", "1000"]);
    let before = fingerprint(&db);
    let big = format!("\"{}\"", "x".repeat(5000));
    let reply = served.call("PUT", "/api/settings/a.x", Some(&big));
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.json()["error"].as_str().unwrap().contains("1000"));
    let document = format!("{{\"a\": {{\"x\": {big}}}}}");
    assert_eq!(
        served
            .call("PATCH", "/api/settings", Some(&document))
            .status,
        413
    );
    assert_eq!(fingerprint(&db), before);
    // Within the cap it is fine.
    assert_eq!(
        served
            .call("PUT", "/api/settings/a.x", Some("\"small\""))
            .status,
        200
    );
}

#[test]
fn a_request_without_the_right_token_is_401_and_changes_nothing() {
    let (db, served) = started();
    let before = fingerprint(&db);
    let none = request(served.address, "PUT", "/api/settings/a.x", &[], Some(b"1"));
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = request(
        served.address,
        "PUT",
        "/api/settings/a.x",
        &[("Authorization", "Bearer not-the-token")],
        Some(b"1"),
    );
    assert_eq!(wrong.status, 401);
    let prefix_of_it = &served.token[..served.token.len() - 1];
    let short = request(
        served.address,
        "GET",
        "/api/settings",
        &[("Authorization", &format!("Bearer {prefix_of_it}"))],
        None,
    );
    assert_eq!(short.status, 401);
    let basic = request(
        served.address,
        "GET",
        "/api/settings",
        &[("Authorization", &format!("Basic {}", served.token))],
        None,
    );
    assert_eq!(basic.status, 401);
    // The query token is accepted on the console and the stream only.
    let query = format!("/api/settings?token={}", served.token);
    assert_eq!(
        request(served.address, "GET", &query, &[], None).status,
        401
    );
    let put_query = format!("/api/settings/a.x?token={}", served.token);
    assert_eq!(
        request(served.address, "PUT", &put_query, &[], Some(b"1")).status,
        401
    );
    let console = request(
        served.address,
        "GET",
        &format!("/?token={}", served.token),
        &[],
        None,
    );
    assert_eq!(console.status, 200);
    assert_eq!(request(served.address, "GET", "/", &[], None).status, 401);
    let stream = SseStream::open_raw(
        served.address,
        &format!("/api/events?token={}", served.token),
        &[],
    );
    assert_eq!(stream.status, 200);
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn a_request_naming_another_host_is_refused_against_dns_rebinding() {
    let (db, served) = started();
    let before = fingerprint(&db);
    let token = format!("Bearer {}", served.token);
    for host in [
        "evil.example",
        "evil.example:80",
        &format!("attacker.test:{}", served.address.port()),
    ] {
        let reply = request(
            served.address,
            "PUT",
            "/api/settings/a.x",
            &[("Host", host), ("Authorization", &token)],
            Some(b"1"),
        );
        assert_eq!(reply.status, 403, "{host}: {}", reply.text());
    }
    let localhost = format!("localhost:{}", served.address.port());
    let ok = request(
        served.address,
        "GET",
        "/api/settings",
        &[("Host", &localhost), ("Authorization", &token)],
        None,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(fingerprint(&db), before);
}

#[test]
fn no_cors_headers_are_sent_unless_an_origin_is_allowed() {
    let (_db, served) = started();
    let reply = served.call_with(
        "GET",
        "/api/settings",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    let db = TempDb::new();
    let allowed = Served::start(&db.path, &["--allow-origin", "https://ops.example"]);
    let preflight = request(
        allowed.address,
        "OPTIONS",
        "/api/settings/a.x",
        &[
            ("Origin", "https://ops.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "authorization,if-match"),
        ],
        None,
    );
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://ops.example"),
        "{:?}",
        preflight.headers
    );
    let other = allowed.call_with(
        "GET",
        "/api/settings",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn the_token_file_is_created_private_beside_the_database_or_taken_as_it_is() {
    use std::os::unix::fs::PermissionsExt;
    let (db, served) = started();
    assert_eq!(served.token_file, db.sibling("settings.db.token"));
    let mode = std::fs::metadata(&served.token_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(served.token.len(), 64);
    assert!(
        served.url.ends_with(&format!("/?token={}", served.token)),
        "{}",
        served.url
    );
    drop(served);
    let own = db.sibling("my-token");
    std::fs::write(&own, "operator-chosen-token\n").unwrap();
    let own_arg = own.display().to_string();
    let again = Served::start(&db.path, &["--token-file", &own_arg]);
    assert_eq!(again.token, "operator-chosen-token");
    assert_eq!(again.call("GET", "/api/settings", None).status, 200);
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "operator-chosen-token\n"
    );
}

#[test]
fn the_console_is_one_page_with_a_strict_content_security_policy() {
    let (_db, served) = started();
    let page = served.call("GET", "/", None);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'nonce-"),
        "{policy}"
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let html = page.text();
    assert!(
        html.contains("new EventSource") && html.contains(".row.changed"),
        "CSS and JS are inlined"
    );
    assert!(
        !html.contains("{{NONCE}}") && !html.contains("src=\"http"),
        "no placeholder, no CDN"
    );
}

// ---------------------------------------------------------------------------
// The event stream

#[test]
fn the_stream_starts_with_a_snapshot_then_sends_one_event_per_commit_with_its_seq() {
    let (db, served) = started();
    served.call("PUT", "/api/settings/a.x", Some("1"));
    let mut events = SseStream::open(&served, "/api/events", &[]);
    assert_eq!(events.status, 200);
    let snapshot = events.next();
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.json()["reason"], "initial");
    assert_eq!(snapshot.json()["settings"], json!({"a": {"x": 1}}));
    assert_eq!(snapshot.id.as_deref(), Some("1"));
    let put = served
        .call("PUT", "/api/settings/a.y", Some("2"))
        .etag_seq();
    let commit = events.next_commit();
    assert_eq!(commit.id, Some(put.to_string()));
    let data = commit.json();
    assert_eq!(data["source"], "local");
    assert_eq!(
        data["changes"],
        json!([{"seq": put, "key": "a.y", "old": null, "new": 2}])
    );
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '5' WHERE key = 'a.x';",
    );
    let external = events.next_commit().json();
    assert_eq!(external["source"], "external");
    assert_eq!(external["changes"][0]["key"], "a.x");
    assert_eq!(external["changes"][0]["old"], 1);
    assert_eq!(external["changes"][0]["new"], 5);
}

#[test]
fn the_stream_of_a_prefix_carries_only_its_keys() {
    let (_db, served) = started();
    let mut events = SseStream::open(&served, "/api/events?prefix=a", &[]);
    assert_eq!(events.next().event, "snapshot");
    served.call("PUT", "/api/settings/b.x", Some("1"));
    let wanted = served
        .call("PUT", "/api/settings/a.x", Some("1"))
        .etag_seq();
    let commit = events.next_commit();
    assert_eq!(commit.id, Some(wanted.to_string()), "b.x was not sent");
    let bad = SseStream::open(&served, "/api/events?prefix=a..b", &[]);
    assert_eq!(bad.status, 400);
    let bad_resume = SseStream::open(&served, "/api/events", &[("Last-Event-ID", "x")]);
    assert_eq!(bad_resume.status, 400);
}

#[test]
fn a_reconnect_with_last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let (db, served) = started();
    let mut events = SseStream::open(&served, "/api/events", &[]);
    events.next();
    served.call("PUT", "/api/settings/a.x", Some("1"));
    let last = events.next_commit().id.expect("an id");
    drop(events); // the client disconnects
    let mut expected = Vec::new();
    for i in 2..=4 {
        expected.push(
            served
                .call("PUT", "/api/settings/a.x", Some(&i.to_string()))
                .etag_seq()
                .to_string(),
        );
    }
    sqlite3(
        &db.path,
        "UPDATE settings SET value = '5' WHERE key = 'a.x';",
    );
    support::wait_until("the sqlite3 write is applied", || {
        served.call("GET", "/api/settings/a.x", None).json() == json!(5)
    });
    expected.push(support::log_rows(&db.path).to_string());
    let mut resumed = SseStream::open(&served, "/api/events", &[("Last-Event-ID", &last)]);
    // Replayed from the log: every change after the last id, once, in
    // order (consecutive commits of one source may come as one event: the
    // log does not record transaction boundaries; a commit is never split).
    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    while seqs.len() < expected.len() {
        let event = resumed.next();
        assert_eq!(event.event, "commit", "{event:?}");
        for change in event.json()["changes"].as_array().unwrap() {
            seqs.push(change["seq"].as_i64().unwrap().to_string());
        }
        ids.push(event.id.expect("an id"));
    }
    assert_eq!(seqs, expected);
    assert_eq!(ids.last(), expected.last());
    // Then live, with nothing repeated.
    let live = served
        .call("PUT", "/api/settings/a.x", Some("6"))
        .etag_seq();
    assert_eq!(resumed.next_commit().id, Some(live.to_string()));
    assert!(resumed.next_within(Duration::from_millis(200)).is_none());
    // `?from=SEQ` does the same.
    let mut from = SseStream::open(&served, &format!("/api/events?from={}", expected[2]), &[]);
    let first = from.next().json();
    assert_eq!(first["changes"][0]["seq"].to_string(), expected[3]);
}

#[test]
fn resuming_from_a_seq_the_log_no_longer_holds_starts_with_a_snapshot_marked_compacted() {
    let (db, served) = started();
    for i in 1..=5 {
        served.call("PUT", "/api/settings/a.x", Some(&i.to_string()));
    }
    sqlite3(&db.path, "DELETE FROM settings_log WHERE seq <= 4;");
    let mut resumed = SseStream::open(&served, "/api/events", &[("Last-Event-ID", "1")]);
    let first = resumed.next();
    assert_eq!(first.event, "snapshot");
    let data = first.json();
    assert_eq!(
        (data["snapshot"].clone(), data["reason"].clone()),
        (json!(true), json!("compacted"))
    );
    assert_eq!(data["settings"], json!({"a": {"x": 5}}));
    assert_eq!(first.id.as_deref(), Some("5"));
    let live = served
        .call("PUT", "/api/settings/a.x", Some("6"))
        .etag_seq();
    assert_eq!(resumed.next_commit().id, Some(live.to_string()));
    // A position this database never reached: a snapshot too.
    let mut unknown = SseStream::open(&served, "/api/events?from=9999", &[]);
    assert_eq!(unknown.next().json()["reason"], "unknown_seq");
}

#[test]
fn a_slow_client_never_blocks_the_store_or_other_clients_and_gets_a_resync() {
    let db = TempDb::new();
    let served = Served::start(
        &db.path,
        &["--client-backlog", "4", "--max-body", "2000000"],
    );
    let mut slow = SseStream::open_small(&served, "/api/events");
    let mut fast = SseStream::open(&served, "/api/events", &[]);
    assert_eq!(fast.next().event, "snapshot");
    // 200 KB per commit: the slow client's small receive buffer and the
    // server's send buffer (at most 4 MB here) fill, then its backlog of 4,
    // and it lags.
    let big = format!("\"{}\"", "v".repeat(200_000));
    let mut last = 0;
    for i in 0..60 {
        let reply = served.call(
            "PUT",
            &format!("/api/settings/big.k{}", i % 3),
            Some(&big.replace('v', &format!("{}", i % 10))),
        );
        assert_eq!(
            reply.status, 200,
            "writes go on while a client does not read"
        );
        last = reply.etag_seq();
        // The fast client keeps up (read as it goes).
        assert_eq!(fast.next_commit().id, Some(last.to_string()));
    }
    // Now the slow one reads: a lag resync snapshot, then only later commits.
    let mut saw_resync = false;
    let mut seen = Vec::new();
    while let Some(event) = slow.next_within(Duration::from_secs(5)) {
        if event.event == "snapshot" && event.json()["reason"] == "lagged" {
            saw_resync = true;
            assert_eq!(
                event.json()["settings"]["big"].as_object().map(|m| m.len()),
                Some(3)
            );
        }
        let id: i64 = event
            .id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        if let Some(previous) = seen.last() {
            assert!(
                id > *previous || event.event != "commit",
                "ids go forward: {previous} then {id}"
            );
        }
        if event.event == "commit" || event.event == "snapshot" {
            seen.push(id);
        }
        if id == last {
            break;
        }
    }
    assert!(saw_resync, "the lagging client was resynchronized");
    assert_eq!(seen.last(), Some(&last), "and caught up");
}

#[test]
fn sigterm_stops_the_server_cleanly_with_streams_open() {
    let (_db, served) = started();
    let mut events = SseStream::open(&served, "/api/events", &[]);
    events.next();
    assert!(served.terminate(), "serve exits with success");
    assert!(
        events.next_within(Duration::from_secs(5)).is_none(),
        "the stream ended"
    );
}
