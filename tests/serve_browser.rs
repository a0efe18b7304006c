//! The web console in a real browser: headless Chromium driven through
//! chromedriver (fantoccini), against the real `livesettings serve` on an
//! ephemeral loopback port. It edits a value (read back through a fresh
//! connection), sees a refused value's rule beside the field, sees an
//! external `sqlite3` UPDATE arrive without a reload, and saves
//! screenshots at 1280×800 and at phone width under the target folder.
//!
//! Needs `chromium` and `chromium-driver` (Debian); `.ci/run` installs
//! them. Without them the test fails, saying so: it never skips.

#[path = "support/serve.rs"]
mod serve;
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use serve::Served;
use support::{TempDb, db_value, sqlite3};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install it with `apt-get install -y {package}` (.ci/run does); \
                 the browser test does not skip"
            );
        }
        // A free port: bind port 0, read it, release it for chromedriver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = sender.send(());
                }
            }
        });
        receiver
            .recv_timeout(serve::TIMEOUT)
            .expect("chromedriver reported it started");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session through chromedriver")
}

/// Polls `check` (every 50 ms, a poll interval, not a wait) until it holds
/// or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + serve::TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(key: &str) -> String {
    format!(".row[data-key=\"{key}\"]")
}

async fn value_in_page(client: &Client, key: &str) -> Option<String> {
    let input = client
        .find(Locator::Css(&format!("{} input.value", row(key))))
        .await
        .ok()?;
    input.prop("value").await.ok().flatten()
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_edits_a_value_and_shows_an_external_sqlite3_update_live() {
    let db = TempDb::new();
    let rules = db.sibling("rules.json");
    std::fs::write(
        &rules,
        r#"{"rules": [{"keys": "visualisation.graphs.*.physics.damping", "type": "number", "minimum": 0, "maximum": 1}]}"#,
    )
    .expect("write the rules");
    let fixture = support::fixture_path().display().to_string();
    let seeded = support::cli(&db.path, &["init", "--defaults", &fixture]);
    assert!(seeded.status.success(), "{seeded:?}");
    let rules_arg = rules.display().to_string();
    let served = Served::start(&db.path, &["--schema", &rules_arg]);
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("a fresh chromium profile");
    let client = browser(&driver, profile.path()).await;
    client
        .set_window_size(1280, 800)
        .await
        .expect("window size");

    client.goto(&served.url).await.expect("open the console");
    let damping = "visualisation.graphs.logseq.physics.damping";
    client
        .wait()
        .at_most(serve::TIMEOUT)
        .for_element(Locator::Css(&row(damping)))
        .await
        .expect("the settings tree is shown");
    eventually("the stream is live", || async {
        let pill = client.find(Locator::Id("connection")).await;
        match pill {
            Ok(pill) => pill.text().await.is_ok_and(|text| text == "live"),
            Err(_) => false,
        }
    })
    .await;
    let url = client.current_url().await.expect("the url");
    assert!(
        !url.as_str().contains("token"),
        "the token left the address bar: {url}"
    );

    // Edit a value: Enter saves it; a fresh connection reads it.
    let input = client
        .find(Locator::Css(&format!("{} input.value", row(damping))))
        .await
        .expect("the damping field");
    input.clear().await.expect("clear");
    input
        .send_keys("0.25\u{E007}")
        .await
        .expect("type and press Enter");
    eventually("the edit is in the database", || async {
        db_value(&db.path, damping) == Some(json!(0.25))
    })
    .await;

    // A value the rule refuses: the rule is shown beside the field, and
    // nothing is written.
    input.clear().await.expect("clear");
    input
        .send_keys("7\u{E007}")
        .await
        .expect("type and press Enter");
    eventually("the refusal is shown beside the field", || async {
        match client
            .find(Locator::Css(&format!("{} .error", row(damping))))
            .await
        {
            Ok(error) => error
                .text()
                .await
                .is_ok_and(|text| text.contains("maximum")),
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(db_value(&db.path, damping), Some(json!(0.25)));

    // An operator's UPDATE with the sqlite3 shell appears without a reload.
    let gravity = "visualisation.graphs.logseq.physics.gravity";
    let marker = client
        .execute("window.__no_reload = 'still here'; return true;", vec![])
        .await
        .expect("mark the page");
    assert_eq!(marker, json!(true));
    sqlite3(
        &db.path,
        &format!("UPDATE settings SET value = '0.123' WHERE key = '{gravity}';"),
    );
    eventually("the external update is in the page", || async {
        value_in_page(&client, gravity).await.as_deref() == Some("0.123")
    })
    .await;
    let same_page = client
        .execute("return window.__no_reload === 'still here';", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_page, json!(true), "the page was not reloaded");
    let highlighted = client
        .find(Locator::Css(&row(gravity)))
        .await
        .expect("the gravity row")
        .attr("class")
        .await
        .expect("its class");
    assert!(
        highlighted.is_some_and(|class| class.contains("changed")),
        "the change is highlighted"
    );

    // The history panel of the key, with its revert buttons.
    client
        .find(Locator::Css(&format!("{} .show-history", row(damping))))
        .await
        .expect("the history button")
        .click()
        .await
        .expect("open the history");
    eventually("the history lists the edit", || async {
        client
            .find_all(Locator::Css("#history-list li button.revert"))
            .await
            .is_ok_and(|buttons| !buttons.is_empty())
    })
    .await;

    let wide = screenshot_path("serve-console-1280x800.png");
    std::fs::write(&wide, client.screenshot().await.expect("a screenshot")).expect("save it");
    client.set_window_size(390, 844).await.expect("phone size");
    client
        .find(Locator::Id("history-close"))
        .await
        .expect("the close button")
        .click()
        .await
        .expect("close the history");
    let phone = screenshot_path("serve-console-phone.png");
    std::fs::write(&phone, client.screenshot().await.expect("a screenshot")).expect("save it");
    eprintln!("screenshots: {} {}", wide.display(), phone.display());
    client.close().await.expect("close the browser");
}
