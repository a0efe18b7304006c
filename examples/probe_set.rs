use livesettings::{Options, WatchMode};
use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("off.db");
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&path)
        .unwrap();
    for i in 0..1000 {
        store.set(&format!("a.k{}", i % 50), &(i as f64)).unwrap();
    }
    let n = 20000;
    let t = Instant::now();
    for i in 0..n {
        store
            .set(&format!("a.k{}", i % 50), &(i as f64 + 0.5))
            .unwrap();
    }
    println!(
        "store set: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let up = "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value";
    let t = Instant::now();
    for i in 0..n {
        conn.prepare_cached(up)
            .unwrap()
            .execute((format!("a.k{}", i % 50), (i as f64 + 0.25).to_string()))
            .unwrap();
    }
    println!(
        "raw upsert: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let _: i64 = conn
            .prepare_cached("PRAGMA schema_version")
            .unwrap()
            .query_row([], |r| r.get(0))
            .unwrap();
        let _: i64 = conn.prepare_cached("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'settings_log' AND typeof(seq) = 'integer'), 0), coalesce((SELECT max(seq) FROM settings_log), 0)), (SELECT CAST(value AS TEXT) FROM livesettings_meta WHERE name = 'schema_version')").unwrap().query_row([], |r| r.get(0)).unwrap();
        conn.prepare_cached(up)
            .unwrap()
            .execute((format!("a.k{}", i % 50), (i as f64 + 0.75).to_string()))
            .unwrap();
        let mut st = conn.prepare_cached("UPDATE settings_log SET origin = ?1, session = ?2 WHERE seq >= (SELECT max(seq) FROM settings_log) RETURNING seq, key, new, session, at").unwrap();
        let _rows: Vec<i64> = st
            .query_map(("x", "abcdef0123456789"), |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        conn.execute_batch("COMMIT").unwrap();
    }
    println!(
        "raw replica of set's SQL: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.prepare_cached(up)
            .unwrap()
            .execute((format!("a.k{}", i % 50), (i as f64 + 0.125).to_string()))
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    println!(
        "raw upsert in BEGIN IMMEDIATE: {:.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for i in 0..n {
        let _ = std::fs::metadata(&path).unwrap().created();
        let _ = i;
    }
    println!("stat: {:.2} µs", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
