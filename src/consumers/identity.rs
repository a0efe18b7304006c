//! Which process wrote a record, and whether it is still there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{REMOTE_STALE_AFTER, Record};

/// The process a record belongs to. On Linux, `boot_id`, `pid_ns` and
/// `pid_start` tell a live process from a later one that reuses its pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) host: String,
    /// `/proc/sys/kernel/random/boot_id`.
    #[serde(default)]
    pub(crate) boot_id: Option<String>,
    /// The pid namespace (`/proc/self/ns/pid`), so containers sharing a
    /// host name and a folder do not judge each other's pids.
    #[serde(default)]
    pub(crate) pid_ns: Option<String>,
    /// The process's start time in clock ticks since boot
    /// (`/proc/PID/stat`, field 22).
    #[serde(default)]
    pub(crate) pid_start: Option<u64>,
}

impl Identity {
    /// This process.
    pub(crate) fn current() -> Identity {
        let pid = std::process::id();
        Identity {
            pid,
            host: host_name(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|link| link.to_string_lossy().into_owned()),
            pid_start: process_start(pid).map(|(start, _)| start),
        }
    }

    /// Whether `other` was written on this machine, in this pid namespace:
    /// its pid can be checked here.
    fn shares_pids_with(&self, other: &Identity) -> bool {
        self.host == other.host
            && self.boot_id.is_some()
            && self.boot_id == other.boot_id
            && self.pid_ns == other.pid_ns
    }
}

/// Whether the process that wrote `record` is gone, judged from `here`.
pub(crate) fn is_gone(record: &Record, here: &Identity, now: SystemTime) -> bool {
    let theirs = &record.identity;
    if here.shares_pids_with(theirs) {
        return match process_start(theirs.pid) {
            None => true,
            Some((_, zombie)) if zombie => true,
            Some((start, _)) => theirs.pid_start.is_some_and(|recorded| recorded != start),
        };
    }
    let heartbeat = UNIX_EPOCH + Duration::from_millis(record.heartbeat_ms);
    let every = Duration::from_millis(record.heartbeat_every_ms);
    now.duration_since(heartbeat)
        .is_ok_and(|age| age > REMOTE_STALE_AFTER.max(every.saturating_mul(3)))
}

/// The start time of process `pid` and whether it is a zombie (dead, not
/// yet reaped); `None` when there is no such process (or no `/proc`).
pub(crate) fn process_start(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?;
    // Field 3 is the state; the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::consumers::{CONSUMER_RECORD_VERSION, unix_ms};

    /// A record of `identity` with its heartbeat `age` ago.
    pub(crate) fn record(identity: Identity, age: Duration) -> Record {
        let at = unix_ms(SystemTime::now() - age);
        Record {
            version: CONSUMER_RECORD_VERSION,
            session: format!("s{}", identity.pid),
            origin: "test".to_owned(),
            identity,
            applied_seq: 1,
            rejected: Vec::new(),
            heartbeat_ms: at,
            started_ms: at,
            heartbeat_every_ms: 1000,
        }
    }

    /// A pid no process has (beyond the kernel's `pid_max`, 2^22).
    pub(crate) const NO_SUCH_PID: u32 = 5_000_000;

    #[test]
    fn a_record_of_this_process_is_live_even_with_an_old_heartbeat() {
        let here = Identity::current();
        let old = record(here.clone(), Duration::from_secs(3600));
        assert!(!is_gone(&old, &here, SystemTime::now()));
    }

    #[test]
    fn a_record_whose_pid_is_gone_or_reused_is_stale() {
        let here = Identity::current();
        let gone = Identity {
            pid: NO_SUCH_PID,
            ..here.clone()
        };
        assert!(is_gone(
            &record(gone, Duration::ZERO),
            &here,
            SystemTime::now()
        ));
        let reused = Identity {
            pid_start: here.pid_start.map(|start| start + 1),
            ..here.clone()
        };
        assert!(is_gone(
            &record(reused, Duration::ZERO),
            &here,
            SystemTime::now()
        ));
    }

    #[test]
    fn a_record_from_another_host_is_stale_only_once_its_heartbeat_is_old() {
        let here = Identity::current();
        let elsewhere = Identity {
            host: format!("{}-elsewhere", here.host),
            pid: NO_SUCH_PID,
            ..here.clone()
        };
        let fresh = record(elsewhere.clone(), Duration::from_secs(5));
        assert!(!is_gone(&fresh, &here, SystemTime::now()));
        let old = record(elsewhere, REMOTE_STALE_AFTER + Duration::from_secs(1));
        assert!(is_gone(&old, &here, SystemTime::now()));
    }

    #[test]
    fn this_process_has_a_start_time_and_is_not_a_zombie() {
        let (start, zombie) = process_start(std::process::id()).expect("/proc/self/stat");
        assert!(start > 0);
        assert!(!zombie);
        assert_eq!(Identity::current().pid_start, Some(start));
    }
}
