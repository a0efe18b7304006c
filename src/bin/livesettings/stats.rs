//! `stats`: what the database holds (not this process's counters, which are
//! all zero in a command that has just opened the store).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use livesettings::{Error, Store};
use serde_json::{Value, json};

/// The database's figures.
pub struct DbStats {
    path: PathBuf,
    /// Settings in the snapshot.
    keys: usize,
    /// The newest log position (the snapshot's, if the log was pruned empty).
    seq: i64,
    log_rows: i64,
    /// The oldest seq still in the log; `None` when it is empty.
    oldest_seq: Option<i64>,
    db_bytes: u64,
    wal_bytes: u64,
    schema_version: Option<u32>,
    /// The permission bits of the database file.
    mode: u32,
}

/// Reads the figures: keys and seq from the store, the change log's extent
/// and the schema version in one read transaction of the store, sizes and mode from
/// the file system.
pub fn read(store: &Store) -> Result<DbStats, Error> {
    let path = store.path().to_owned();
    let snapshot = store.snapshot();
    let newest_logged = store
        .section_history("", 1)?
        .last()
        .map_or(0, |entry| entry.seq);
    let (log_rows, oldest_seq, schema_version) = read_log_extent(store)?;
    let metadata = std::fs::metadata(&path).map_err(|source| Error::Io {
        context: format!("cannot read the metadata of {}", path.display()),
        source,
    })?;
    let wal_bytes = std::fs::metadata(side_file(&path, "-wal")).map_or(0, |wal| wal.len());
    Ok(DbStats {
        keys: snapshot.len(),
        seq: newest_logged.max(snapshot.seq()),
        log_rows,
        oldest_seq,
        db_bytes: metadata.len(),
        wal_bytes,
        schema_version,
        mode: metadata.permissions().mode() & 0o7777,
        path,
    })
}

/// The change log's row count and oldest seq, and the stored schema version,
/// read in one transaction on the store's own read connection (a second
/// connection could create `-wal`/`-shm` that a read-only store avoids).
fn read_log_extent(store: &Store) -> Result<(i64, Option<i64>, Option<u32>), Error> {
    store.query(|tx| {
        let sqlite = |context: &str| {
            let context = format!("{context} ({})", store.path().display());
            move |source| Error::Sqlite { context, source }
        };
        let (rows, oldest): (i64, Option<i64>) = tx
            .query_row("SELECT count(*), min(seq) FROM settings_log", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sqlite("cannot read the change log"))?;
        let version: Option<String> = tx
            .query_row(
                "SELECT max(value) FROM livesettings_meta WHERE name = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .map_err(sqlite("cannot read the schema version"))?;
        let version = version.and_then(|text| text.trim().parse().ok());
        Ok((rows, oldest, version))
    })
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

impl DbStats {
    fn mode_text(&self) -> String {
        format!("{:04o}", self.mode)
    }

    /// One JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "keys": self.keys,
            "seq": self.seq,
            "log_rows": self.log_rows,
            "oldest_seq": self.oldest_seq,
            "size_bytes": self.db_bytes + self.wal_bytes,
            "db_bytes": self.db_bytes,
            "wal_bytes": self.wal_bytes,
            "schema_version": self.schema_version,
            "mode": self.mode_text(),
        })
    }

    /// A two-column table for people.
    pub fn table(&self) -> String {
        let none = || "-".to_owned();
        let rows = [
            ("path", self.path.display().to_string()),
            ("keys", self.keys.to_string()),
            ("seq", self.seq.to_string()),
            ("log rows", self.log_rows.to_string()),
            (
                "oldest seq",
                self.oldest_seq.map_or_else(none, |seq| seq.to_string()),
            ),
            (
                "size",
                format!(
                    "{} bytes (database {}, WAL {})",
                    self.db_bytes + self.wal_bytes,
                    self.db_bytes,
                    self.wal_bytes
                ),
            ),
            (
                "schema version",
                self.schema_version
                    .map_or_else(none, |version| version.to_string()),
            ),
            ("mode", self.mode_text()),
        ];
        rows.iter()
            .map(|(name, value)| format!("{name:<15}{value}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
