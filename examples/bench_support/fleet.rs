//! Fleet: a write on host A → the change event in a store on host C, over a
//! 3-node NATS cluster on loopback (`tests/support/nats_cluster.rs`), each
//! host a database with its bridge (`livesettings::fleet::run` on a thread
//! of this process: the same code as `livesettings sync`). Beside it, the
//! same-host figure of the same run: a write through one store → the event
//! in another store on the same file (a foreign commit for it).
//!
//! 200 single-key writes, 20 ms apart; the delay is from the write call's
//! start to the subscriber's receipt, on one clock (`Instant`).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use livesettings::fleet::{Stopper, SyncOptions};
use livesettings::{Event, Store};

use super::{Config, Row, Samples, ns, progress};

#[path = "../../tests/support/nats_cluster.rs"]
mod nats_cluster;

const WRITES: usize = 200;
const INTERVAL: Duration = Duration::from_millis(20);

struct Host {
    db: PathBuf,
    stopper: Stopper,
    bridge: Option<JoinHandle<()>>,
}

impl Host {
    fn start(dir: &Path, name: &str, url: &str) -> Host {
        let db = dir.join(format!("{name}.db"));
        Store::open(&db).expect("create the host's database");
        let stopper = Stopper::new();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let bridge = {
            let (db, stopper, url) = (db.clone(), stopper.clone(), url.to_owned());
            std::thread::spawn(move || {
                let options = SyncOptions::new(url, "bench").with_replicas(3);
                let outcome = livesettings::fleet::run(&db, options, stopper, |event| {
                    if matches!(event, livesettings::fleet::SyncEvent::Ready { .. }) {
                        let _ = ready.send(());
                    }
                });
                if let Err(error) = outcome {
                    eprintln!("bridge failed: {error}");
                }
            })
        };
        is_ready
            .recv_timeout(Duration::from_secs(60))
            .expect("the bridge is ready");
        Host {
            db,
            stopper,
            bridge: Some(bridge),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(bridge) = self.bridge.take() {
            let _ = bridge.join();
        }
    }
}

/// Delays of `WRITES` writes through `writer` as seen by `reader`.
fn delays(writer: &Store, reader: &Store, key: &str) -> Samples {
    let events = reader.subscribe(key).expect("subscribe");
    let mut samples = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let began = Instant::now();
        writer.set(key, &i).expect("write");
        let deadline = began + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(Event::Change(change)) if change.new_value() == Some(&serde_json::json!(i)) => {
                    samples.push(began.elapsed().as_nanos() as f64);
                    break;
                }
                Ok(_) => {}
                Err(error) => panic!("write {i} of {key} never arrived: {error}"),
            }
        }
        std::thread::sleep(INTERVAL.saturating_sub(began.elapsed()));
    }
    Samples::new(samples)
}

pub fn rows(cfg: &Config, rows: &mut Vec<Row>) {
    progress("fleet: starting a 3-node NATS cluster and three hosts");
    let cluster = nats_cluster::NatsCluster::start();
    let dir = cfg.workdir.join("fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder for the hosts");
    let url = cluster.url();
    let hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| Host::start(&dir, name, &url))
        .collect();
    let writer = Store::open(&hosts[0].db).expect("a store on host A");
    let beside = Store::open(&hosts[0].db).expect("another store on host A");
    let remote = Store::open(&hosts[2].db).expect("a store on host C");
    progress("fleet: same-host writes");
    let same = delays(&writer, &beside, "bench.same");
    progress("fleet: cross-host writes");
    let cross = delays(&writer, &remote, "bench.cross");
    rows.push(
        Row::new("fleet", format!("write on host A → change event in a store on host C ({WRITES} writes, 3-node cluster, 3 replicas)"))
            .ours(ns(cross.median()), ns(cross.p99()))
            .baseline("same host: another store on A's file", ns(same.median()), ns(same.p99()))
            .ratio(format!("{:.1}× the same-host time", cross.median() / same.median()))
            .target(super::target("< 1 s to every host", cross.p99() < 1e9)),
    );
    drop((writer, beside, remote));
    drop(hosts);
}
