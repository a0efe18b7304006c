//! The builder for opening a store.

use std::time::Duration;

use serde_json::Value;

use crate::db::history::Retention;
use crate::error::{Error, Result};

/// How the store notices commits by other connections and processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// File-system events on the database folder wake the watcher, which
    /// confirms with `PRAGMA data_version`; `safety_poll` re-checks in case
    /// an event is missed.
    Events {
        /// The safety-net poll interval.
        safety_poll: Duration,
    },
    /// No file events (network or FUSE filesystems): check every `interval`.
    Poll {
        /// The poll interval.
        interval: Duration,
    },
    /// No watcher thread: only this store's own writes are seen.
    Off,
}

impl Default for WatchMode {
    fn default() -> Self {
        WatchMode::Events {
            safety_poll: Duration::from_secs(1),
        }
    }
}

impl WatchMode {
    /// Poll-only mode at its default interval (250 ms).
    pub fn poll() -> Self {
        WatchMode::Poll {
            interval: Duration::from_millis(250),
        }
    }
}

/// How hard a commit is made durable (SQLite's `synchronous` setting on the
/// store's connections; WAL mode either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL`, the default: an acknowledged write survives a
    /// crash of the process (tested with 50 SIGKILLs mid-write), but the
    /// last commits before a power loss or an OS crash may be lost (the
    /// database stays consistent). The WAL is synced at checkpoints only, so
    /// a write costs no fsync.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit syncs the WAL before it is
    /// acknowledged, so it also survives a power loss, at the price of an
    /// fsync per write (milliseconds on most disks).
    Full,
}

/// Options for [`Store`](crate::Store); `Options::new().open(path)` is [`Store::open`](crate::Store::open).
///
/// ```
/// use std::time::Duration;
/// use livesettings::{Options, WatchMode};
///
/// # let dir = tempfile::tempdir()?;
/// let store = Options::new()
///     .with_busy_timeout(Duration::from_secs(10))
///     .with_origin("settings-api")
///     .with_watch(WatchMode::poll())
///     .with_defaults(serde_json::json!({"physics": {"damping": 0.6}}))
///     .open(dir.path().join("settings.db"))?;
/// // A registered default: read through the store, not written to the file.
/// assert_eq!(store.get::<f64>("physics.damping")?, Some(0.6));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    busy_timeout: Duration,
    origin: String,
    seed: Option<Value>,
    /// Registered defaults: (prefix, tree), later entries winning.
    defaults: Vec<(String, Value)>,
    env_prefix: Option<String>,
    channel_capacity: usize,
    watch: WatchMode,
    file_mode: u32,
    retention: Option<Retention>,
    durability: Durability,
    read_only: bool,
    adopt_foreign: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            origin: "livesettings".to_owned(),
            seed: None,
            defaults: Vec::new(),
            env_prefix: None,
            channel_capacity: 1024,
            watch: WatchMode::default(),
            file_mode: 0o600,
            retention: None,
            durability: Durability::Normal,
            read_only: false,
            adopt_foreign: false,
        }
    }
}

impl Options {
    /// The defaults: 5 s busy timeout, origin `livesettings`, 1024 events
    /// per subscriber, file events with a 1 s safety poll, new files 0600.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a write waits for a lock held by another connection before
    /// failing with [`Error::Busy`].
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The name recorded in `settings_log.origin` for this store's writes
    /// (foreign writers show as `external`).
    #[must_use]
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// A nested JSON tree whose missing keys are written to the database at
    /// open (they are then ordinary stored values, logged and visible to
    /// every process). See [`Options::with_defaults`] for defaults that are
    /// not written.
    #[must_use]
    pub fn with_seed(mut self, tree: Value) -> Self {
        self.seed = Some(tree);
        self
    }

    /// Registered defaults, the lowest layer: a key the database does not
    /// hold reads as its default; nothing is written (other processes do
    /// not see it). Also what a section a validator refuses at start-up
    /// falls back to (see the README).
    #[must_use]
    pub fn with_defaults(mut self, tree: Value) -> Self {
        self.defaults.push((String::new(), tree));
        self
    }

    /// Typed registered defaults: `T::default()`, serialized, is the
    /// default of the section under `prefix` (see [`Options::with_defaults`]).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `T` does not serialize to JSON.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, Default)]
    /// struct Server { port: u16, host: String }
    /// # let dir = tempfile::tempdir()?;
    /// let store = livesettings::Options::new()
    ///     .with_defaults_of::<Server>("server")?
    ///     .open(dir.path().join("s.db"))?;
    /// assert_eq!(store.get::<u16>("server.port")?, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_defaults_of<T: serde::Serialize + Default>(mut self, prefix: &str) -> Result<Self> {
        let tree = serde_json::to_value(T::default()).map_err(|error| Error::InvalidValue {
            key: prefix.to_owned(),
            reason: format!("the defaults do not serialize: {error}"),
        })?;
        self.defaults.push((prefix.to_owned(), tree));
        Ok(self)
    }

    /// Environment overrides, the highest layer, read once at open (not
    /// hot: a process's environment does not change): `PREFIX_SERVER__PORT=9000`
    /// overrides `server.port`. `__` separates segments; a variable names
    /// the existing key (database or defaults) whose segments match ignoring
    /// ASCII case, else the key in lower case. The value is JSON when it
    /// parses (`9000`, `true`, `[1,2]`, `"quoted"`), else the text as a
    /// string. A variable that cannot name a key makes
    /// [`Options::open`] fail with [`Error::InvalidOption`].
    #[must_use]
    pub fn with_env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = Some(prefix.into());
        self
    }

    /// The environment prefix, if any.
    pub fn env_prefix(&self) -> Option<&str> {
        self.env_prefix.as_deref()
    }

    /// How many events a subscriber may leave unread before events are
    /// dropped and it is sent [`Event::Lagged`](crate::Event::Lagged).
    #[must_use]
    pub fn with_channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity;
        self
    }

    /// How foreign commits are noticed.
    #[must_use]
    pub fn with_watch(mut self, watch: WatchMode) -> Self {
        self.watch = watch;
        self
    }

    /// Permissions of a database file the store creates (default `0o600`:
    /// settings often hold secrets). An existing file keeps its own.
    #[must_use]
    pub fn with_file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// Prunes the change log to `retention` at open (see
    /// [`Store::prune`](crate::Store::prune) to prune later).
    #[must_use]
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// How hard commits are made durable (default [`Durability::Normal`]).
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Opens a store that never writes: no file, folder, schema, migration,
    /// trigger repair, `journal_mode` change or side file (`-wal`, `-shm`,
    /// lock files) is created or changed, and the ownership of existing ones
    /// stays as it is. Reads, sections, subscriptions and history work, and
    /// commits of other writers are followed as usual; every write returns
    /// [`Error::ReadOnly`]. The database must exist and be a livesettings
    /// database ([`Error::NotLivesettings`] otherwise). Defaults and
    /// retention are not applied (they would write).
    ///
    /// A store also opens read-only on its own when this process cannot
    /// write the file or its folder (see
    /// [`Store::read_only_cause`](crate::Store::read_only_cause)).
    ///
    /// When the database has no `-wal`/`-shm` beside it (no writer has it
    /// open: everything is in the main file), SQLite could only read it by
    /// creating them, so the store reads it as an immutable file and opens
    /// it again, normally, as soon as the side files appear or the file
    /// changes.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Lets the store add its schema to an existing SQLite database that
    /// holds other tables (another application's file). Without it such a
    /// file is refused with [`Error::NotLivesettings`] and left untouched
    /// (`livesettings init --adopt` sets it).
    #[must_use]
    pub fn adopt_foreign(mut self) -> Self {
        self.adopt_foreign = true;
        self
    }

    /// Whether the store is opened read-only ([`Options::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether a foreign SQLite database may get the schema
    /// ([`Options::adopt_foreign`]).
    pub fn adopts_foreign(&self) -> bool {
        self.adopt_foreign
    }

    /// The durability of commits.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The retention applied at open, if any.
    pub fn retention(&self) -> Option<Retention> {
        self.retention
    }

    /// The busy timeout.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// The origin name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The seed tree, if any.
    pub fn seed(&self) -> Option<&Value> {
        self.seed.as_ref()
    }

    /// The registered defaults: (prefix, tree) in registration order.
    pub fn defaults(&self) -> &[(String, Value)] {
        &self.defaults
    }

    /// The per-subscriber channel capacity.
    pub fn channel_capacity(&self) -> usize {
        self.channel_capacity
    }

    /// The watch mode.
    pub fn watch(&self) -> WatchMode {
        self.watch
    }

    /// The mode of newly created database files.
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    /// Refuses out-of-range options ([`Options::open`], in `store/`, calls
    /// it first).
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.origin.is_empty() || self.origin.len() > 128 {
            return invalid("origin", "must be 1 to 128 bytes");
        }
        if self.origin == "external" {
            return invalid("origin", "'external' is reserved for foreign writers");
        }
        if self.channel_capacity == 0 {
            return invalid("channel_capacity", "must be at least 1");
        }
        if let Some(prefix) = &self.env_prefix {
            if prefix.is_empty() || prefix.contains('=') || prefix.contains('\0') {
                return invalid("env_prefix", "must be a non-empty variable name prefix");
            }
        }
        match self.watch {
            WatchMode::Events { safety_poll: every } | WatchMode::Poll { interval: every }
                if every < Duration::from_millis(1) =>
            {
                invalid("watch", "the poll interval must be at least 1 ms")
            }
            _ => Ok(()),
        }
    }
}
