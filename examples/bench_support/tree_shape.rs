//! What the tree-shape triggers (schema version 3) cost a writer: an INSERT
//! of a new key, and the statements of a `merge` of the 435-key
//! fixture, on a plain connection to a copy of the database with the
//! triggers and to a copy without them, in alternating blocks of the same
//! run; and `Store::merge` itself against the same statements without
//! the triggers.

use std::time::Instant;

use livesettings::{Options, WatchMode};
use rusqlite::Connection;
use serde_json::{Value, json};

use super::{Config, Golden, Row, Samples, fresh_copy, progress};
use crate::support;

const INSERT: &str = "INSERT INTO settings (key, value) VALUES (?1, ?2)";
/// The two statements `Store::merge` runs per leaf (`writes::upsert`).
const UPDATE: &str = "UPDATE settings SET value = ?2 WHERE key = ?1 AND value IS NOT ?2";
const INSERT_MISSING: &str = "INSERT INTO settings (key, value) SELECT ?1, ?2 \
     WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = ?1)";
const CLEAR: &str = "DELETE FROM settings WHERE key >= ?1 || '.' AND key < ?1 || '/'";

/// A copy of `golden` on a plain connection, with the shape triggers or
/// with them dropped.
fn copy(cfg: &Config, golden: &Golden, triggers: bool) -> Connection {
    let name = format!(
        "shape-{}-{}",
        if triggers { "with" } else { "without" },
        golden.keys
    );
    let path = fresh_copy(&golden.path, &cfg.workdir, &name);
    let conn = support::raw_update_baseline(&path);
    if !triggers {
        conn.execute_batch(
            "DROP TRIGGER settings_shape_insert; DROP TRIGGER settings_shape_update;",
        )
        .expect("drop the shape triggers");
    }
    conn
}

/// A key below an existing section, as deep as the fixture's keys.
fn new_key(round: usize, at: usize) -> String {
    format!("visualisation.graphs.logseq.physics.shape{round}.k{at}")
}

/// One INSERT of a new key, autocommit, in alternating blocks of 100 on
/// both copies; each block's keys are deleted (untimed) after it, so the
/// table keeps its size.
fn insert_with_and_without(cfg: &Config, golden: &Golden) -> (Samples, Samples) {
    const BLOCK: usize = 100;
    let with = copy(cfg, golden, true);
    let without = copy(cfg, golden, false);
    let mut ours = Vec::with_capacity(cfg.set_samples);
    let mut baseline = Vec::with_capacity(cfg.set_samples);
    let mut round = 0;
    let block = |conn: &Connection, round: usize, out: Option<&mut Vec<f64>>| {
        let mut insert = conn.prepare_cached(INSERT).expect("prepare the insert");
        let mut times = Vec::with_capacity(BLOCK);
        for at in 0..BLOCK {
            let key = new_key(round, at);
            let started = Instant::now();
            insert.execute((&key, "0.5")).expect("insert a new key");
            times.push(started.elapsed().as_nanos() as f64);
        }
        conn.execute(
            CLEAR,
            [format!("visualisation.graphs.logseq.physics.shape{round}")],
        )
        .expect("clear the block");
        if let Some(out) = out {
            out.extend(times);
        }
    };
    // Warm both.
    for _ in 0..2 {
        round += 1;
        block(&with, round, None);
        block(&without, round, None);
    }
    while ours.len() < cfg.set_samples {
        round += 1;
        block(&with, round, Some(&mut ours));
        block(&without, round, Some(&mut baseline));
    }
    (Samples::new(ours), Samples::new(baseline))
}

/// The statements of `merge` for every leaf of `tree`, in one
/// IMMEDIATE transaction.
fn merge_statements(conn: &mut Connection, leaves: &[(String, String)]) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .expect("begin");
    {
        let mut update = tx.prepare_cached(UPDATE).expect("prepare the update");
        let mut insert = tx
            .prepare_cached(INSERT_MISSING)
            .expect("prepare the insert");
        for (key, text) in leaves {
            if update.execute((key, text)).expect("update") == 0 {
                insert.execute((key, text)).expect("insert");
            }
        }
    }
    tx.commit().expect("commit");
}

/// The fixture's leaves under `prefix` (so every one is a new key), as
/// stored text.
fn fixture_under(prefix: &str) -> (Value, Vec<(String, String)>) {
    let tree = json!({ prefix: support::fixture() });
    let leaves = livesettings::flatten("", &tree)
        .expect("the fixture flattens")
        .into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect();
    (tree, leaves)
}

/// `merge`'s statements for the fixture (435 new keys) with and
/// without the triggers, alternating; and `Store::merge` of the same
/// document, alternating with the statements without the triggers on a
/// third copy. Each merge is cleared (untimed) after it.
fn merge_with_and_without(cfg: &Config, golden: &Golden) -> (Samples, Samples, Samples) {
    let rounds = if cfg.quick { 15 } else { 60 };
    let mut with = copy(cfg, golden, true);
    let mut without = copy(cfg, golden, false);
    let store_path = fresh_copy(
        &golden.path,
        &cfg.workdir,
        &format!("shape-store-{}", golden.keys),
    );
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(&store_path)
        .expect("open the store");
    let (mut ours, mut baseline, mut store_times) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 2 {
        let prefix = format!("shape{round}");
        let (tree, leaves) = fixture_under(&prefix);
        let time = |conn: &mut Connection| {
            let started = Instant::now();
            merge_statements(conn, &leaves);
            let elapsed = started.elapsed().as_nanos() as f64;
            conn.execute(CLEAR, [&prefix]).expect("clear the merge");
            elapsed
        };
        let (a, b) = (time(&mut with), time(&mut without));
        let started = Instant::now();
        store.merge(&tree).expect("merge");
        let c = started.elapsed().as_nanos() as f64;
        store.unset_section(&prefix).expect("clear the merge");
        if round >= 2 {
            ours.push(a);
            baseline.push(b);
            store_times.push(c);
        }
    }
    store.close().expect("close");
    (
        Samples::new(ours),
        Samples::new(baseline),
        Samples::new(store_times),
    )
}

pub fn rows(cfg: &Config, small: &Golden, large: &Golden, rows: &mut Vec<Row>) {
    for golden in [small, large] {
        progress(format!(
            "shape: INSERT of a new key with and without the shape triggers at {} keys",
            golden.keys
        ));
        let (ours, baseline) = insert_with_and_without(cfg, golden);
        rows.push(
            Row::new(
                "shape",
                format!(
                    "INSERT of a new key (6 segments), autocommit, plain connection, with the tree-shape triggers; {} keys",
                    golden.keys
                ),
            )
            .timed(
                &ours,
                "the same INSERT on a copy without the tree-shape triggers (change-log triggers kept)",
                &baseline,
            ),
        );
        progress(format!(
            "shape: merge of the fixture with and without the shape triggers at {} keys",
            golden.keys
        ));
        let (ours, baseline, store) = merge_with_and_without(cfg, golden);
        rows.push(
            Row::new(
                "shape",
                format!(
                    "`merge`'s statements for the 435-key fixture (all new keys), one transaction, with the tree-shape triggers; {} keys",
                    golden.keys
                ),
            )
            .timed(
                &ours,
                "the same statements without the tree-shape triggers",
                &baseline,
            ),
        );
        rows.push(
            Row::new(
                "shape",
                format!(
                    "`Store::merge` of the 435-key fixture (all new keys), with the tree-shape triggers; {} keys",
                    golden.keys
                ),
            )
            .timed(
                &store,
                "its statements without the tree-shape triggers (row above)",
                &baseline,
            ),
        );
    }
}
