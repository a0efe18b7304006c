//! `status`: the consumers of a database (every store with a watcher that
//! records itself beside it), what each has applied and how far behind it
//! is; `status --wait SEQ` blocks until every live consumer applied SEQ.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livesettings::{Consumer, ConsumerState, Error, Store};
use serde_json::{Value, json};

use crate::failure::{Failure, note, out};

/// How often `--wait` looks at the records again.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// What `status` was asked.
pub struct Request {
    pub json: bool,
    pub wait: Option<i64>,
    pub timeout: Duration,
    pub expire_after: Duration,
}

/// A consumer with its lag behind the database.
struct Row {
    consumer: Consumer,
    lag_seqs: i64,
    lag_seconds: f64,
}

/// Runs `status`; `open` opens the database read-only (not needed for
/// `--wait`, which reads only the records).
pub fn run(
    path: &Path,
    request: &Request,
    open: impl FnOnce() -> Result<Store, Error>,
) -> Result<ExitCode, Failure> {
    expire(path, request.expire_after);
    match request.wait {
        Some(seq) => wait(path, seq, request),
        None => {
            let store = open()?;
            let (newest, rows) = read(&store)?;
            let overrides = store.pending_overrides()?;
            store.close()?;
            if request.json {
                let mut report = to_json(path, newest, &rows);
                report["overrides"] = Value::Array(overrides.iter().map(override_json).collect());
                out(&report.to_string())?;
            } else {
                out(&table(newest, &rows))?;
                for pending in &overrides {
                    out(&override_line(pending))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Removes the records of consumers gone for longer than `after`; one that
/// cannot be removed (no write access) is only listed as stale.
fn expire(path: &Path, after: Duration) {
    if let Err(error) = livesettings::expire_consumers(path, after) {
        log::debug!("cannot expire consumer entries: {error}");
    }
}

/// The newest seq in the log and every consumer with its lag.
fn read(store: &Store) -> Result<(i64, Vec<Row>), Error> {
    let consumers = livesettings::consumers(store.path())?;
    let path = store.path().display().to_string();
    store.query(|tx| {
        let sqlite = |context: &str| {
            let context = format!("{context} ({path})");
            move |source| Error::Sqlite { context, source }
        };
        let newest: i64 = tx
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM settings_log",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite("cannot read the change log"))?;
        let newest = newest.max(store.snapshot().seq());
        let mut rows = Vec::new();
        for consumer in consumers {
            // The age of the oldest commit the consumer has not applied.
            let lag_seconds: Option<f64> = tx
                .query_row(
                    "SELECT (julianday('now') - julianday(min(at))) * 86400.0 \
                     FROM settings_log WHERE seq > ?1",
                    [consumer.applied_seq],
                    |row| row.get(0),
                )
                .map_err(sqlite("cannot read the change log"))?;
            rows.push(Row {
                lag_seqs: (newest - consumer.applied_seq).max(0),
                lag_seconds: lag_seconds.unwrap_or(0.0).max(0.0),
                consumer,
            });
        }
        Ok((newest, rows))
    })
}

fn wait(path: &Path, seq: i64, request: &Request) -> Result<ExitCode, Failure> {
    // No deadline when the timeout is too large to add.
    let deadline = Instant::now().checked_add(request.timeout);
    loop {
        let consumers = livesettings::consumers(path)?;
        let live: Vec<&Consumer> = consumers
            .iter()
            .filter(|consumer| consumer.state == ConsumerState::Live)
            .collect();
        let lagging: Vec<&Consumer> = live
            .iter()
            .copied()
            .filter(|consumer| consumer.applied_seq < seq)
            .collect();
        if lagging.is_empty() {
            let message = if live.is_empty() {
                format!(
                    "no live consumers of {}: nothing to wait for",
                    path.display()
                )
            } else {
                format!("all {} live consumers applied seq {seq}", live.len())
            };
            if request.json {
                out(&json!({"seq": seq, "applied": true, "consumers": live.len()}).to_string())?;
            } else {
                out(&message)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            let names: Vec<String> = lagging.iter().map(|consumer| describe(consumer)).collect();
            if request.json {
                let lagging: Vec<Value> = lagging.iter().map(|c| consumer_json(c)).collect();
                out(&json!({"seq": seq, "applied": false, "lagging": lagging}).to_string())?;
            }
            note(&format!(
                "livesettings: timed out after {:.1} s waiting for seq {seq}: {} of {} live consumers lag: {}",
                request.timeout.as_secs_f64(),
                lagging.len(),
                live.len(),
                names.join("; ")
            ));
            return Ok(ExitCode::from(1));
        }
        let left = deadline.map_or(WAIT_POLL, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        std::thread::sleep(WAIT_POLL.min(left));
    }
}

fn describe(consumer: &Consumer) -> String {
    format!(
        "{} pid {} on {} ({}) at seq {}, heartbeat {:.1} s ago",
        short(&consumer.session),
        consumer.pid,
        consumer.host,
        consumer.origin,
        consumer.applied_seq,
        consumer.heartbeat_age().as_secs_f64()
    )
}

fn short(session: &str) -> &str {
    session.get(..8).unwrap_or(session)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn consumer_json(consumer: &Consumer) -> Value {
    json!({
        "session": consumer.session,
        "origin": consumer.origin,
        "pid": consumer.pid,
        "host": consumer.host,
        "applied_seq": consumer.applied_seq,
        "heartbeat_ms": unix_ms(consumer.heartbeat),
        "heartbeat_age_seconds": consumer.heartbeat_age().as_secs_f64(),
        "started_ms": unix_ms(consumer.started),
        "heartbeat_every_seconds": consumer.heartbeat_every.as_secs_f64(),
        "rejected": consumer.rejected.iter().map(|rejection| json!({
            "seq": rejection.seq,
            "keys": rejection.keys,
            "reason": rejection.reason,
        })).collect::<Vec<_>>(),
        "state": consumer.state.as_str(),
    })
}

fn to_json(path: &Path, newest: i64, rows: &[Row]) -> Value {
    let consumers: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut entry = consumer_json(&row.consumer);
            if let Some(object) = entry.as_object_mut() {
                object.insert("lag_seqs".to_owned(), json!(row.lag_seqs));
                object.insert("lag_seconds".to_owned(), json!(row.lag_seconds));
            }
            entry
        })
        .collect();
    json!({
        "db": path.display().to_string(),
        "seq": newest,
        "consumers": consumers,
    })
}

fn table(newest: i64, rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("seq {newest}; no consumers");
    }
    let header = [
        "SESSION",
        "ORIGIN",
        "PID",
        "HOST",
        "APPLIED",
        "LAG",
        "LAG(S)",
        "HEARTBEAT",
        "STATE",
        "REJECTED",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for row in rows {
        let consumer = &row.consumer;
        let rejected: Vec<String> = consumer
            .rejected
            .iter()
            .map(|rejection| rejection.keys.join(","))
            .collect();
        lines.push(vec![
            short(&consumer.session).to_owned(),
            consumer.origin.clone(),
            consumer.pid.to_string(),
            consumer.host.clone(),
            consumer.applied_seq.to_string(),
            row.lag_seqs.to_string(),
            format!("{:.1}", row.lag_seconds),
            format!("{:.1}s ago", consumer.heartbeat_age().as_secs_f64()),
            consumer.state.as_str().to_owned(),
            if rejected.is_empty() {
                "-".to_owned()
            } else {
                rejected.join(" ")
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line.get(column).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = format!("seq {newest}; {} consumers\n", rows.len());
    let rendered: Vec<String> = lines
        .iter()
        .map(|line| {
            line.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect();
    text.push_str(&rendered.join("\n"));
    text
}

/// A pending temporary override, without its values (status reads no rules
/// file, so it cannot tell a secret key; `get` and `history` show them).
fn override_json(pending: &livesettings::PendingOverride) -> Value {
    json!({
        "key": pending.key,
        "until_ms": unix_ms(pending.until),
        "by": pending.by,
    })
}

fn override_line(pending: &livesettings::PendingOverride) -> String {
    let left = pending.until.duration_since(SystemTime::now()).map_or_else(
        |_| "due now".to_owned(),
        |left| format!("in {:.0}s", left.as_secs_f64()),
    );
    format!(
        "temporary override of {} (set by {}) expires {left}",
        pending.key, pending.by
    )
}
