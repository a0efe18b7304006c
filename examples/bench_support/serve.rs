//! `livesettings serve` against the store's in-process subscriber, both fed
//! by the same kind of foreign commit (an `UPDATE` through a rusqlite
//! connection of this process, which neither store owns):
//!
//! - commit → event: 100 commits, one at a time, each timed from the
//!   commit's return to the moment a client has the event (an SSE client
//!   on loopback reading `id: SEQ`; an in-process commit subscriber's
//!   `recv`);
//! - fan-out: 1 000 SSE clients (1 000 in-process subscribers), one
//!   reader thread each, timed from the commit's return until the last of
//!   them has the event.
//!
//! The `serve` binary is the release build of this checkout (as for the
//! idle section). Each side opens 1 000 sockets or channels; the open-file
//! limit is raised when it is lower than that needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use livesettings::{Event, Options};
use rusqlite::Connection;

use super::idle::binary;
use super::{Config, Row, Samples, faster, ns, progress, target};
use crate::support;

const KEY: &str = "bench.serve.value";
const COMMITS: usize = 100;
const CLIENTS: usize = 1_000;

/// A running `serve` and what its ready line said.
struct Served {
    child: Child,
    address: SocketAddr,
    token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, db: &Path, backlog: usize) -> Served {
    let mut child = Command::new(binary)
        .arg("--db")
        .arg(db)
        .args(["serve", "--listen", "127.0.0.1:0", "--client-backlog"])
        .arg(backlog.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start livesettings serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("serve stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("serve's ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("a JSON ready line");
    let address = ready["address"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("the bound address");
    let token_file = ready["token_file"].as_str().expect("the token file");
    let token = std::fs::read_to_string(token_file)
        .expect("read the token")
        .trim()
        .to_owned();
    std::thread::spawn(move || for _ in stdout.lines() {});
    Served {
        child,
        address,
        token,
    }
}

/// One SSE connection, read until the stream holds `id: SEQ`.
struct Client {
    stream: TcpStream,
    seen: Vec<u8>,
}

impl Client {
    fn connect(served: &Served) -> Client {
        let mut stream = TcpStream::connect(served.address).expect("connect to serve");
        stream.set_nodelay(true).ok();
        let request = format!(
            "GET /api/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            served.address, served.token
        );
        stream.write_all(request.as_bytes()).expect("send");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut client = Client {
            stream,
            seen: Vec::new(),
        };
        client.until(b"event: snapshot");
        client
    }

    /// Reads until `needle` has arrived (then forgets what was read).
    fn until(&mut self, needle: &[u8]) {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if self
                .seen
                .windows(needle.len())
                .any(|window| window == needle)
            {
                self.seen.clear();
                return;
            }
            let read = self.stream.read(&mut buffer).expect("read the stream");
            assert!(read > 0, "the stream ended");
            self.seen.extend_from_slice(&buffer[..read]);
        }
    }

    fn until_seq(&mut self, seq: i64) {
        self.until(format!("\nid: {seq}\n").as_bytes());
    }
}

/// A foreign commit; returns its seq and when it returned.
fn commit(conn: &Connection, round: usize) -> (i64, Instant) {
    conn.execute(
        "UPDATE settings SET value = ?1 WHERE key = ?2",
        (round.to_string(), KEY),
    )
    .expect("a foreign commit");
    let done = Instant::now();
    let seq = conn
        .query_row("SELECT max(seq) FROM settings_log", [], |row| row.get(0))
        .expect("the seq");
    (seq, done)
}

fn foreign(db: &Path) -> Connection {
    let conn = Connection::open(db).expect("a foreign connection");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

fn database(cfg: &Config, name: &str) -> std::path::PathBuf {
    let folder = cfg.workdir.join(name);
    std::fs::create_dir_all(&folder).expect("bench folder");
    let db = folder.join("settings.db");
    let mut leaves = support::fixture_leaves();
    leaves.push((KEY.to_owned(), serde_json::json!(0)));
    support::build_db(&db, &leaves);
    db
}

/// Raises the soft open-file limit to what 1 000 sockets on each side
/// need, if it is lower (children inherit it).
fn raise_nofile(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < needed {
        let wanted = needed.min(hard);
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => progress(format!("raised RLIMIT_NOFILE from {soft} to {wanted}")),
            Err(error) => progress(format!("cannot raise RLIMIT_NOFILE ({error})")),
        }
    }
}

pub fn rows(cfg: &Config, rows: &mut Vec<Row>) {
    let Some(binary) = binary() else {
        progress("no livesettings binary: skipping the serve section");
        return;
    };
    raise_nofile(4 * CLIENTS as u64 + 256);
    let rounds = if cfg.quick { 5 } else { 20 };

    progress(format!("serve: {COMMITS} foreign commits → one SSE client"));
    let db = database(cfg, "serve-latency");
    let served = start(&binary, &db, 1024);
    let mut client = Client::connect(&served);
    let conn = foreign(&db);
    let mut sse = Vec::new();
    for round in 1..=COMMITS {
        let (seq, done) = commit(&conn, round);
        client.until_seq(seq);
        sse.push(done.elapsed().as_nanos() as f64);
    }
    drop(client);
    drop(served);

    progress(format!(
        "… baseline: {COMMITS} foreign commits → an in-process commit subscriber"
    ));
    let db = database(cfg, "serve-baseline");
    let store = Options::new().open(&db).expect("open the store");
    let events = store.subscribe_commits("").expect("subscribe");
    let conn = foreign(&db);
    let mut local = Vec::new();
    for round in 1..=COMMITS {
        let (seq, done) = commit(&conn, round);
        loop {
            let event = events
                .recv_timeout(Duration::from_secs(30))
                .expect("the commit event");
            if matches!(&event, Event::Commit(_)) && event.seq() >= seq {
                break;
            }
        }
        local.push(done.elapsed().as_nanos() as f64);
    }
    drop(events);
    store.close().expect("close the store");
    let (sse, local) = (Samples::new(sse), Samples::new(local));
    rows.push(
        Row::new(
            "serve",
            format!(
                "foreign commit → SSE event at a loopback client ({COMMITS} commits, one at a time, {} keys)",
                support::fixture_leaves().len() + 1
            ),
        )
        .timed(&sse, "in-process commit subscriber", &local)
        .target(target(
            "median ≤ 2 ms",
            sse.median() <= 2e6,
        )),
    );

    progress(format!("serve: {CLIENTS} SSE clients, {rounds} commits"));
    let db = database(cfg, "serve-fanout");
    let served = start(&binary, &db, 1024);
    let clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(&served)).collect();
    let conn = foreign(&db);
    let fan_sse = fan_out(rounds, &conn, clients, |client, seq| client.until_seq(seq));
    drop(served);

    progress(format!("… baseline: {CLIENTS} in-process subscribers"));
    let db = database(cfg, "serve-fanout-baseline");
    let store = Options::new().open(&db).expect("open the store");
    let subscribers: Vec<_> = (0..CLIENTS)
        .map(|_| store.subscribe_commits("").expect("subscribe"))
        .collect();
    let conn = foreign(&db);
    let fan_local = fan_out(rounds, &conn, subscribers, |events, seq| {
        loop {
            let event = events
                .recv_timeout(Duration::from_secs(30))
                .expect("the commit event");
            if matches!(&event, Event::Commit(_)) && event.seq() >= seq {
                break;
            }
        }
    });
    store.close().expect("close the store");
    rows.push(
        Row::new(
            "serve",
            format!(
                "foreign commit → the last of {CLIENTS} concurrent SSE clients on loopback has it ({rounds} commits)"
            ),
        )
        .ours(ns(fan_sse.median()), ns(fan_sse.p99()))
        .baseline(
            format!("{CLIENTS} in-process commit subscribers"),
            ns(fan_local.median()),
            ns(fan_local.p99()),
        )
        .ratio(faster(fan_sse.median(), fan_local.median()))
        .target(target("median ≤ 100 ms", fan_sse.median() <= 100e6)),
    );
}

/// `rounds` commits, each timed from its return until the last of the
/// readers (one thread each) has it.
fn fan_out<R: Send + 'static>(
    rounds: usize,
    conn: &Connection,
    readers: Vec<R>,
    read: impl Fn(&mut R, i64) + Send + Sync + Copy + 'static,
) -> Samples {
    let count = readers.len();
    let start = Arc::new(Barrier::new(count + 1));
    let end = Arc::new(Barrier::new(count + 1));
    let target = Arc::new(Mutex::new(0i64));
    let arrivals = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            let (start, end, target, arrivals) = (
                Arc::clone(&start),
                Arc::clone(&end),
                Arc::clone(&target),
                Arc::clone(&arrivals),
            );
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    for _ in 0..rounds {
                        start.wait();
                        let seq = *target.lock().expect("the target");
                        read(&mut reader, seq);
                        arrivals.lock().expect("arrivals").push(Instant::now());
                        end.wait();
                    }
                })
                .expect("a reader thread")
        })
        .collect();
    let mut samples = Vec::new();
    for round in 1..=rounds {
        // The next seq: nothing else writes these databases.
        let next: i64 = conn
            .query_row("SELECT max(seq) FROM settings_log", [], |row| row.get(0))
            .expect("the seq");
        *target.lock().expect("the target") = next + 1;
        arrivals.lock().expect("arrivals").clear();
        start.wait();
        let (seq, done) = commit(conn, round);
        assert_eq!(seq, next + 1, "an unexpected writer");
        end.wait();
        let last = arrivals
            .lock()
            .expect("arrivals")
            .iter()
            .max()
            .copied()
            .expect("every reader arrived");
        samples.push(last.saturating_duration_since(done).as_nanos() as f64);
    }
    for thread in threads {
        thread.join().expect("a reader thread");
    }
    Samples::new(samples)
}
