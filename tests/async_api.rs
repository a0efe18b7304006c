//! The async adapters (feature `async`) under tokio: `EventStream` for
//! per-key events and whole commits (local writes, the `sqlite3` shell,
//! lag, the end when the store goes), and `LiveWatch::changed` (a foreign
//! change wakes it, a change outside the section does not, every waiter
//! wakes, the store going ends it). Polls never block: a current-thread
//! runtime keeps running other tasks beside pending ones, and the adapters
//! start no thread.

mod support;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use livesettings::{Closed, Event, EventStream, Options, Source, Store, Stream};
use serde::Deserialize;
use serde_json::json;

use support::{TIMEOUT, TempDb, poll_until, sqlite3};

#[derive(Debug, Deserialize)]
struct Physics {
    damping: f64,
}

/// How long a negative check waits for something that must not happen: a
/// bound on a check, not a wait for anything.
const NOTHING_COMES: Duration = Duration::from_millis(300);

/// `future`'s output, within the generous test timeout. Unlike
/// `tokio::time::timeout`, it does not poll `future` once more when time is
/// up, so a lost wake-up fails instead of passing late.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::select! {
        biased;
        () = tokio::time::sleep(TIMEOUT) => panic!("{what}: not within {TIMEOUT:?}"),
        output = future => output,
    }
}

/// The next item of the stream, within the test timeout.
async fn next(events: &mut EventStream, what: &str) -> Option<Event> {
    within(what, poll_fn(|cx| Pin::new(&mut *events).poll_next(cx))).await
}

fn physics_store(db: &TempDb) -> Store {
    Options::new()
        .with_seed(json!({"physics": {"damping": 0.6}, "render": {"fps": 60}}))
        .open(&db.path)
        .unwrap()
}

/// Runs the `sqlite3` shell off the runtime's threads.
async fn shell(db: &TempDb, sql: &'static str) {
    let path = db.path.clone();
    tokio::task::spawn_blocking(move || sqlite3(&path, sql))
        .await
        .expect("the sqlite3 shell");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_write_arrives_on_the_stream() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let mut events = store.subscribe_async("a").unwrap();
    store.set("b.other", &0).unwrap();
    let commit = store.set("a.x", &1).unwrap();
    let Some(Event::Change(change)) = next(&mut events, "the local write").await else {
        panic!("not a change")
    };
    assert_eq!(
        (change.key.as_str(), change.seq, change.source),
        ("a.x", commit.seq, Source::Local)
    );
    assert_eq!(change.new_value(), Some(&json!(1)));
    assert!(events.is_empty(), "nothing for keys outside the prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_write_by_the_sqlite3_shell_arrives_on_the_stream() {
    let db = TempDb::new();
    let store = physics_store(&db);
    let mut events = store.subscribe_async("physics").unwrap();
    // Already waiting (parked) when the shell commits: the publish wakes it.
    let waiter = tokio::spawn(async move { next(&mut events, "the shell's update").await });
    shell(
        &db,
        "UPDATE settings SET value = '0.95' WHERE key = 'physics.damping'",
    )
    .await;
    let Some(Event::Change(change)) = waiter.await.unwrap() else {
        panic!("not a change")
    };
    assert_eq!(change.key, "physics.damping");
    assert_eq!(
        (change.old_value().cloned(), change.new_value().cloned()),
        (Some(json!(0.6)), Some(json!(0.95)))
    );
    assert_eq!(change.source, Source::External);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stream_yields_one_commit_event_per_multi_key_commit() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let mut commits = store.subscribe_commits_async("range").unwrap();

    let local = store
        .merge(&json!({"range": {"min": 1, "max": 9, "step": 2}}))
        .unwrap();
    let Some(Event::Commit(set)) = next(&mut commits, "the local commit").await else {
        panic!("not a commit")
    };
    assert_eq!(set.source, Source::Local);
    assert_eq!(set.seqs.1, local.seq);
    assert_eq!(set.changes.len(), 3, "{set:?}");
    assert!(commits.is_empty(), "one event for the whole commit");

    shell(
        &db,
        "BEGIN; UPDATE settings SET value = '0' WHERE key = 'range.min'; \
         UPDATE settings SET value = '99' WHERE key = 'range.max'; COMMIT;",
    )
    .await;
    let Some(Event::Commit(set)) = next(&mut commits, "the shell's commit").await else {
        panic!("not a commit")
    };
    assert_eq!(set.source, Source::External);
    let keys: Vec<&str> = set.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["range.min", "range.max"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_behind_gets_lagged_then_the_next_commits() {
    let db = TempDb::new();
    let store = Options::new()
        .with_channel_capacity(2)
        .open(&db.path)
        .unwrap();
    let mut events = store.subscribe_async("").unwrap();
    for value in 1..=5 {
        store.set("k", &value).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut events, "the queued events").await.unwrap());
    }
    assert!(matches!(got[0], Event::Change(_)) && matches!(got[1], Event::Change(_)));
    // The third commit did not fit: the notice took the spare slot at once,
    // and the fourth and fifth were dropped behind it (a resync from the
    // snapshot covers them), as for a sync receiver.
    assert_eq!(got[2], Event::Lagged { missed: 1, seq: 3 });
    assert!(events.is_empty(), "the notice is the last item queued");

    let resumed = store.set("k", &6).unwrap();
    let after = next(&mut events, "a commit after the notice was read").await;
    assert_eq!(after.map(|event| event.seq()), Some(resumed.seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_after_its_queued_events_when_the_store_is_closed() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let mut events = store.subscribe_async("").unwrap();
    let mut commits = store.subscribe_commits_async("").unwrap();
    store.set("k", &1).unwrap();
    store.close().unwrap();
    assert!(matches!(
        next(&mut events, "queued").await,
        Some(Event::Change(_))
    ));
    assert_eq!(next(&mut events, "the end").await, None);
    assert_eq!(next(&mut events, "still the end").await, None);
    assert!(matches!(
        next(&mut commits, "queued").await,
        Some(Event::Commit(_))
    ));
    assert_eq!(next(&mut commits, "the end").await, None);
    assert_eq!(commits.try_next(), Err(Closed));
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_waiting_on_the_stream_wakes_and_ends_when_the_store_is_dropped() {
    let db = TempDb::new();
    let store = Store::open(&db.path).unwrap();
    let mut events = store.subscribe_async("").unwrap();
    let parked = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let parked = Arc::clone(&parked);
        tokio::spawn(async move {
            poll_fn(|cx| {
                let poll = Pin::new(&mut events).poll_next(cx);
                if poll.is_pending() {
                    parked.fetch_add(1, Ordering::SeqCst);
                }
                poll
            })
            .await
        })
    };
    // One thread: the waiter runs (and parks) when this task yields.
    while parked.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    drop(store);
    let ended = within("woken when the store went", waiter).await;
    assert_eq!(ended.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_wakes_on_a_foreign_change_to_the_section() {
    let db = TempDb::new();
    let store = physics_store(&db);
    let mut physics = store.live::<Physics>("physics").unwrap().watch();
    assert_eq!(physics.has_changed(), Ok(false));
    let waiter =
        tokio::spawn(async move { physics.changed().await.map(|()| physics.get().damping) });
    shell(
        &db,
        "UPDATE settings SET value = '0.95' WHERE key = 'physics.damping'",
    )
    .await;
    let woken = within("woken by the shell's update", waiter).await;
    assert_eq!(woken.unwrap(), Ok(0.95));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_does_not_wake_for_keys_outside_the_section() {
    let db = TempDb::new();
    let store = Arc::new(physics_store(&db));
    let mut physics = store.live::<Physics>("physics").unwrap().watch();
    store.set("render.fps", &30).unwrap();
    shell(
        &db,
        "UPDATE settings SET value = '90' WHERE key = 'render.fps'",
    )
    .await;
    // The foreign change is applied (so the check below is not vacuous).
    let seq: i64 = support::db_scalar(&db.path, "SELECT max(seq) FROM settings_log")
        .unwrap()
        .parse()
        .unwrap();
    let waiting = Arc::clone(&store);
    tokio::task::spawn_blocking(move || waiting.wait_for_seq(seq, TIMEOUT))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get::<i64>("render.fps").unwrap(), Some(90));

    let woken = tokio::time::timeout(NOTHING_COMES, physics.changed()).await;
    assert!(
        woken.is_err(),
        "woken by keys outside the section: {woken:?}"
    );
    assert_eq!(physics.has_changed(), Ok(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_resolves_at_once_for_a_rebuild_not_yet_seen_and_marks_it_seen() {
    let db = TempDb::new();
    let store = physics_store(&db);
    let mut physics = store.live::<Physics>("physics").unwrap().watch();
    store.set("physics.damping", &0.7).unwrap();
    store.set("physics.damping", &0.8).unwrap();
    assert_eq!(physics.has_changed(), Ok(true));
    let ready = within("an unseen rebuild is ready", physics.changed()).await;
    assert_eq!(ready, Ok(()));
    assert_eq!(
        physics.load().damping,
        0.8,
        "two rebuilds, seen as one change"
    );
    assert_eq!(physics.has_changed(), Ok(false));

    store.set("physics.damping", &0.9).unwrap();
    assert_eq!(physics.get().damping, 0.9);
    assert_eq!(physics.has_changed(), Ok(false), "reading marks it seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_many_concurrent_waiters_wakes() {
    const WAITERS: usize = 64;
    let db = TempDb::new();
    let store = physics_store(&db);
    let watch = store.live::<Physics>("physics").unwrap().watch();
    let parked = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let mut watch = watch.clone();
            let parked = Arc::clone(&parked);
            tokio::spawn(async move {
                let mut first = true;
                poll_fn(|cx| {
                    let poll = watch.poll_changed(cx);
                    if poll.is_pending() && std::mem::take(&mut first) {
                        parked.fetch_add(1, Ordering::SeqCst);
                    }
                    poll
                })
                .await
                .map(|()| watch.get().damping)
            })
        })
        .collect();
    assert!(
        poll_until(TIMEOUT, || parked.load(Ordering::SeqCst) == WAITERS),
        "every waiter parks first"
    );
    store.set("physics.damping", &0.5).unwrap();
    for waiter in waiters {
        let woken = within("every waiter wakes", waiter).await;
        assert_eq!(woken.unwrap(), Ok(0.5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_fails_with_closed_once_the_store_is_gone() {
    let db = TempDb::new();
    let store = physics_store(&db);
    let mut physics = store.live::<Physics>("physics").unwrap().watch();
    let mut late = physics.clone();
    let waiter = tokio::spawn(async move { physics.changed().await });
    store.set("physics.damping", &0.1).unwrap();
    store.close().unwrap();
    let woken = within("woken by the rebuild", waiter).await;
    assert_eq!(woken.unwrap(), Ok(()), "the rebuild first");
    // A watch that already saw the last rebuild learns the store is gone.
    late.mark_seen();
    let closed = within("ends when the store is gone", late.changed()).await;
    assert_eq!(closed, Err(Closed));
    assert_eq!(late.load().damping, 0.1, "the last value stays readable");
}

/// One thread for the runtime: if a poll blocked, the ticker could not run
/// and nothing would wake.
#[tokio::test(flavor = "current_thread")]
async fn pending_streams_and_watches_never_block_a_current_thread_runtime() {
    let db = TempDb::new();
    let store = physics_store(&db);
    let mut events = store.subscribe_async("physics").unwrap();
    let mut physics = store.live::<Physics>("physics").unwrap().watch();
    let stream_task =
        tokio::spawn(async move { poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await });
    let watch_task = tokio::spawn(async move { physics.changed().await });

    let mut ticks = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    while ticks < 5 {
        interval.tick().await;
        ticks += 1;
    }
    assert!(!stream_task.is_finished() && !watch_task.is_finished());

    // A foreign writer on a plain thread; the runtime's only thread awaits.
    let path = db.path.clone();
    let writer = std::thread::spawn(move || {
        sqlite3(
            &path,
            "UPDATE settings SET value = '0.2' WHERE key = 'physics.damping'",
        )
    });
    let both = async { (stream_task.await, watch_task.await) };
    let (event, changed) = within("both wake on one thread", both).await;
    assert!(matches!(event.unwrap(), Some(Event::Change(_))));
    assert_eq!(changed.unwrap(), Ok(()));
    writer.join().unwrap();
}

const THREAD_PROBE: &str = "LIVESETTINGS_ASYNC_THREAD_PROBE";

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Counting threads needs a process of its own (the other tests here run in
/// parallel), so the test runs itself again, alone, in a child process.
#[test]
fn the_async_adapters_start_no_thread_and_leave_none_behind() {
    let name = "the_async_adapters_start_no_thread_and_leave_none_behind";
    if std::env::var_os(THREAD_PROBE).is_none() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(THREAD_PROBE, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let baseline = threads();
    let db = TempDb::new();
    let store = physics_store(&db);
    let with_store = threads();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut events = store.subscribe_async("").unwrap();
        let mut commits = store.subscribe_commits_async("").unwrap();
        let mut physics = store.live::<Physics>("physics").unwrap().watch();
        store.set("physics.damping", &0.3).unwrap();
        assert!(next(&mut events, "a change").await.is_some());
        assert!(next(&mut commits, "a commit").await.is_some());
        assert_eq!(physics.changed().await, Ok(()));
        // Pending polls register wakers, nothing more.
        let pending = poll_fn(|cx| Poll::Ready(Pin::new(&mut events).poll_next(cx))).await;
        assert!(pending.is_pending());
        assert_eq!(threads(), with_store, "the async adapters started a thread");
    });
    drop(runtime);
    store.close().unwrap();
    assert!(
        poll_until(TIMEOUT, || threads() == baseline),
        "threads left: {} (baseline {baseline})",
        threads()
    );
}
