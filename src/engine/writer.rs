//! The one writer connection and its hooks (the in-process write path).
//!
//! `update_hook` only records the `settings_log` rowids the transaction
//! inserted: they point at the change-log rows to read before COMMIT. The
//! hook never queries, locks a contended mutex or blocks. The log is the
//! truth and the hook only points at it: the hook is silent for rows deleted
//! by `INSERT OR REPLACE` and reports phantom rows of a rolled-back
//! savepoint, so the store reads the log rows themselves.
//!
//! An authorizer refuses `BEGIN`, `COMMIT` and `ROLLBACK` while a caller's
//! closure runs inside [`Store::write`](crate::Store::write): the store owns
//! the transaction's end (savepoints are fine).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::hooks::{Action, AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::{Connection, Transaction};

use crate::db::Access;
use crate::db::change_log::{LogRow, log_row};
use crate::db::identify::{EMPTY_FILE, Found, identify};
use crate::db::schema;
use crate::error::{Error, Result, SqliteContext};
use crate::events::ReloadReason;
use crate::options::Durability;

/// The rowids of `settings_log` inserted by the current transaction.
type HookRecord = Arc<Mutex<Vec<i64>>>;

pub(crate) struct Writer {
    conn: Connection,
    hook_record: HookRecord,
    /// Set while a caller's closure runs: the authorizer then refuses
    /// statements that would end the store's transaction.
    in_user_code: Arc<AtomicBool>,
    schema_cookie: i64,
}

impl Writer {
    /// Opens the writer connection on `path` (which must exist), applies the
    /// schema and registers the hooks. A file with another application's
    /// tables is refused before anything is written (even the switch to
    /// WAL) unless `adopt`. With a read-only `access`, nothing is set up:
    /// the file must already be a livesettings database of this schema
    /// version or an older one without pending migrations, and the store
    /// never writes through this connection.
    pub(crate) fn open(
        path: &Path,
        busy_timeout: Duration,
        durability: Durability,
        access: Access,
        adopt: bool,
    ) -> Result<Writer> {
        let mut conn = crate::db::open_with_access(path, busy_timeout, 1024, access)?;
        let found = identify(&conn, path)?;
        if access == Access::ReadWrite {
            if let Found::Foreign { reason } = found {
                if !adopt {
                    return Err(Error::NotLivesettings {
                        path: path.to_owned(),
                        reason,
                    });
                }
                log::warn!(
                    "{}: adopting a foreign SQLite database (adding the livesettings tables)",
                    path.display()
                );
            }
            crate::db::switch_to_wal(&conn, path)?;
            if durability == Durability::Full {
                // Only the writer commits: the read connection needs no syncing.
                conn.pragma_update(None, "synchronous", "FULL")
                    .context(path, "cannot set synchronous=FULL")?;
            }
            schema::ensure_schema(&mut conn, path)?;
        } else {
            check_readable_schema(&conn, path, found)?;
        }
        let hook_record = HookRecord::default();
        let on_update = Arc::clone(&hook_record);
        conn.update_hook(Some(
            move |action: Action, _db: &str, table: &str, rowid: i64| {
                if action == Action::SQLITE_INSERT && table == "settings_log" {
                    // Only this connection's thread runs its hooks, and only
                    // while it holds the engine: the lock is never contended.
                    on_update
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(rowid);
                }
            },
        ))
        .context(path, "cannot register the update hook")?;
        let on_rollback = Arc::clone(&hook_record);
        conn.rollback_hook(Some(move || {
            on_rollback
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }))
        .context(path, "cannot register the rollback hook")?;
        let in_user_code = Arc::new(AtomicBool::new(false));
        let guarded = Arc::clone(&in_user_code);
        conn.authorizer(Some(move |context: AuthContext<'_>| {
            let ends_transaction = matches!(
                context.action,
                AuthAction::Transaction {
                    operation: TransactionOperation::Begin
                        | TransactionOperation::Rollback
                        | TransactionOperation::Unknown
                }
            );
            if ends_transaction && guarded.load(Ordering::Relaxed) {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }))
        .context(path, "cannot register the authorizer")?;
        let schema_cookie = schema::schema_cookie(&conn, path)?;
        Ok(Writer {
            conn,
            hook_record,
            in_user_code,
            schema_cookie,
        })
    }

    /// The connection, for queries outside a write.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Checks the schema cookie inside the transaction: when the triggers
    /// are missing, recreates them and asks for a full reload (writes made
    /// meanwhile were not logged).
    pub(crate) fn check_schema(
        cookie: &mut i64,
        tx: &Transaction<'_>,
        path: &Path,
    ) -> Result<Option<ReloadReason>> {
        let now = schema::schema_cookie(tx, path)?;
        if now == *cookie {
            return Ok(None);
        }
        let reason = if schema::triggers_present(tx, path)? {
            ReloadReason::SchemaChanged
        } else {
            log::warn!(
                "{}: change-log triggers were missing; recreated them",
                path.display()
            );
            schema::create_triggers(tx, path)?;
            ReloadReason::TriggersMissing
        };
        *cookie = schema::schema_cookie(tx, path)?;
        Ok(Some(reason))
    }

    /// The parts a write needs at once: the connection (for the
    /// transaction), the schema cookie, and the closure guard.
    pub(crate) fn parts(&mut self) -> (&mut Connection, &mut i64, UserCode, HookRecord) {
        take_record(&self.hook_record);
        (
            &mut self.conn,
            &mut self.schema_cookie,
            UserCode(Arc::clone(&self.in_user_code)),
            Arc::clone(&self.hook_record),
        )
    }

    /// Closes the connection, logging (not failing on) an error.
    pub(crate) fn close(self) {
        if let Err((_, error)) = self.conn.close() {
            log::warn!("closing the writer connection failed: {error}");
        }
    }
}

/// What a read-only store can read: a livesettings database whose schema
/// needs no migration (a read-only store cannot run one).
fn check_readable_schema(conn: &Connection, path: &Path, found: Found) -> Result<()> {
    let not_ours = |reason: String| {
        Err(Error::NotLivesettings {
            path: path.to_owned(),
            reason,
        })
    };
    match found {
        Found::Foreign { reason } => return not_ours(reason),
        Found::Blank => return not_ours(EMPTY_FILE.to_owned()),
        Found::Livesettings => {}
    }
    let unusable = |reason: String| {
        Err(Error::Unusable {
            path: path.to_owned(),
            reason,
        })
    };
    match schema::stored_version(conn, path)? {
        Some(version) if version > schema::SCHEMA_VERSION => unusable(format!(
            "schema version {version} is newer than this livesettings ({})",
            schema::SCHEMA_VERSION
        )),
        Some(version) if version == schema::SCHEMA_VERSION => Ok(()),
        other => unusable(format!(
            "schema version {} needs migrating to {}, which a read-only store cannot do \
             (open it once with write access); nothing was written",
            other.map_or_else(|| "unknown".to_owned(), |v| v.to_string()),
            schema::SCHEMA_VERSION
        )),
    }
}

/// Runs a caller's closure with the transaction-ending statements refused.
pub(crate) struct UserCode(Arc<AtomicBool>);

impl UserCode {
    pub(crate) fn run<R>(&self, path: &Path, op: impl FnOnce() -> Result<R>) -> Result<R> {
        self.0.store(true, Ordering::Relaxed);
        let outcome = op();
        self.0.store(false, Ordering::Relaxed);
        outcome.map_err(|error| match error {
            Error::Sqlite { source, .. }
                if source.sqlite_error_code()
                    == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) =>
            {
                Error::InvalidSql {
                    reason:
                        "BEGIN, COMMIT and ROLLBACK are refused inside write(): the store ends the \
                             transaction (return Err to roll back; savepoints are allowed)"
                            .to_owned(),
                }
            }
            other => other.in_database(path),
        })
    }
}

/// Stamps the log rows this transaction wrote with `origin` and `session`,
/// and returns them in seq order.
pub(crate) fn stamp_own_rows(
    tx: &Transaction<'_>,
    record: &HookRecord,
    path: &Path,
    (origin, session): (&str, &str),
) -> Result<Vec<LogRow>> {
    let inserted = take_record(record);
    let Some(&first) = inserted.iter().min() else {
        return Ok(Vec::new());
    };
    // Rows of a rolled-back savepoint were reported but their seqs are
    // reused by later inserts (or vanish): every log row from the first
    // reported seq on is this transaction's, since it holds the write lock.
    let mut statement = tx
        .prepare_cached(
            "UPDATE settings_log SET origin = ?1, session = ?2 WHERE seq >= ?3 \
             RETURNING seq, key, new, session, at",
        )
        .context(path, "cannot stamp the change log")?;
    let mut rows: Vec<LogRow> = statement
        .query_map((origin, session, first), log_row)
        .and_then(|rows| rows.collect())
        .context(path, "cannot stamp the change log")?;
    // RETURNING gives no order guarantee.
    rows.sort_unstable_by_key(|row| row.seq);
    Ok(rows)
}

/// A random 64-bit id in hex, from SQLite's generator.
pub(crate) fn random_id(conn: &Connection, path: &Path) -> Result<String> {
    conn.query_row("SELECT lower(hex(randomblob(8)))", [], |row| row.get(0))
        .context(path, "cannot draw a random id")
}

fn take_record(record: &HookRecord) -> Vec<i64> {
    std::mem::take(&mut *record.lock().unwrap_or_else(PoisonError::into_inner))
}
