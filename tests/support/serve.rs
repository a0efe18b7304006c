//! Helpers for the `serve` tests: the real `livesettings serve` binary as a
//! child process on an ephemeral loopback port (its ready line says which),
//! a minimal HTTP/1.1 client over `TcpStream` (so that tests can send what
//! a real client would not: a wrong Host, a huge body, raw bytes), and a
//! Server-Sent Events reader. Every wait has a deadline.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for something that should take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `livesettings serve`.
pub struct Served {
    child: Child,
    pub address: SocketAddr,
    pub token: String,
    pub url: String,
    pub token_file: PathBuf,
}

impl Served {
    /// Starts `livesettings --db DB serve --listen 127.0.0.1:0 ARGS…` and
    /// waits for its ready line.
    pub fn start(db: &Path, args: &[&str]) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_livesettings"));
        command
            .arg("--db")
            .arg(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        Served::spawn(command)
    }

    pub fn spawn(mut command: Command) -> Served {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start livesettings serve");
        let stdout = child.stdout.take().expect("serve's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = sender.send(first);
            for _ in lines {}
        });
        let line = match receiver.recv_timeout(TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!("serve printed no ready line ({other:?}); exit: {status:?}");
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let address: SocketAddr = ready["address"]
            .as_str()
            .and_then(|text| text.parse().ok())
            .expect("the ready line has the address");
        let url = ready["url"].as_str().expect("url").to_owned();
        let token_file = PathBuf::from(ready["token_file"].as_str().expect("token_file"));
        let token = std::fs::read_to_string(&token_file)
            .expect("read the token file")
            .trim()
            .to_owned();
        Served {
            child,
            address,
            token,
            url,
            token_file,
        }
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn auth(&self) -> (String, String) {
        ("Authorization".to_owned(), format!("Bearer {}", self.token))
    }

    /// A request with the token and the right Host.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_with(method, path, &[], body)
    }

    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let (name, value) = self.auth();
        let mut all: Vec<(&str, &str)> = vec![(name.as_str(), value.as_str())];
        all.extend_from_slice(headers);
        request(self.address, method, path, &all, body.map(str::as_bytes))
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it
    /// exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return false,
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The seq in the ETag.
    pub fn etag_seq(&self) -> i64 {
        self.header("etag")
            .and_then(|tag| tag.trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("no seq ETag in {:?}", self.headers))
    }
}

/// One request with `Connection: close`; `Host` is the address unless a
/// header sets it.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = TcpStream::connect(address).expect("connect to serve");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the request");
    if let Some(body) = body {
        // The server may answer (413) and close before reading it all.
        let _ = stream.write_all(body);
    }
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend_from_slice(&chunk);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (status, headers)
}

/// One chunk of a chunked body; `None` at the end.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One Server-Sent Event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("the event's data is JSON")
    }
}

/// An open event stream.
pub struct SseStream {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl SseStream {
    /// `GET path` with the token header and `extra` headers.
    pub fn open(served: &Served, path: &str, extra: &[(&str, &str)]) -> SseStream {
        let (name, value) = served.auth();
        let mut headers = vec![(name.as_str(), value.as_str())];
        headers.extend_from_slice(extra);
        SseStream::open_raw(served.address, path, &headers)
    }

    pub fn open_raw(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
        let stream = TcpStream::connect(address).expect("connect to serve");
        SseStream::on(stream, address, path, headers)
    }

    /// As [`SseStream::open`] on a socket whose receive buffer is a few
    /// kilobytes: a client that stops reading then holds up the server's
    /// sends after little data, as a slow client on a real network does.
    pub fn open_small(served: &Served, path: &str) -> SseStream {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
        };
        use std::os::fd::AsRawFd;
        let SocketAddr::V4(v4) = served.address else {
            panic!("serve listens on IPv4 loopback in the tests");
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("a socket");
        setsockopt(&fd, sockopt::RcvBuf, &4096).expect("a small receive buffer");
        connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).expect("connect to serve");
        let (name, value) = served.auth();
        SseStream::on(
            TcpStream::from(fd),
            served.address,
            path,
            &[(&name, &value)],
        )
    }

    fn on(
        mut stream: TcpStream,
        address: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> SseStream {
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send the request");
        stream
            .set_read_timeout(Some(TIMEOUT))
            .expect("read timeout");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        SseStream {
            reader,
            pending: Vec::new(),
            status,
            headers,
        }
    }

    /// The next event (comments skipped), waiting at most `TIMEOUT`.
    pub fn next(&mut self) -> Sse {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no event within {TIMEOUT:?}"))
    }

    /// The next event, or `None` when none came within `wait` (or the
    /// stream ended).
    pub fn next_within(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_pending() {
                return Some(event);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// The next `commit` event (skipping other kinds).
    pub fn next_commit(&mut self) -> Sse {
        loop {
            let event = self.next();
            if event.event == "commit" {
                return event;
            }
        }
    }

    fn parse_pending(&mut self) -> Option<Sse> {
        loop {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            let end = text.find("\n\n")?;
            let block = text[..end].to_owned();
            self.pending.drain(..end + 2);
            let mut event = Sse {
                event: "message".to_owned(),
                ..Sse::default()
            };
            let mut any = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                    }
                    _ => continue,
                }
                any = true;
            }
            if any {
                return Some(event);
            }
        }
    }
}
