//! The one writer connection and its hooks (the in-process write path).
//!
//! `update_hook` only records the `settings_log` rowids the transaction
//! inserted: those rowids are the change-log seqs to read after COMMIT. The
//! hook never queries, locks a contended mutex or blocks. The log is the
//! truth and the hook only points at it: the hook is silent for rows deleted
//! by `INSERT OR REPLACE` and reports phantom rows of a rolled-back
//! savepoint, so the store reads the log rows themselves after COMMIT.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::hooks::Action;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Result, SqliteContext};
use crate::events::ReloadReason;
use crate::file_id::FileId;
use crate::schema;

/// The rowids of `settings_log` inserted by the current transaction.
type HookRecord = Arc<Mutex<Vec<i64>>>;

/// A committed write transaction.
pub(crate) struct Committed<R> {
    /// What the caller's closure returned.
    pub(crate) value: R,
    /// The inclusive range of change-log seqs this transaction wrote.
    pub(crate) local: Option<(i64, i64)>,
    /// Set when the transaction found the change-log triggers missing and
    /// recreated them: writes made meanwhile were not logged.
    pub(crate) reload: Option<ReloadReason>,
}

pub(crate) struct Writer {
    conn: Connection,
    file: FileId,
    hook_record: HookRecord,
    schema_cookie: i64,
}

impl Writer {
    /// Opens the writer connection on `path` (which must exist), applies the
    /// schema and registers the hooks.
    pub(crate) fn open(path: &Path, busy_timeout: Duration, file: FileId) -> Result<Writer> {
        let mut conn = schema::open_connection(path, busy_timeout, 1024)?;
        schema::ensure_schema(&mut conn, path)?;
        let hook_record = HookRecord::default();
        let on_update = Arc::clone(&hook_record);
        conn.update_hook(Some(
            move |action: Action, _db: &str, table: &str, rowid: i64| {
                if action == Action::SQLITE_INSERT && table == "settings_log" {
                    // Only this connection's thread runs its hooks, and only
                    // while it holds the writer: the lock is never contended.
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
        let schema_cookie = schema::schema_cookie(&conn, path)?;
        Ok(Writer {
            conn,
            file,
            hook_record,
            schema_cookie,
        })
    }

    /// The file this connection has open.
    pub(crate) fn file(&self) -> FileId {
        self.file
    }

    /// Runs `op` in one IMMEDIATE transaction, stamps the log rows it wrote
    /// with `origin` and `session`, lets `before_commit` veto them (it gets the inclusive
    /// range of seqs written), and commits.
    pub(crate) fn transact<R>(
        &mut self,
        path: &Path,
        (origin, session): (&str, &str),
        op: impl FnOnce(&Transaction<'_>) -> Result<R>,
        before_commit: impl FnOnce(&Transaction<'_>, (i64, i64)) -> Result<()>,
    ) -> Result<Committed<R>> {
        self.take_record();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(path, "cannot begin a write transaction")?;
        let mut reload = None;
        let cookie = schema::schema_cookie(&tx, path)?;
        if cookie != self.schema_cookie {
            if !schema::triggers_present(&tx, path)? {
                log::warn!(
                    "{}: change-log triggers were missing; recreated them",
                    path.display()
                );
                schema::create_triggers(&tx, path)?;
                reload = Some(ReloadReason::TriggersMissing);
                self.schema_cookie = schema::schema_cookie(&tx, path)?;
            } else {
                self.schema_cookie = cookie;
            }
        }
        let value = op(&tx).map_err(|error| error.in_database(path))?;
        let inserted = take_record(&self.hook_record);
        let mut local = None;
        if let Some(&first) = inserted.iter().min() {
            // Rows of a rolled-back savepoint were reported but their seqs
            // are reused by later inserts (or vanish): every log row from the
            // first reported seq on is this transaction's, since it holds the
            // write lock.
            let stamped = tx
                .prepare_cached("UPDATE settings_log SET origin = ?1, session = ?2 WHERE seq >= ?3")
                .and_then(|mut statement| statement.execute((origin, session, first)))
                .context(path, "cannot stamp the change log")?;
            if stamped > 0 {
                let range = (first, first + stamped as i64 - 1);
                before_commit(&tx, range)?;
                local = Some(range);
            }
        }
        tx.commit().context(path, "cannot commit")?;
        self.take_record();
        Ok(Committed {
            value,
            local,
            reload,
        })
    }

    /// A random 64-bit id in hex, from SQLite's generator.
    pub(crate) fn random_id(&self, path: &Path) -> Result<String> {
        self.conn
            .query_row("SELECT lower(hex(randomblob(8)))", [], |row| row.get(0))
            .context(path, "cannot draw a random id")
    }

    /// Closes the connection, logging (not failing on) an error.
    pub(crate) fn close(self) {
        if let Err((_, error)) = self.conn.close() {
            log::warn!("closing the writer connection failed: {error}");
        }
    }

    fn take_record(&self) -> Vec<i64> {
        take_record(&self.hook_record)
    }
}

fn take_record(record: &HookRecord) -> Vec<i64> {
    std::mem::take(&mut *record.lock().unwrap_or_else(PoisonError::into_inner))
}
