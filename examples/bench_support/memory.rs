//! Resident memory of a store holding the large tree, measured in a fresh
//! child process (this binary re-run with `--memory-child`) so that the
//! report's own allocations do not blur it: VmRSS before and after
//! `Store::open`, against the raw bytes of the keys and values (key length +
//! JSON text length) and against a `HashMap<String, Value>` loaded the same
//! way.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{Config, Golden, Row, fresh_copy, progress, target, vm_rss};
use crate::support;

/// Entry point of the child: `--memory-child store|hashmap PATH`; prints
/// "RSS_BEFORE RSS_AFTER KEYS".
pub fn child(kind: &str, path: &Path) {
    let before = vm_rss("self").unwrap_or(0);
    let (after, keys) = match kind {
        "store" => {
            let store = support::open_store(path);
            let after = vm_rss("self").unwrap_or(0);
            let keys = store.stats().keys;
            store.close().expect("close");
            (after, keys)
        }
        _ => {
            let conn = rusqlite::Connection::open(path).expect("open");
            let map: HashMap<String, Value> = {
                let mut statement = conn.prepare("SELECT key, value FROM settings").unwrap();
                statement
                    .query_map([], |row| {
                        let key: String = row.get(0)?;
                        let text = row.get_ref(1)?.as_str()?;
                        Ok((key, serde_json::from_str(text).unwrap_or(Value::Null)))
                    })
                    .unwrap()
                    .map(|row| row.unwrap())
                    .collect()
            };
            drop(conn);
            let after = vm_rss("self").unwrap_or(0);
            (after, map.len())
        }
    };
    println!("{before} {after} {keys}");
}

pub fn measure(path: &Path, kind: &str) -> Option<(u64, u64, usize)> {
    let exe = std::env::current_exe().ok()?;
    let output = Command::new(exe)
        .arg("--memory-child")
        .arg(kind)
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace().map(|field| field.parse::<u64>());
    let before = fields.next()?.ok()?;
    let after = fields.next()?.ok()?;
    let keys = fields.next()?.ok()?;
    Some((before, after, keys as usize))
}

pub fn rows(cfg: &Config, golden: &Golden, rows: &mut Vec<Row>) {
    progress(format!("resident memory at {} keys", golden.keys));
    let path = fresh_copy(&golden.path, &cfg.workdir, "memory");
    let raw = support::raw_bytes(&golden.leaves) as f64;
    let mib = |bytes: f64| format!("{:.1} MiB", bytes / 1024.0 / 1024.0);
    let (Some(store), Some(map)) = (measure(&path, "store"), measure(&path, "hashmap")) else {
        progress("the memory child failed: skipping");
        return;
    };
    let grown = |(before, after, _): (u64, u64, usize)| after.saturating_sub(before) as f64;
    let ours = grown(store);
    let base = grown(map);
    rows.push(
        Row::new(
            "memory",
            format!(
                "RSS growth of `Store::open` holding {} keys (raw keys + JSON values: {}; includes two connections' page caches)",
                store.2,
                mib(raw)
            ),
        )
        .ours(format!("{} ({:.2}× raw)", mib(ours), ours / raw), "")
        .baseline(
            "`HashMap<String, Value>` loaded by one query (connection closed)",
            format!("{} ({:.2}× raw)", mib(base), base / raw),
            "",
        )
        .ratio(format!("{:.2}× the baseline", ours / base))
        .target(target(
            format!("≤ 3× raw ({:.2}×)", ours / raw),
            ours <= 3.0 * raw,
        )),
    );
}
