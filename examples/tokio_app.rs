//! A small tokio application on livesettings' async adapters (feature
//! `async`): it awaits change events and the rebuild of a typed section,
//! while a second store on the same file stands for another process, then
//! makes its own write, closes the store and exits.
//!
//! `cargo run --example tokio_app --features async`

use std::error::Error;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use livesettings::{Event, EventStream, Options, Store, Stream};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Physics {
    damping: f64,
    iterations: u32,
}

/// The next event (what `futures::StreamExt::next` does).
async fn next(events: &mut EventStream) -> Option<Event> {
    poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("settings.db");
    let store = Options::new()
        .with_defaults(json!({"physics": {"damping": 0.6, "iterations": 100}}))
        .open(&path)?;
    let mut events = store.subscribe_async("physics")?;
    let mut physics = store.live::<Physics>("physics")?.watch();
    println!("physics at start: {:?}", physics.load());

    // A task that follows the section: it wakes once per rebuild.
    let follower = tokio::spawn(async move {
        while physics.changed().await.is_ok() {
            let now = physics.get();
            println!("physics rebuilt: {now:?}");
            if now.damping == 0.95 && now.iterations == 200 {
                break;
            }
        }
    });

    // Another writer: a second store on the same file (as another process
    // would be). Writes block for a commit, so off the runtime's threads.
    let other = Store::open(&path)?;
    tokio::task::spawn_blocking(move || other.set("physics.damping", &0.95)).await??;
    // The application's own write: a few milliseconds, fine inline here.
    store.set("physics.iterations", &200)?;

    // Both changes arrive as events: the foreign one once the watcher
    // applied it, the local one at once. Bounded, so the example always ends.
    let mut seen = (false, false);
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen != (true, true) {
            match next(&mut events).await {
                Some(Event::Change(change)) => {
                    println!(
                        "{} = {} ({}, seq {})",
                        change.key,
                        change.new.unwrap_or_default(),
                        change.source,
                        change.seq
                    );
                    match change.key.as_str() {
                        "physics.damping" => seen.0 = true,
                        "physics.iterations" => seen.1 = true,
                        _ => {}
                    }
                }
                Some(other) => println!("{other:?}"),
                None => break,
            }
        }
    })
    .await?;
    tokio::time::timeout(Duration::from_secs(10), follower).await??;

    store.close()?;
    assert!(next(&mut events).await.is_none());
    println!("store closed, the event stream ended");
    Ok(())
}
