//! An application that embeds the store: typed defaults, environment
//! overrides, a validator, a typed live section read in a hot loop, and a
//! subscriber thread that reacts to whole commits.
//!
//! ```text
//! cargo run --example embedded_app                 # a temporary database
//! APP_PHYSICS__ITERATIONS=500 cargo run --example embedded_app -- settings.db
//! ```
//!
//! While it runs (a few seconds), change a value from another terminal:
//! `sqlite3 settings.db "UPDATE settings SET value='0.8' WHERE key='physics.damping'"`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use livesettings::{Event, Options, Source};
use serde::{Deserialize, Serialize};

/// The section the simulation reads on every frame.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Physics {
    damping: f64,
    spring_k: f64,
    iterations: u32,
}

impl Default for Physics {
    fn default() -> Self {
        Physics {
            damping: 0.6,
            spring_k: 0.1,
            iterations: 100,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(1)
        .map_or_else(|| dir.path().join("settings.db"), std::path::PathBuf::from);

    // Defaults in memory, the database above them, `APP_*` above both.
    let store = Arc::new(
        Options::new()
            .with_origin("embedded-app")
            .with_defaults_of::<Physics>("physics")?
            .with_env_prefix("APP")
            .open(&path)?,
    );
    // A bad edit (by anyone) never reaches the simulation.
    store.add_validator::<Physics>("physics", |physics| {
        if (0.0..=1.0).contains(&physics.damping) {
            Ok(())
        } else {
            Err(format!("damping {} is outside 0..=1", physics.damping))
        }
    })?;
    println!(
        "iterations come from {:?}",
        store.explain("physics.iterations")?.layer
    );

    // Whole commits, on their own thread.
    let commits = store.subscribe_commits("physics")?;
    let listener = std::thread::spawn(move || {
        for event in commits {
            match event {
                Event::Commit(commit) => {
                    let source = match commit.source {
                        Source::Local => "this process",
                        _ => "another writer",
                    };
                    println!(
                        "commit {:?} by {source}: {} keys",
                        commit.seqs,
                        commit.changes.len()
                    );
                }
                Event::Rejected(rejection) => println!("refused: {}", rejection.reason),
                _ => {}
            }
        }
    });

    // The hot loop: a pointer load per frame, no lock, no allocation.
    let physics = store.live::<Physics>("physics")?;
    let running = Arc::new(AtomicBool::new(true));
    let simulation = {
        let running = Arc::clone(&running);
        let physics = physics.clone();
        std::thread::spawn(move || {
            let mut frames = 0u64;
            let mut energy = 1.0f64;
            while running.load(Ordering::Relaxed) {
                let now = physics.load();
                energy *= 1.0 - now.damping * 1e-6;
                frames += 1;
            }
            (frames, energy)
        })
    };

    // This process writes too: one commit of two keys, then a refused one.
    store.merge(&serde_json::json!({"physics": {"damping": 0.7, "springK": 0.2}}))?;
    if let Err(error) = store.set("physics.damping", &5.0) {
        println!("refused locally: {error}");
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    running.store(false, Ordering::Relaxed);
    let (frames, energy) = simulation.join().map_err(|_| "the simulation panicked")?;
    println!(
        "{frames} frames, energy {energy:.6}, damping now {}",
        physics.load().damping
    );
    // Closing the store ends the subscription, and the listener with it.
    drop(physics);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(_) => return Err("the store is still shared".into()),
    }
    listener.join().map_err(|_| "the listener panicked")?;
    Ok(())
}
