//! Catching up: bringing a snapshot up to the database as one transaction
//! sees it, granularly from the change log, or by a full reload and diff
//! when the log cannot be trusted (a gap, a reset, a schema change).

use std::path::Path;

use rusqlite::Connection;

use crate::db::change_log::{self, LogRow, read_log, row_print};
use crate::engine::pass::{Pass, Position, apply_rows};
use crate::engine::reload::full_reload;
use crate::error::Result;
use crate::events::ReloadReason;
use crate::snapshot::Snapshot;

/// Reads what changed after `position` as `conn` (inside a transaction)
/// sees it and applies it to `current`. `force` demands a full reload.
pub(crate) fn catch_up(
    conn: &Connection,
    path: &Path,
    current: &Snapshot,
    position: &Position,
    force: Option<ReloadReason>,
    session: &str,
) -> Result<Pass> {
    let log = change_log::position(conn, path)?;
    let mut reload = force;
    if position.loaded
        && position.schema_version.is_some()
        && position.schema_version != log.schema_version
    {
        reload.get_or_insert(ReloadReason::SchemaVersionChanged);
    }
    if reload.is_none() && log.seq < position.seq {
        reload = Some(ReloadReason::LogReset);
    }
    if reload.is_none() && position.print.is_some() {
        // A log wiped and refilled up to or past the applied position in one
        // transaction keeps its position; the row there then is not the one
        // applied. (A missing row was pruned, which is fine.)
        let found = row_print(conn, path, position.seq)?;
        if found.is_some() && found != position.print {
            reload = Some(ReloadReason::LogReset);
        }
    }
    let mut pass = match reload {
        Some(reason) => full_reload(conn, path, current, log.seq, reason, position.loaded)?,
        None if log.seq == position.seq => Pass::unchanged(current, position),
        None => {
            let rows = read_log(conn, path, position.seq)?;
            let contiguous = rows
                .iter()
                .enumerate()
                .all(|(at, row)| row.seq == position.seq + 1 + at as i64)
                && rows.last().map(|row| row.seq) == Some(log.seq);
            if contiguous {
                log::debug!(
                    "{}: applying log rows {}..={} granularly",
                    path.display(),
                    position.seq + 1,
                    log.seq
                );
                let mut pass = Pass::unchanged(current, position);
                apply_rows(&mut pass, &rows, session);
                pass.position.print = rows.last().map(LogRow::print);
                pass
            } else {
                full_reload(conn, path, current, log.seq, ReloadReason::LogGap, true)?
            }
        }
    };
    let granular = pass.reload.is_none() && position.loaded;
    if !granular {
        pass.position.print = row_print(conn, path, log.seq)?;
    }
    pass.position.seq = log.seq;
    pass.position.schema_version = log.schema_version;
    pass.position.loaded = true;
    pass.snapshot.set_seq(pass.position.seq);
    Ok(pass)
}
