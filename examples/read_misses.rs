//! The profile behind the bench report's spread-read row: one process that
//! reads 4 096 numeric keys spread over a 100 000-key tree, either from a
//! `Store` or from an `RwLock<HashMap<String, Value>>` loaded the same way,
//! with the reads in their own function so that callgrind can count only
//! them:
//!
//! ```text
//! cargo build --release --example read_misses
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!   --toggle-collect='read_misses::store_reads' target/release/examples/read_misses store
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!   --toggle-collect='read_misses::map_reads' target/release/examples/read_misses hashmap
//! ```
//!
//! and compare the instructions (Ir) and the first-level and last-level data
//! read misses (D1mr, DLmr) per read.

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;

use serde_json::Value;

const ROUNDS: usize = 50;

#[inline(never)]
fn store_reads(store: &livesettings::Store, keys: &[String]) -> f64 {
    let mut sum = 0.0;
    for _ in 0..ROUNDS {
        for key in keys {
            sum += store.get::<f64>(key).ok().flatten().unwrap_or(0.0);
        }
    }
    sum
}

#[inline(never)]
fn map_reads(map: &RwLock<HashMap<String, Value>>, keys: &[String]) -> f64 {
    let mut sum = 0.0;
    for _ in 0..ROUNDS {
        for key in keys {
            let guard = map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sum += guard
                .get(key.as_str())
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
        }
    }
    sum
}

fn main() {
    let kind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "store".to_owned());
    let leaves = support::generated_leaves(100_000);
    let keys = support::numeric_keys(&leaves, 4_096);
    let total = if kind == "hashmap" {
        let map = RwLock::new(leaves.iter().cloned().collect::<HashMap<_, _>>());
        black_box(map_reads(&map, &keys))
    } else {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("settings.db");
        support::build_db(&path, &leaves);
        let store = support::open_store(&path);
        let total = black_box(store_reads(&store, &keys));
        store.close().expect("close");
        total
    };
    println!("{kind}: {} reads, sum {total}", ROUNDS * keys.len());
}
