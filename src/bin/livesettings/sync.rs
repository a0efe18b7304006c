//! `sync`: runs the fleet bridge (one JSON event per line on stdout until
//! interrupted), and `sync status`.

use std::path::Path;
use std::process::ExitCode;

use livesettings::fleet::{self, Mode, Stopper, SyncOptions};
use serde_json::json;

use crate::args::{SyncArgs, SyncCommand};
use crate::failure::{Failure, note, out};

pub fn run(path: &Path, args: SyncArgs) -> Result<ExitCode, Failure> {
    if let Some(SyncCommand::Status { json }) = args.command {
        return status(path, json);
    }
    let (Some(url), Some(bucket)) = (args.nats, args.bucket) else {
        return Err(Failure::Missing(
            "sync needs --nats URL and --bucket NAME".to_owned(),
        ));
    };
    let mode = if args.last_writer_wins {
        Mode::LastWriterWins
    } else {
        Mode::FleetWins
    };
    let options = SyncOptions::new(url, bucket)
        .with_mode(mode)
        .with_replicas(args.replicas)
        .with_history(args.history);
    let stopper = Stopper::new();
    let on_signal = stopper.clone();
    ctrlc::set_handler(move || on_signal.stop()).map_err(|error| {
        Failure::Error(livesettings::Error::Io {
            context: "cannot install the Ctrl-C handler".to_owned(),
            source: std::io::Error::other(error),
        })
    })?;
    let mut printed = Ok(());
    let outcome = fleet::run(path, options, stopper.clone(), |event| {
        let line = serde_json::to_string(event).unwrap_or_default();
        if printed.is_ok() {
            printed = out(&line);
            if printed.is_err() {
                // Nobody reads the events any more: stop cleanly.
                stopper.stop();
            }
        }
    });
    match outcome {
        Ok(()) => printed.map(|()| ExitCode::SUCCESS),
        Err(error) => {
            note(&format!("livesettings: sync: {error}"));
            Ok(ExitCode::from(2))
        }
    }
}

fn status(path: &Path, as_json: bool) -> Result<ExitCode, Failure> {
    if !path.exists() {
        return Err(Failure::Missing(format!(
            "no database at {}",
            path.display()
        )));
    }
    let status = match fleet::status(path) {
        Ok(status) => status,
        Err(error) => {
            note(&format!("livesettings: sync status: {error}"));
            return Ok(ExitCode::from(2));
        }
    };
    if as_json {
        out(&json!(status).to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = match (status.running, status.connected) {
        (false, _) => "not running",
        (true, false) => "running, not connected",
        (true, true) => "running, connected",
    };
    out(&format!(
        "bridge:           {state}\nbucket:           {}\napplied revision: {}\npending rows:     {}\nconflicts:        {}\nrefused:          {}",
        status.bucket.as_deref().unwrap_or("-"),
        status.applied_revision,
        status.pending_rows,
        status.conflicts,
        status.refused
    ))?;
    if let Some(error) = status
        .bridge
        .as_ref()
        .and_then(|bridge| bridge.last_error.as_deref())
    {
        out(&format!("last error:       {error}"))?;
    }
    for report in &status.recent {
        out(&format!(
            "{} {} '{}': local {} (seq {}) -> fleet {} (revision {}): {}",
            report.at,
            report.kind,
            report.key,
            report.local_value.as_deref().unwrap_or("(deleted)"),
            report
                .local_seq
                .map_or_else(|| "-".to_owned(), |seq| seq.to_string()),
            report.fleet_value.as_deref().unwrap_or("(deleted)"),
            report
                .fleet_revision
                .map_or_else(|| "-".to_owned(), |revision| revision.to_string()),
            report.reason
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
