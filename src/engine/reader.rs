//! The read connection: the watcher's cheap probe (`PRAGMA data_version`)
//! and the read transactions of foreign passes, history and replays.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::db::Access;
use crate::db::schema;
use crate::error::{Result, SqliteContext};
use crate::events::ReloadReason;

pub(crate) struct Reader {
    conn: Connection,
    /// A read-only store's reader repairs nothing.
    read_only: bool,
    data_version: i64,
    schema_cookie: i64,
}

impl Reader {
    /// Opens the read connection on `path` as `access` says.
    pub(crate) fn open(path: &Path, busy_timeout: Duration, access: Access) -> Result<Reader> {
        let conn = crate::db::open_with_access(path, busy_timeout, 256, access)?;
        if access == Access::ReadWrite {
            crate::db::switch_to_wal(&conn, path)?;
        }
        let data_version = schema::data_version(&conn, path)?;
        let schema_cookie = schema::schema_cookie(&conn, path)?;
        Ok(Reader {
            conn,
            read_only: access != Access::ReadWrite,
            data_version,
            schema_cookie,
        })
    }

    /// Whether another connection committed since the last pass (our own
    /// writer is another connection: its commits count too).
    pub(crate) fn changed(&self, path: &Path) -> Result<bool> {
        Ok(schema::data_version(&self.conn, path)? != self.data_version)
    }

    /// Prepares a pass: notes the data version it covers, checks the schema
    /// cookie (recreating missing triggers in a short write transaction) and
    /// opens the read transaction. A read-only store only notes that the
    /// triggers are missing (and reloads). Returns the transaction and the reload
    /// the schema check demands, if any.
    pub(crate) fn begin_pass(
        &mut self,
        path: &Path,
    ) -> Result<(Transaction<'_>, Option<ReloadReason>)> {
        // Read before the transaction: a commit after this point raises the
        // version again and causes one more pass, never a missed one.
        self.data_version = schema::data_version(&self.conn, path)?;
        let cookie = schema::schema_cookie(&self.conn, path)?;
        let mut reload = None;
        if cookie != self.schema_cookie && self.read_only {
            let present = schema::triggers_present(&self.conn, path)?;
            if !present {
                log::warn!(
                    "{}: change-log triggers are missing (a read-only store does not recreate them)",
                    path.display()
                );
            }
            reload = Some(if present {
                ReloadReason::SchemaChanged
            } else {
                ReloadReason::TriggersMissing
            });
            self.schema_cookie = cookie;
        } else if cookie != self.schema_cookie {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context(path, "cannot begin a schema repair")?;
            if schema::triggers_present(&tx, path)? {
                reload = Some(ReloadReason::SchemaChanged);
            } else {
                log::warn!(
                    "{}: change-log triggers are missing; recreating them",
                    path.display()
                );
                schema::create_triggers(&tx, path)?;
                reload = Some(ReloadReason::TriggersMissing);
            }
            tx.commit().context(path, "cannot recreate the triggers")?;
            self.schema_cookie = schema::schema_cookie(&self.conn, path)?;
        }
        let tx = self
            .conn
            .transaction()
            .context(path, "cannot begin a read transaction")?;
        Ok((tx, reload))
    }

    /// A read transaction for queries that are not passes.
    pub(crate) fn read(&mut self, path: &Path) -> Result<Transaction<'_>> {
        self.conn
            .transaction()
            .context(path, "cannot begin a read transaction")
    }

    /// Closes the connection, logging (not failing on) an error.
    pub(crate) fn close(self) {
        if let Err((_, error)) = self.conn.close() {
            log::warn!("closing the read connection failed: {error}");
        }
    }
}
