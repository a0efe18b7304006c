//! The fleet bridge on a real 3-node NATS cluster on loopback: three
//! "hosts" (temporary folders, each with its own database, its own
//! `livesettings sync` process and two `livesettings watch --json` store
//! processes), written to by the library, the CLI and the `sqlite3` shell.
//!
//! Every wait is bounded by a deadline and ends as soon as its condition
//! holds; the only deliberate windows are the ones a test makes by
//! stopping or pausing a bridge, each commented where it happens.

#[path = "support/nats_cluster.rs"]
mod nats_cluster;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use livesettings::Store;
use nats_cluster::NatsCluster;
use serde_json::{Value, json};
use support::{
    TIMEOUT, WatchProcess, cli, cli_ok, db_scalar, db_value, poll_until, sqlite3, wait_until,
};

const BUCKET: &str = "fleet";

// ---------------------------------------------------------------------------
// A host: its database, its bridge, its store processes

/// A running `livesettings sync` whose JSON events arrive on a channel.
struct Bridge {
    child: Child,
    events: mpsc::Receiver<Value>,
    /// Events received while waiting for another one.
    skipped: std::sync::Mutex<Vec<Value>>,
}

impl Bridge {
    fn start(db: &Path, url: &str, extra: &[&str]) -> Bridge {
        let mut child = support::cli_command(db)
            .args(["sync", "--nats", url, "--bucket", BUCKET, "--replicas", "3"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn livesettings sync");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if send.send(event).is_err() {
                    break;
                }
            }
        });
        let bridge = Bridge {
            child,
            events,
            skipped: std::sync::Mutex::new(Vec::new()),
        };
        bridge.wait_event("the bridge's ready event", |event| {
            event["event"] == "ready"
        });
        bridge
    }

    /// The first event `matches` accepts, among those skipped so far and
    /// then those to come.
    fn wait_event(&self, what: &str, mut matches: impl FnMut(&Value) -> bool) -> Value {
        let mut skipped = self.skipped.lock().expect("the skipped events");
        if let Some(found) = skipped.iter().position(&mut matches) {
            return skipped.remove(found);
        }
        let deadline = Instant::now() + TIMEOUT * 3;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if matches(&event) => return event,
                Ok(event) => skipped.push(event),
                Err(error) => panic!("no {what}: {error}; got {skipped:?}"),
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the bridge");
    }

    /// SIGSTOP: the process is frozen, its connections stay open.
    fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGKILL: a crash, at whatever step it was.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `watch --json` store process with its change events by key.
struct Watcher {
    process: WatchProcess,
    seen: Vec<Value>,
}

impl Watcher {
    fn start(db: &Path, args: &[&str]) -> Watcher {
        let mut watcher = Watcher {
            process: WatchProcess::spawn(db, args),
            seen: Vec::new(),
        };
        watcher.wait_line("the watcher's ready line", |line| line["event"] == "ready");
        watcher
    }

    fn wait_line(&mut self, what: &str, mut matches: impl FnMut(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().position(&mut matches) {
            return self.seen.remove(found);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .process
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|error| panic!("no {what} ({error}); seen {:?}", self.seen));
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if matches(&value) {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// Waits for the change of `key` to `new`.
    fn wait_change(&mut self, key: &str, new: &Value) -> Value {
        self.wait_line(&format!("a change of {key} to {new}"), |line| {
            line["event"] == "change" && line["key"] == key && &line["new"] == new
        })
    }
}

// Fields drop in order: the processes before the folder they use.
struct Host {
    name: &'static str,
    db: PathBuf,
    bridge: Option<Bridge>,
    watchers: Vec<Watcher>,
    _dir: tempfile::TempDir,
}

impl Host {
    /// A host with a fresh database, its bridge and two store processes.
    fn start(name: &'static str, url: &str) -> Host {
        let dir = tempfile::tempdir().expect("a host folder");
        let db = dir.path().join("settings.db");
        cli_ok(&db, &["init"]);
        let mut host = Host {
            name,
            _dir: dir,
            db,
            bridge: None,
            watchers: Vec::new(),
        };
        host.start_bridge(url);
        host.watchers = (0..2)
            .map(|_| Watcher::start(&host.db, &["--json"]))
            .collect();
        host
    }

    fn start_bridge(&mut self, url: &str) {
        self.bridge = Some(Bridge::start(&self.db, url, &[]));
    }

    fn bridge(&self) -> &Bridge {
        self.bridge.as_ref().expect("the bridge runs")
    }

    fn store(&self) -> Store {
        Store::open(&self.db).expect("open the host's store")
    }

    fn value(&self, key: &str) -> Option<Value> {
        db_value(&self.db, key)
    }

    /// Waits until the file holds `value` at `key` (`None`: absent), for at
    /// most `timeout`.
    fn wait_value_within(&self, key: &str, value: Option<&Value>, timeout: Duration) {
        assert!(
            poll_until(timeout, || self.value(key).as_ref() == value),
            "{} did not hold {key} = {value:?} within {timeout:?}; it holds {:?}",
            self.name,
            self.value(key)
        );
    }

    /// Waits until the file holds `value` at `key` (`None`: absent).
    fn wait_value(&self, key: &str, value: Option<&Value>) {
        wait_until(&format!("{} to hold {key} = {value:?}", self.name), || {
            self.value(key).as_ref() == value
        });
    }

    /// `sync status --json`.
    fn status(&self) -> Value {
        let text = cli_ok(&self.db, &["sync", "status", "--json"]);
        serde_json::from_str(&text).expect("sync status prints JSON")
    }

    /// The change log's `(key, new)` rows for keys under `prefix`, in seq
    /// order.
    fn log(&self, prefix: &str) -> Vec<(String, Option<String>)> {
        let conn = rusqlite::Connection::open(&self.db).expect("open the host's file");
        let mut statement = conn
            .prepare("SELECT key, new FROM settings_log WHERE key GLOB ?1 ORDER BY seq")
            .expect("prepare");
        statement
            .query_map([format!("{prefix}*")], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .expect("read the change log")
    }

    fn origins(&self, prefix: &str) -> Vec<String> {
        let conn = rusqlite::Connection::open(&self.db).expect("open the host's file");
        let mut statement = conn
            .prepare("SELECT origin FROM settings_log WHERE key GLOB ?1 ORDER BY seq")
            .expect("prepare");
        statement
            .query_map([format!("{prefix}*")], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .expect("read the change log")
    }
}

fn three_hosts(cluster: &NatsCluster) -> [Host; 3] {
    let url = cluster.url();
    // A first: its bridge creates the bucket with 3 replicas.
    let a = Host::start("A", &url);
    [a, Host::start("B", &url), Host::start("C", &url)]
}

/// Runs `work` against the cluster with a JetStream context.
fn with_jetstream<T>(
    cluster: &NatsCluster,
    work: impl AsyncFnOnce(async_nats::jetstream::Context) -> T,
) -> T {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let client = async_nats::connect(cluster.servers())
            .await
            .expect("connect to the cluster");
        work(async_nats::jetstream::new(client)).await
    })
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn a_write_on_one_host_reaches_every_store_on_every_host_in_the_same_order() {
    let cluster = NatsCluster::start();
    let mut hosts = three_hosts(&cluster);
    let writer = hosts[0].store();
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        let value = json!(round);
        let written = Instant::now();
        writer.set("physics.damping", &value).expect("write on A");
        for host in hosts.iter_mut() {
            for watcher in &mut host.watchers {
                watcher.wait_change("physics.damping", &value);
            }
        }
        slowest = slowest.max(written.elapsed());
    }
    eprintln!("slowest of 5 writes to reach all 6 stores: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a write took {slowest:?} to reach every store on every host"
    );
    // Writers of every kind, on every host, one after the other (each seen
    // everywhere before the next, so the fleet's order is also each
    // writer's local order): the CLI on B, the sqlite3 shell on C, a delete
    // on A.
    cli_ok(&hosts[1].db, &["set", "physics.spring", "0.5"]);
    for host in &hosts {
        host.wait_value("physics.spring", Some(&json!(0.5)));
    }
    sqlite3(
        &hosts[2].db,
        "INSERT INTO settings (key, value) VALUES ('physics.gravity', '9.81')",
    );
    for host in &hosts {
        host.wait_value("physics.gravity", Some(&json!(9.81)));
    }
    writer.unset("physics.damping").expect("delete on A");
    for host in &hosts {
        host.wait_value("physics.damping", None);
    }
    for host in hosts.iter_mut() {
        for watcher in &mut host.watchers {
            watcher.wait_line("the delete's change event", |line| {
                line["event"] == "change"
                    && line["key"] == "physics.damping"
                    && line["new"].is_null()
            });
        }
    }
    // The same order of the fleet's changes in every host's log, each
    // change logged once: nothing echoed back or ping-ponged.
    let order = hosts[0].log("physics.");
    assert_eq!(
        order.len(),
        8,
        "5 sets, spring, gravity, the delete: {order:?}"
    );
    for host in &hosts[1..] {
        assert_eq!(
            host.log("physics."),
            order,
            "host {}'s log order",
            host.name
        );
    }
    // Every host applies the bucket's entries in revision order.
    for host in &hosts {
        let revisions: Vec<u64> = host
            .origins("physics.")
            .iter()
            .filter_map(|origin| origin.strip_prefix("nats:")?.parse().ok())
            .collect();
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "host {}: {revisions:?}",
            host.name
        );
    }
    // A's own writes are logged once, as local; what came from B and C as
    // bucket revisions.
    let origins = hosts[0].origins("physics.");
    assert_eq!(
        origins
            .iter()
            .filter(|origin| origin.starts_with("nats:"))
            .count(),
        2,
        "{origins:?}"
    );
    for host in &hosts {
        let status = host.status();
        assert_eq!(status["running"], true, "{status}");
        assert_eq!(status["connected"], true, "{status}");
        assert_eq!(status["pending_rows"], 0, "{status}");
        assert_eq!(status["conflicts"], 0, "{status}");
    }
}

#[test]
fn killing_the_stream_leader_loses_no_acknowledged_write() {
    let mut cluster = NatsCluster::start();
    let hosts = three_hosts(&cluster);
    let writer = hosts[0].store();
    for index in 0..10 {
        writer
            .set(&format!("before.k{index}"), &index)
            .expect("write on A");
    }
    for host in &hosts {
        host.wait_value("before.k9", Some(&json!(9)));
    }
    let leader = with_jetstream(&cluster, async |js| {
        let mut stream = js
            .get_stream(format!("KV_{BUCKET}"))
            .await
            .expect("the stream");
        let info = stream.info().await.expect("the stream's info");
        info.cluster
            .clone()
            .and_then(|cluster| cluster.leader)
            .expect("a stream leader")
    });
    let index = cluster.index_of(&leader);
    cluster.kill(index);
    for index in 0..10 {
        writer
            .set(&format!("after.k{index}"), &index)
            .expect("write on A");
    }
    cli_ok(&hosts[1].db, &["set", "after.from_b", "true"]);
    // A bridge whose ordered consumer lived on the killed node gets a new
    // one once async-nats misses its heartbeats and the cluster has elected
    // a new stream leader: seconds, and more on a loaded machine. The claim
    // here is that nothing is lost, so the deadline is generous.
    let failover = Duration::from_secs(120);
    for host in &hosts {
        for index in 0..10 {
            host.wait_value_within(&format!("before.k{index}"), Some(&json!(index)), failover);
            host.wait_value_within(&format!("after.k{index}"), Some(&json!(index)), failover);
        }
        host.wait_value_within("after.from_b", Some(&json!(true)), failover);
    }
    // Every write the bucket acknowledged before the kill is still in it.
    let in_bucket = with_jetstream(&cluster, async |js| {
        let kv = js.get_key_value(BUCKET).await.expect("the bucket");
        let mut found = BTreeMap::new();
        for index in 0..10 {
            let key = format!("before.k{index}");
            let value = kv.get(&key).await.expect("read the bucket");
            found.insert(
                key,
                value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            );
        }
        found
    });
    for (index, (key, value)) in in_bucket.iter().enumerate() {
        assert_eq!(value.as_deref(), Some(index.to_string().as_str()), "{key}");
    }
    cluster.restart(index);
    for host in &hosts {
        wait_until(
            &format!("host {} to have pushed everything", host.name),
            || host.status()["pending_rows"] == 0,
        );
    }
}

#[test]
fn a_stopped_bridge_catches_up_without_duplicates_and_pushes_its_queued_writes() {
    let cluster = NatsCluster::start();
    let mut hosts = three_hosts(&cluster);
    let a = hosts[0].store();
    a.set("shared", &"first").expect("write on A");
    for host in &hosts {
        host.wait_value("shared", Some(&json!("first")));
    }
    hosts[2].bridge.take().expect("C's bridge").kill();
    // Host C's bridge is stopped for these 10 writes on A, while C writes
    // locally (two keys of its own, and one A writes too).
    for index in 0..10 {
        a.set(&format!("offline.k{index}"), &index)
            .expect("write on A");
    }
    a.set("shared", &"from A").expect("write on A");
    sqlite3(
        &hosts[2].db,
        "INSERT INTO settings (key, value) VALUES ('queued.q1', '1'), ('queued.q2', '2'); \
         UPDATE settings SET value = '\"from C\"' WHERE key = 'shared';",
    );
    let status = hosts[2].status();
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["connected"], false, "{status}");
    assert_eq!(status["pending_rows"], 3, "{status}");
    let applied_before = status["applied_revision"].as_u64().expect("a revision");
    hosts[2].start_bridge(&cluster.url());
    for index in 0..10 {
        hosts[2].wait_value(&format!("offline.k{index}"), Some(&json!(index)));
    }
    for host in &hosts {
        host.wait_value("queued.q1", Some(&json!(1)));
        host.wait_value("queued.q2", Some(&json!(2)));
        // The fleet changed `shared` while C was away: the fleet's value
        // wins, C's is reported.
        host.wait_value("shared", Some(&json!("from A")));
    }
    for watcher in &mut hosts[2].watchers {
        watcher.wait_change("offline.k9", &json!(9));
        watcher.wait_change("shared", &json!("from A"));
    }
    // Each of the 10 writes applied exactly once on C, each at its own
    // revision.
    let log = hosts[2].log("offline.");
    assert_eq!(log.len(), 10, "{log:?}");
    let duplicates = db_scalar(
        &hosts[2].db,
        "SELECT count(*) FROM (SELECT origin FROM settings_log WHERE origin GLOB 'nats:*' \
         GROUP BY origin, key HAVING count(*) > 1)",
    );
    assert_eq!(duplicates.as_deref(), Some("0"));
    wait_until("C to record its pushes", || {
        hosts[2].status()["pending_rows"] == 0
    });
    let status = hosts[2].status();
    assert!(
        status["applied_revision"].as_u64() > Some(applied_before),
        "{status}"
    );
    assert_eq!(status["conflicts"], 1, "{status}");
    assert_eq!(status["recent"][0]["key"], "shared", "{status}");
    assert_eq!(status["recent"][0]["local_value"], "\"from C\"", "{status}");
}

#[test]
fn two_hosts_racing_on_one_key_end_with_one_value_everywhere_and_the_loser_reported() {
    let cluster = NatsCluster::start();
    let hosts = three_hosts(&cluster);
    hosts[0].store().set("race", &"start").expect("write on A");
    for host in &hosts {
        host.wait_value("race", Some(&json!("start")));
    }
    // Both bridges are paused while each host writes the key, so both push
    // against the same last revision: one push must be refused. They are
    // paused once idle (everything pushed and applied), so that neither is
    // frozen inside a write transaction.
    for host in &hosts {
        wait_until(&format!("host {} to be idle", host.name), || {
            let status = host.status();
            status["pending_rows"] == 0
                && status["applied_revision"] == hosts[0].status()["applied_revision"]
        });
    }
    hosts[0].bridge().pause();
    hosts[1].bridge().pause();
    hosts[0].store().set("race", &"A").expect("write on A");
    hosts[1].store().set("race", &"B").expect("write on B");
    hosts[0].bridge().resume();
    hosts[1].bridge().resume();
    let mut winner = None;
    wait_until("one value of 'race' on every host", || {
        let values: Vec<Option<Value>> = hosts.iter().map(|host| host.value("race")).collect();
        let agreed =
            values.iter().all(|value| value == &values[0]) && values[0] != Some(json!("start"));
        if agreed {
            winner = values[0].clone();
        }
        agreed
    });
    let winner = winner.expect("a winner");
    let (loser, loser_value) = if winner == json!("A") {
        (&hosts[1], "\"B\"")
    } else {
        (&hosts[0], "\"A\"")
    };
    wait_until("the loser to report the conflict", || {
        loser.status()["conflicts"] == 1
    });
    let status = loser.status();
    assert_eq!(status["recent"][0]["local_value"], loser_value, "{status}");
    // The loser's change was undone by a logged change: put back by the
    // refused push (origin `nats:<revision>:conflict`), or by the winner's
    // entry when it arrived before the loser's push went out.
    let undo_seq = status["recent"][0]["undo_seq"]
        .as_i64()
        .expect("an undo seq");
    let undo = db_scalar(
        &loser.db,
        &format!(
            "SELECT new || ' ' || origin FROM settings_log WHERE seq = {undo_seq} AND key = 'race'"
        ),
    )
    .expect("the undo row");
    assert!(
        undo.starts_with(&format!("{winner} nats:")),
        "undo row {undo}, winner {winner}"
    );
    for host in &hosts {
        if host.name != loser.name {
            assert_eq!(host.status()["conflicts"], 0, "host {}", host.name);
        }
    }
}

#[test]
fn a_three_key_commit_appears_in_one_transaction_on_every_host() {
    let cluster = NatsCluster::start();
    let hosts = three_hosts(&cluster);
    // Readers on B and C: each read is one transaction over the three keys;
    // they must never see some of them without the others.
    let readers: Vec<_> = hosts[1..]
        .iter()
        .map(|host| {
            let db = host.db.clone();
            std::thread::spawn(move || {
                let conn = rusqlite::Connection::open(&db).expect("open");
                let deadline = Instant::now() + TIMEOUT;
                let mut seen = std::collections::BTreeSet::new();
                loop {
                    let count: i64 = conn
                        .query_row(
                            "SELECT count(*) FROM settings WHERE key IN ('range.min', 'range.max', 'range.step')",
                            [],
                            |row| row.get(0),
                        )
                        .expect("read the keys");
                    seen.insert(count);
                    if count == 3 || Instant::now() > deadline {
                        return seen;
                    }
                }
            })
        })
        .collect();
    sqlite3(
        &hosts[0].db,
        "BEGIN; INSERT INTO settings (key, value) VALUES ('range.min', '1'); \
         INSERT INTO settings (key, value) VALUES ('range.max', '9'); \
         INSERT INTO settings (key, value) VALUES ('range.step', '2'); COMMIT;",
    );
    let pushed = hosts[0]
        .bridge()
        .wait_event("the commit's push", |event| event["event"] == "pushed");
    let revisions: Vec<u64> = pushed["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(revisions.len(), 3, "one push of three keys: {pushed}");
    assert!(
        revisions.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "an atomic batch is stored at consecutive revisions: {revisions:?}"
    );
    for host in &hosts[1..] {
        let applied = host
            .bridge()
            .wait_event("the commit's application", |event| {
                event["event"] == "applied"
            });
        assert_eq!(
            applied["applied"], 3,
            "one transaction of three entries: {applied}"
        );
    }
    for reader in readers {
        let seen = reader.join().expect("the reader");
        assert!(
            seen.is_subset(&[0, 3].into()),
            "partial commit seen: {seen:?}"
        );
        assert!(seen.contains(&3), "{seen:?}");
    }
}

#[test]
fn a_purged_history_forces_a_resync_that_converges() {
    let cluster = NatsCluster::start();
    let mut hosts = three_hosts(&cluster);
    let a = hosts[0].store();
    for index in 1..=4 {
        a.set(&format!("p.k{index}"), &index).expect("write on A");
    }
    for host in &hosts {
        host.wait_value("p.k4", Some(&json!(4)));
    }
    hosts[2].bridge.take().expect("C's bridge").kill();
    // C's bridge is stopped while A deletes one key, rewrites the others
    // and an operator purges the bucket's history up to the rewrites, so
    // the delete marker C needs is gone; C writes a key of its own.
    a.unset("p.k4").expect("delete on A");
    for index in 1..=3 {
        a.set(&format!("p.k{index}"), &(index * 10))
            .expect("write on A");
    }
    for host in &hosts[..2] {
        host.wait_value("p.k3", Some(&json!(30)));
    }
    cli_ok(&hosts[2].db, &["set", "p.local", "\"c\""]);
    with_jetstream(&cluster, async |js| {
        let kv = js.get_key_value(BUCKET).await.expect("the bucket");
        let first_rewrite = kv
            .entry("p.k1")
            .await
            .expect("read the bucket")
            .expect("p.k1 is in the bucket")
            .revision;
        let mut stream = js
            .get_stream(format!("KV_{BUCKET}"))
            .await
            .expect("the stream");
        stream
            .purge()
            .sequence(first_rewrite)
            .await
            .expect("purge the history");
        let info = stream.info().await.expect("the stream's info");
        assert_eq!(info.state.first_sequence, first_rewrite);
    });
    let url = cluster.url();
    let bridge = Bridge::start(&hosts[2].db, &url, &[]);
    let resynced = bridge.wait_event("the resync", |event| event["event"] == "resynced");
    assert_eq!(resynced["reason"], "history_gap", "{resynced}");
    hosts[2].bridge = Some(bridge);
    for host in &hosts {
        for index in 1..=3 {
            host.wait_value(&format!("p.k{index}"), Some(&json!(index * 10)));
        }
        host.wait_value("p.k4", None);
        host.wait_value("p.local", Some(&json!("c")));
    }
    for watcher in &mut hosts[2].watchers {
        watcher.wait_line("p.k4's removal on C", |line| {
            line["event"] == "change" && line["key"] == "p.k4" && line["new"].is_null()
        });
    }
}

#[test]
fn a_value_larger_than_the_server_takes_is_refused_and_reported_and_others_still_flow() {
    let cluster = NatsCluster::start();
    let url = cluster.url();
    let a = Host::start("A", &url);
    let b = Host::start("B", &url);
    let big = "x".repeat(nats_cluster::MAX_PAYLOAD + 10);
    a.store()
        .set("blob", &big)
        .expect("a value the store takes");
    a.store().set("small", &1).expect("write on A");
    b.wait_value("small", Some(&json!(1)));
    let refused = a
        .bridge()
        .wait_event("the refusal", |event| event["event"] == "refused");
    assert_eq!(refused["key"], "blob", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("bytes")),
        "{refused}"
    );
    let status = a.status();
    assert_eq!(status["refused"], 1, "{status}");
    assert_eq!(status["recent"][0]["kind"], "refused", "{status}");
    assert_eq!(b.value("blob"), None);
    let text = cli_ok(&a.db, &["sync", "status"]);
    assert!(text.contains("refused:          1"), "{text}");
}

#[test]
fn a_second_bridge_on_the_same_database_is_refused() {
    let cluster = NatsCluster::start();
    let url = cluster.url();
    let a = Host::start("A", &url);
    let output = cli(&a.db, &["sync", "--nats", &url, "--bucket", BUCKET]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another sync bridge"), "{stderr}");
}

#[test]
fn sync_status_of_a_file_never_synchronised_says_so() {
    let db = support::TempDb::new();
    cli_ok(&db.path, &["init"]);
    let text = cli_ok(&db.path, &["sync", "status"]);
    assert!(text.contains("not running"), "{text}");
    let output = Command::new(support::cli_path())
        .args(["--db"])
        .arg(&db.path)
        .args(["sync", "status", "--json"])
        .output()
        .expect("run sync status");
    let status: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(status["running"], false);
    assert_eq!(status["applied_revision"], 0);
}
