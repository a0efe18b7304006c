//! `Store::close` and `Drop` stop and join the watcher thread.
//!
//! In a file of its own so that it runs in its own process: it counts the
//! threads of the process, which other tests running in parallel would
//! disturb.

mod support;

use std::time::Duration;

use livesettings::{Options, Store, WatchMode};

use support::{TempDb, poll_until};

/// Thread names as the kernel keeps them (truncated to 15 bytes).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some(name.trim_end().to_owned())
        })
        .collect()
}

/// Threads whose (truncated) name starts with `prefix`.
fn count(prefix: &str) -> usize {
    thread_names()
        .iter()
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// "livesettings-watcher", truncated by the kernel.
const WATCHER: &str = "livesettings-wa";

#[test]
fn closing_or_dropping_a_store_joins_its_watcher() {
    let db = TempDb::new();
    let path = &db.path;
    let baseline = thread_names();
    assert_eq!(count(WATCHER), 0, "watchers before any store: {baseline:?}");

    for round in 0..20 {
        let store = match round % 3 {
            0 => Store::open(path).unwrap(),
            1 => Options::new()
                .with_watch(WatchMode::poll())
                .open(path)
                .unwrap(),
            _ => Options::new()
                .with_watch(WatchMode::Events {
                    safety_poll: Duration::from_millis(5),
                })
                .open(path)
                .unwrap(),
        };
        store.set("round", &round).unwrap();
        // The new thread names itself when it starts running.
        assert!(
            poll_until(Duration::from_secs(10), || count(WATCHER) == 1),
            "round {round}: expected one watcher: {:?}",
            thread_names()
        );
        if round % 2 == 0 {
            store.close().unwrap();
        } else {
            drop(store);
        }
        // close / drop join the thread: it is gone when they return.
        assert_eq!(
            count(WATCHER),
            0,
            "round {round}: a watcher outlived its store: {:?}",
            thread_names()
        );
    }

    // Threads of the file-event backend (notify's inotify loop) are told to
    // stop when the watcher drops them; they must not pile up either.
    assert!(
        poll_until(Duration::from_secs(10), || thread_names().len()
            <= baseline.len()),
        "threads left behind: before {baseline:?}, after {:?}",
        thread_names()
    );

    // A store with no watcher thread starts none.
    let store = Options::new()
        .with_watch(WatchMode::Off)
        .open(path)
        .unwrap();
    assert_eq!(count(WATCHER), 0);
    assert_eq!(store.get::<i64>("round").unwrap(), Some(19));
    store.close().unwrap();
}
