//! The store: the public handle applications hold (reads, writes,
//! subscriptions); history and validation registration are beside it.

#[cfg(feature = "serve")]
pub(crate) mod commit_feed;
#[cfg(feature = "serve")]
pub(crate) mod conditional;
pub(crate) mod explain;
pub(crate) mod history;
pub(crate) mod overrides;
pub(crate) mod past;
pub(crate) mod plan;
mod validation;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::Guard;
use crossbeam_channel::Receiver;
use rusqlite::Transaction;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::db::writes;
use crate::engine::Core;
use crate::error::{Error, Result, shorten};
use crate::events::Event;
use crate::key::{validate_key, validate_prefix};
use crate::live::Live;
use crate::options::Options;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::watch::Watcher;

/// What a write committed (built by the store only: more fields may come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// The change-log position the snapshot reflects after the write (the
    /// last seq the write logged, or the current position if it changed
    /// nothing).
    pub seq: i64,
    /// How many change-log rows (key changes) the write logged.
    pub changes: usize,
}

/// Hot-reloadable settings stored in SQLite.
///
/// Reads come from an in-memory snapshot and never block. Writes go through
/// one writer connection and are in the snapshot when the call returns.
/// Commits by anyone else are noticed by a watcher thread that the store
/// owns; dropping the store (or [`Store::close`]) stops and joins it.
///
/// Share a store between threads with `Arc<Store>`.
pub struct Store {
    pub(crate) core: Arc<Core>,
    watcher: Option<Watcher>,
}

impl Store {
    /// Opens the database at `path` with the default [`Options`], creating
    /// the folders, the file and the schema when missing (an existing
    /// zero-length file is set up too: it holds nothing to lose). The path
    /// is always a file name, never a SQLite URI (`file:x.db` is a file of
    /// that name). When this process cannot write the existing file or its
    /// folder, the store opens read-only (see [`Options::read_only`]).
    ///
    /// # Errors
    /// [`Error::NotLivesettings`] when the file is another application's
    /// SQLite database (see [`Options::adopt_foreign`]),
    /// [`Error::Unusable`] when it is not SQLite, corrupt, or of a newer
    /// schema, [`Error::Busy`] when another connection holds a lock past
    /// the busy timeout, [`Error::CannotWrite`] when the file cannot be set
    /// up (read-only filesystem, immutable folder, permissions, full disk),
    /// [`Error::Io`] when the file or folders cannot be created.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let store = livesettings::Store::open(dir.path().join("settings.db"))?;
    /// store.set("physics.damping", &0.6)?;
    /// assert_eq!(store.get::<f64>("physics.damping")?, Some(0.6));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Options::new().open(path)
    }

    pub(crate) fn open_with(path: &Path, options: Options) -> Result<Store> {
        let seed = options.seed().cloned();
        let watch = options.watch();
        let core = Arc::new(Core::open(path, options)?);
        let mut store = Store {
            core,
            watcher: None,
        };
        // A read-only store writes nothing, so it applies neither.
        let read_only = store.is_read_only();
        if let Some(seed) = seed.filter(|_| !read_only) {
            store.seed(&seed)?;
        }
        // Temporary overrides that expired while no store ran.
        if read_only {
            store.core.serve_expired_overrides()?;
        } else {
            let restored = store.core.restore_due_overrides()?;
            if restored > 0 {
                log::info!("restored {restored} expired temporary overrides");
            }
        }
        if let Some(retention) = store.core.options.retention().filter(|_| !read_only) {
            store.prune(retention)?;
        }
        store.watcher = Watcher::start(Arc::clone(&store.core), watch)?;
        Ok(store)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.core.path
    }

    /// Whether the store never writes: opened with
    /// [`Options::read_only`], or switched to read-only at open (see
    /// [`Store::read_only_cause`]). Its writes return [`Error::ReadOnly`] or
    /// [`Error::CannotWrite`].
    pub fn is_read_only(&self) -> bool {
        self.core.options.is_read_only()
    }

    /// Why the store opened read-only by itself, when it did: this process
    /// cannot write the database file or its folder (permissions, a
    /// read-only filesystem, an immutable folder). `None` for a store that
    /// writes or one opened with [`Options::read_only`].
    pub fn read_only_cause(&self) -> Option<&str> {
        self.core.read_only_cause.as_deref()
    }

    /// The current snapshot, as an owned `Arc`.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.core.view().load_full()
    }

    /// The current snapshot, as a cheap guard for a short unit of work
    /// (no reference count is touched; do not hold it long).
    pub fn snapshot_guard(&self) -> Guard<Arc<Snapshot>> {
        self.core.view().load()
    }

    /// The value at `key`, deserialized; `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`Error::Decode`] when the value does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.core.view().load().get(key)
    }

    /// The JSON value at `key`.
    pub fn get_json(&self, key: &str) -> Option<Value> {
        self.core.view().load().get_json(key).cloned()
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: &str) -> bool {
        self.core.view().load().contains(key)
    }

    /// The keys at or below `prefix` (all keys for `""`), in order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.core
            .snapshot
            .load()
            .keys(prefix)
            .map(str::to_owned)
            .collect()
    }

    /// The value at `prefix` if it is a key, else the section below it as
    /// nested JSON, else `None`. See [`Snapshot::subtree`].
    ///
    /// # Errors
    /// [`Error::Conflict`] when a key is both a value and a section.
    pub fn subtree(&self, prefix: &str) -> Result<Option<Value>> {
        self.core.view().load().subtree(prefix)
    }

    /// Deserializes the section under `prefix` into `T`. For a section read
    /// in a hot loop, use [`Store::live`].
    ///
    /// # Errors
    /// [`Error::Decode`] when the section does not fit `T`.
    pub fn section<T: DeserializeOwned>(&self, prefix: &str) -> Result<T> {
        self.core.view().load().section(prefix)
    }

    /// A typed handle on the section under `prefix`, rebuilt only when a key
    /// under it changes.
    ///
    /// # Errors
    /// [`Error::Decode`] when the section does not fit `T` now.
    pub fn live<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        prefix: &str,
    ) -> Result<Live<T>> {
        validate_prefix(prefix)?;
        // Under the applier lock no pass can swap the snapshot between the
        // first build and the registration (and so be missed by the handle).
        let core = &self.core;
        core.exclusive("live", || {
            core.lives.register::<T>(prefix, &core.view().load())
        })
    }

    /// Sets `key` to `value` (any `Serialize`; objects are sections, so use
    /// [`Store::merge`] for them).
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::InvalidValue`] (too large, too deep;
    /// an object replaces the section below `key`, as
    /// [`Store::set_section`]), [`Error::Conflict`] when the key is a section
    /// or lies under a key that holds a value, [`Error::Busy`], [`Error::DatabaseMissing`].
    /// Nothing is written on error.
    pub fn set<V: Serialize + ?Sized>(&self, key: &str, value: &V) -> Result<Commit> {
        validate_key(key)?;
        let value = serde_json::to_value(value).map_err(|error| Error::InvalidValue {
            key: shorten(key),
            reason: error.to_string(),
        })?;
        if value.is_object() {
            // A struct or map is the whole section below `key`.
            return self.write_section(key, &value);
        }
        let text = crate::value::to_stored_text(key, &value)?;
        self.commit("set", |tx, snapshot| {
            writes::check_placement(snapshot, std::iter::once(key))?;
            writes::upsert(tx, key, &text)
        })
    }

    /// Replaces the section under `prefix` with `value` (typically a
    /// struct) in one transaction: its fields become the keys below
    /// `prefix`, and keys below `prefix` it does not have are removed. A
    /// value that is not an object sets the key `prefix` itself.
    /// [`Store::set`] of an object does the same.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `value` does not serialize, [`Error::Conflict`]
    /// when a key above `prefix` holds a value, plus those of [`Store::set`].
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Server { port: u16, host: String }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("server.legacy", &true)?;
    /// store.set_section("server", &Server { port: 80, host: "a".into() })?;
    /// assert_eq!(store.keys("server"), ["server.host", "server.port"]);
    /// assert_eq!(store.section::<Server>("server")?.port, 80);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_section<V: Serialize + ?Sized>(&self, prefix: &str, value: &V) -> Result<Commit> {
        validate_key(prefix)?;
        let value = serde_json::to_value(value).map_err(|error| Error::InvalidValue {
            key: shorten(prefix),
            reason: error.to_string(),
        })?;
        self.write_section(prefix, &value)
    }

    fn write_section(&self, prefix: &str, value: &Value) -> Result<Commit> {
        let leaves: Vec<(String, String)> = if value.is_object() {
            crate::value::flatten(prefix, value)?
                .into_iter()
                .map(|(key, value)| Ok((key.clone(), crate::value::to_stored_text(&key, &value)?)))
                .collect::<Result<_>>()?
        } else {
            vec![(
                prefix.to_owned(),
                crate::value::to_stored_text(prefix, value)?,
            )]
        };
        self.commit("set_section", |tx, snapshot| {
            if let Some(holder) =
                crate::key::ancestors(prefix).find(|above| snapshot.contains(above))
            {
                return Err(Error::Conflict {
                    key: prefix.to_owned(),
                    reason: format!("'{holder}' holds a value, so it cannot have keys below it"),
                });
            }
            // Removals first, so the tree is a tree after every statement.
            let kept: std::collections::HashSet<&str> =
                leaves.iter().map(|(key, _)| key.as_str()).collect();
            for key in snapshot.keys(prefix) {
                if !kept.contains(key) {
                    writes::delete_key(tx, key)?;
                }
            }
            for (key, text) in &leaves {
                writes::upsert(tx, key, text)?;
            }
            Ok(())
        })
    }

    /// Removes `key`; removing an absent key is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::Busy`], [`Error::DatabaseMissing`].
    pub fn unset(&self, key: &str) -> Result<Commit> {
        validate_key(key)?;
        self.commit("unset", |tx, _| writes::delete_key(tx, key))
    }

    /// Removes `prefix` and every key below it (everything for `""`).
    ///
    /// # Errors
    /// As [`Store::unset`].
    pub fn unset_section(&self, prefix: &str) -> Result<Commit> {
        validate_prefix(prefix)?;
        self.commit("unset_section", |tx, _| writes::delete_prefix(tx, prefix))
    }

    /// Writes every leaf of a nested JSON object in one transaction (the
    /// "update part of the settings tree" call). Arrays are leaves; keys not
    /// in the document are left alone.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `tree` is not an object, plus the errors
    /// of [`Store::set`]. Nothing is written on error.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.merge(&serde_json::json!({"physics": {"damping": 0.6, "iterations": 100}}))?;
    /// assert_eq!(store.keys("physics"), ["physics.damping", "physics.iterations"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn merge<T: Serialize + 'static>(&self, tree: &T) -> Result<Commit> {
        let leaves = writes::stored_leaves(to_tree(tree)?.as_ref())?;
        self.commit("merge", |tx, snapshot| {
            writes::check_placement(snapshot, leaves.iter().map(|(key, _)| key.as_str()))?;
            for (key, text) in &leaves {
                writes::upsert(tx, key, text)?;
            }
            Ok(())
        })
    }

    /// Inserts the leaves of `tree` whose keys are missing; existing values
    /// are kept.
    ///
    /// # Errors
    /// As [`Store::merge`].
    pub fn seed<T: Serialize + 'static>(&self, tree: &T) -> Result<Commit> {
        let leaves = writes::stored_leaves(to_tree(tree)?.as_ref())?;
        self.commit("seed", |tx, snapshot| {
            let missing = leaves.iter().filter(|(key, _)| !snapshot.contains(key));
            writes::check_placement(snapshot, missing.clone().map(|(key, _)| key.as_str()))?;
            for (key, text) in missing {
                writes::insert_missing(tx, key, text)?;
            }
            Ok(())
        })
    }

    /// Runs arbitrary SQL on the writer connection in one transaction.
    /// Whatever it changes in `settings` is picked up from the change log
    /// and applied granularly before this returns. Returning an error rolls
    /// everything back.
    ///
    /// # Errors
    /// The closure's error, or [`Error::Busy`] / [`Error::DatabaseMissing`];
    /// [`Error::Misplaced`] when the SQL inserted a key below a key that holds
    /// a value, or a value at a key with keys below it (delete first, then
    /// insert).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.write(|tx| {
    ///     tx.execute("INSERT INTO settings (key, value) VALUES ('a.b', '1'), ('a.c', '2')", [])?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(store.get::<i64>("a.c")?, Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The closure runs inside the store's transaction: it must not run
    /// `BEGIN`, `COMMIT` or `ROLLBACK` (refused with [`Error::InvalidSql`];
    /// savepoints are fine), and must not call methods of the same store
    /// that write or read the log ([`Error::Reentrant`]); reads from the
    /// snapshot (`get`, `snapshot`, ...) are fine. When the database file is
    /// replaced while the closure runs, nothing is committed to the file at
    /// the path and the call returns [`Error::FileReplaced`]: run it again.
    pub fn write<R>(&self, op: impl FnOnce(&Transaction<'_>) -> Result<R>) -> Result<R> {
        let mut op = Some(op);
        self.core
            .write("write", false, |tx, _| match op.take() {
                Some(op) => op(tx),
                None => Err(Error::FileReplaced {
                    path: self.core.path.clone(),
                }),
            })
            .map(|(value, _)| value)
    }

    /// Runs read-only SQL in one read transaction on the store's read
    /// connection (a consistent view of the file; `PRAGMA query_only` is on
    /// meanwhile, so writes fail). Works on a read-only store, whose
    /// connections are the only ones that can read the file without
    /// creating side files.
    ///
    /// # Errors
    /// The closure's error, or [`Error::Busy`] / [`Error::DatabaseMissing`].
    pub fn query<R>(&self, query: impl FnOnce(&Transaction<'_>) -> Result<R>) -> Result<R> {
        self.core.read("query", |tx, path| {
            use crate::error::SqliteContext;
            let was: bool = tx
                .query_row("PRAGMA query_only", [], |row| row.get(0))
                .context(path, "cannot read query_only")?;
            tx.pragma_update(None, "query_only", true)
                .context(path, "cannot set query_only")?;
            let outcome = query(tx);
            tx.pragma_update(None, "query_only", was)
                .context(path, "cannot reset query_only")?;
            outcome
        })
    }

    /// Subscribes to changes at or below `prefix` (`""` for all). Events come
    /// after commit, once per changed key per commit, in seq order; see
    /// [`Event`] for reloads, rejections and the lag policy.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a malformed prefix.
    pub fn subscribe(&self, prefix: &str) -> Result<Receiver<Event>> {
        validate_prefix(prefix)?;
        Ok(self.core.subscribers.add(prefix))
    }

    /// Subscribes to `prefix` and returns the snapshot the subscription
    /// starts from, atomically: the events that follow are exactly the
    /// changes after `snapshot.seq()`, none missed and none already in it.
    /// ("Read the snapshot, then subscribe" can lose the changes between.)
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a malformed prefix, [`Error::Reentrant`]
    /// inside a `write` closure.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// store.set("a.x", &1)?;
    /// let (snapshot, events) = store.subscribe_with_snapshot("a")?;
    /// assert_eq!(snapshot.get::<i64>("a.x")?, Some(1));
    /// let commit = store.set("a.x", &2)?;
    /// assert_eq!(events.recv()?.seq(), commit.seq);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_with_snapshot(
        &self,
        prefix: &str,
    ) -> Result<(Arc<Snapshot>, Receiver<Event>)> {
        validate_prefix(prefix)?;
        let core = &self.core;
        core.exclusive("subscribe_with_snapshot", || {
            Ok((core.view().load_full(), core.subscribers.add(prefix)))
        })
    }

    /// Subscribes to whole commits at or below `prefix`: one
    /// [`Event::Commit`](crate::Event::Commit) per local commit and per
    /// batch of foreign commits a pass applied (see
    /// [`ChangeSet`](crate::ChangeSet)), never split; reloads, rejections
    /// and lag notices as for [`Store::subscribe`]. A subscriber acting on
    /// several keys (a `min` and a `max`) then never sees half a commit.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a malformed prefix.
    ///
    /// ```
    /// use livesettings::Event;
    /// # let dir = tempfile::tempdir()?;
    /// # let store = livesettings::Store::open(dir.path().join("s.db"))?;
    /// let commits = store.subscribe_commits("range")?;
    /// store.merge(&serde_json::json!({"range": {"min": 1, "max": 9}}))?;
    /// let Event::Commit(commit) = commits.recv()? else { panic!() };
    /// assert_eq!(commit.changes.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe_commits(&self, prefix: &str) -> Result<Receiver<Event>> {
        validate_prefix(prefix)?;
        Ok(self.core.subscribers.add_commits(prefix))
    }

    /// [`Store::subscribe_commits`] and the snapshot it starts from,
    /// atomically (as [`Store::subscribe_with_snapshot`]).
    ///
    /// # Errors
    /// As [`Store::subscribe_with_snapshot`].
    pub fn subscribe_commits_with_snapshot(
        &self,
        prefix: &str,
    ) -> Result<(Arc<Snapshot>, Receiver<Event>)> {
        validate_prefix(prefix)?;
        let core = &self.core;
        core.exclusive("subscribe_commits_with_snapshot", || {
            Ok((
                core.view().load_full(),
                core.subscribers.add_commits(prefix),
            ))
        })
    }

    /// Blocks until the snapshot reflects at least `seq` (for instance a seq
    /// another process reported writing), or `timeout` passes.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn wait_for_seq(&self, seq: i64, timeout: Duration) -> Result<()> {
        self.core.wait_for_seq(seq, timeout)
    }

    /// The store's counters.
    pub fn stats(&self) -> Stats {
        self.core.counters.snapshot(self.core.view().load().len())
    }

    /// Stops the watcher, joins its thread and closes the connections.
    ///
    /// # Errors
    /// [`Error::Io`] when the watcher thread panicked.
    pub fn close(mut self) -> Result<()> {
        let outcome = match self.watcher.take() {
            Some(watcher) => watcher.stop(),
            None => Ok(()),
        };
        self.core.close_connections();
        outcome
    }

    /// Runs one of the store's own writes (idempotent, so it is run again
    /// on the new file when the file is replaced midway).
    pub(crate) fn commit(
        &self,
        operation: &'static str,
        op: impl FnMut(&Transaction<'_>, &Snapshot) -> Result<()>,
    ) -> Result<Commit> {
        let ((), local) = self.core.write(operation, true, op)?;
        Ok(match local {
            Some((first, last)) => Commit {
                seq: last,
                changes: (last - first + 1) as usize,
            },
            None => Commit {
                seq: self.core.view().load().seq(),
                changes: 0,
            },
        })
    }
}

impl Options {
    /// Opens (creating if needed) the database at `path` with these options.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an out-of-range option, and the errors of
    /// [`Store::open`].
    pub fn open(self, path: impl AsRef<Path>) -> Result<Store> {
        self.validate()?;
        Store::open_with(path.as_ref(), self)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            if let Err(error) = watcher.stop() {
                log::error!("{error}");
            }
        }
        // Not left to the connections' own drop: a file replaced meanwhile
        // must be closed as an orphan (see `close_connections`).
        self.core.close_connections();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.core.path)
            .field("seq", &self.core.view().load().seq())
            .finish_non_exhaustive()
    }
}

/// A serializable tree as JSON, for `merge` and `seed`. A `Value` is used
/// as it is: serializing it again would recurse once per level, and a
/// hostile document nested thousands deep must get the depth error, not
/// overflow the stack.
fn to_tree<T: Serialize + 'static>(tree: &T) -> Result<std::borrow::Cow<'_, Value>> {
    if let Some(value) = (tree as &dyn std::any::Any).downcast_ref::<Value>() {
        return Ok(std::borrow::Cow::Borrowed(value));
    }
    serde_json::to_value(tree)
        .map(std::borrow::Cow::Owned)
        .map_err(|error| Error::InvalidValue {
            key: String::new(),
            reason: format!("the tree does not serialize to JSON: {error}"),
        })
}
