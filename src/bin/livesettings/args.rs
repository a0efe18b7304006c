//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::formats::Format;

/// Hot-reloadable application settings stored in SQLite.
#[derive(Parser, Debug)]
#[command(name = "livesettings", version, about)]
pub struct Cli {
    /// The database file [default: $SETTINGS_DB_PATH, else data/settings.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Environment overrides for reads (`get`, `export`, `explain`,
    /// `watch`): PREFIX_SERVER__PORT=9000 overrides server.port
    #[arg(
        long,
        global = true,
        env = "SETTINGS_ENV_PREFIX",
        value_name = "PREFIX"
    )]
    pub env_prefix: Option<String>,

    /// Print the values of secret keys (rules marked "secret": true)
    /// instead of {"<redacted>":true}; logs never show them
    #[arg(long, global = true)]
    pub show_secrets: bool,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG=LEVEL also works
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the database (and its folders); with --demo or --defaults,
    /// seed it
    Init {
        #[command(flatten)]
        seed: Seed,
        /// Add the livesettings tables to an existing SQLite database of
        /// another application (refused without it)
        #[arg(long)]
        adopt: bool,
    },
    /// Print the JSON value of KEY, or the section below it as nested JSON
    Get {
        /// A dotted key or section prefix
        key: String,
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Set KEY to a JSON VALUE and print the committed seq.
    /// VALUE is JSON: 0.95, true, [1,2], and a string needs JSON quotes: '"#ff0000"'
    Set {
        /// A dotted key
        key: String,
        /// A JSON value (strings in double quotes); negative numbers need no `--`
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// A temporary override: put the previous value back after this
        /// long (e.g. 90s, 15m, 2h); a running store does it on time, else
        /// the next one to open
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        for_duration: Option<std::time::Duration>,
        #[command(flatten)]
        schema: SchemaArg,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Remove KEY (with --recursive, also every key below it)
    Unset {
        /// A dotted key or section prefix
        key: String,
        /// Also remove the keys below KEY
        #[arg(long, short)]
        recursive: bool,
        #[command(flatten)]
        schema: SchemaArg,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Merge a nested JSON, TOML or YAML document (a file, or - for stdin)
    /// into the settings
    Import {
        /// The file (its format by its extension: .json, .toml, .yaml,
        /// .yml), or - for standard input
        file: PathBuf,
        /// The document is the section below PREFIX (what `export PREFIX`
        /// prints)
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// The file's format [default: by its extension, else json]
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[command(flatten)]
        schema: SchemaArg,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Print the settings (or the section below PREFIX) as nested JSON,
    /// TOML or YAML
    Export {
        /// A section prefix; everything when omitted
        prefix: Option<String>,
        /// Print each key with its value and the layer it comes from
        /// (env, database, default) instead of the nested tree
        #[arg(long)]
        layers: bool,
        /// The format [default: by the extension of --output, else json]
        #[arg(long, value_enum, conflicts_with = "layers")]
        format: Option<Format>,
        /// Write to FILE instead of standard output
        #[arg(long, short, value_name = "FILE", conflicts_with = "layers")]
        output: Option<PathBuf>,
        /// The settings as they were at POINT: a seq, a checkpoint name, or
        /// a time (RFC 3339, e.g. 2026-12-02T03:50:00Z: the state after the
        /// last change at or before it)
        #[arg(long, value_name = "POINT", conflicts_with = "layers")]
        at: Option<String>,
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Print every change as it is applied, until interrupted (Ctrl-C)
    Watch {
        /// Only keys at or below this prefix
        prefix: Option<String>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Poll every MS milliseconds instead of using file events (for
        /// network filesystems)
        #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "250")]
        poll: Option<u64>,
        /// Replay the logged changes after POINT (a seq, a checkpoint name or
        /// a time) first, then go live
        #[arg(long, value_name = "POINT")]
        from: Option<String>,
        /// One event per commit (per batch of foreign commits) instead of
        /// one per key; with --json: {"event":"commit","seqs":[FIRST,LAST],
        /// "source":...,"changes":[...]}
        #[arg(long, conflicts_with = "from")]
        commits: bool,
        #[command(flatten)]
        seed: Seed,
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Explain where KEY's value comes from: environment override,
    /// database (seq, time, origin of its last change) or default
    Explain {
        /// A dotted key
        key: String,
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Print the change history of KEY (oldest first)
    History {
        /// A dotted key (with --prefix, a section)
        key: String,
        /// At most this many of the newest changes
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// KEY is a section: show the history of every key below it
        #[arg(long)]
        prefix: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Undo the change at SEQ (a new forward change), or with --to, restore
    /// every key to its value as of SEQ
    Revert {
        /// The change-log seq (with --to, also a checkpoint name or a time)
        seq: String,
        /// Restore the whole state as of SEQ instead of one change
        #[arg(long)]
        to: bool,
        #[command(flatten)]
        schema: SchemaArg,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Print the per-key difference between two points of the change log
    /// (keys added, removed, changed: `key: old → new`)
    Diff {
        /// From: a seq, a checkpoint name, or a time (RFC 3339)
        from: String,
        /// To, as FROM [default: now]
        to: Option<String>,
        /// Only keys at or below this prefix
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// One JSON object per key and line
        #[arg(long)]
        json: bool,
    },
    /// Name the current position of the change log (re-using a name moves
    /// it), so that `diff NAME`, `revert --to NAME`, `export --at NAME` and
    /// `watch --from NAME` can use it
    Checkpoint {
        /// 1 to 64 characters of A-Z a-z 0-9 _ . - (not all digits)
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// List the checkpoints (name, seq, time)
        #[arg(long, conflicts_with_all = ["name", "delete"])]
        list: bool,
        /// Delete the checkpoint NAME
        #[arg(long)]
        delete: bool,
        /// With --list, one JSON object per line
        #[arg(long, requires = "list")]
        json: bool,
    },
    /// Delete old change-log rows (in small batches)
    Prune {
        /// Keep this many of the newest rows
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
        /// Delete rows older than this many seconds
        #[arg(long, value_name = "SECS")]
        older_than: Option<u64>,
    },
    /// Validate every setting against the rules file
    Check {
        #[command(flatten)]
        schema: SchemaArg,
    },
    /// Print what the database holds: keys, seq, log rows, file size,
    /// schema version, file mode
    Stats {
        /// One JSON object instead of a table
        #[arg(long)]
        json: bool,
    },
    /// List the consumers of the database (every running store with a
    /// watcher: `watch`, `serve`, `sync`, applications): applied seq, lag,
    /// last heartbeat, rejected sections, stale entries of dead processes
    Status {
        /// One JSON object instead of a table
        #[arg(long)]
        json: bool,
        /// Block until every live consumer has applied SEQ (exit 0; exit 1
        /// on timeout, naming who lags; exit 0 at once with no consumers)
        #[arg(long, value_name = "SEQ")]
        wait: Option<i64>,
        /// How long --wait waits, in seconds
        #[arg(long, value_name = "SECS", default_value_t = 60.0, requires = "wait")]
        timeout: f64,
        /// Remove entries of dead processes whose last heartbeat is older
        /// than this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30.0)]
        expire_after: f64,
    },
    /// Serve the HTTP API, the live event stream (SSE) and the web console
    /// over the database, until Ctrl-C / SIGTERM; prints one JSON ready
    /// line with the bound address and the console's URL
    Serve(ServeArgs),
    /// Bridge this database to a NATS JetStream KV bucket that a fleet of
    /// hosts shares (runs until interrupted, printing one JSON event per
    /// line); `sync status` reports on it
    #[cfg(feature = "nats")]
    Sync(SyncArgs),
    /// Print a shell completion script (e.g. `livesettings completions bash
    /// > /etc/bash_completion.d/livesettings`)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

/// `serve`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port); anything but
    /// loopback exposes the settings to the network
    #[arg(long, value_name = "ADDRESS", default_value = livesettings::serve::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// The file holding the bearer token [default: DB.token beside the
    /// database]; created (mode 0600) with a fresh token when missing
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow cross-origin requests (CORS) from this origin, e.g.
    /// https://ops.example.com (repeatable); none by default
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// The largest request body accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = livesettings::serve::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Events queued per event-stream client before it counts as lagging
    /// (it then gets a fresh snapshot instead of the events it missed)
    #[arg(long, value_name = "EVENTS", default_value_t = 1024)]
    pub client_backlog: usize,
    #[command(flatten)]
    pub schema: SchemaArg,
}

/// `sync`: the fleet bridge, or with `status`, its state.
#[cfg(feature = "nats")]
#[derive(clap::Args, Debug)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The NATS servers, comma-separated (nats://host:4222,nats://host2:4222)
    #[arg(long, value_name = "URL", required = true)]
    pub nats: Option<String>,
    /// The KV bucket (created when missing)
    #[arg(long, value_name = "NAME", required = true)]
    pub bucket: Option<String>,
    /// Order concurrent changes of a key by the bucket alone (unconditional
    /// pushes) instead of letting the fleet's value win over a stale host
    #[arg(long)]
    pub last_writer_wins: bool,
    /// Replicas of a bucket this creates (an existing bucket keeps its own)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub replicas: usize,
    /// Revisions per key kept by a bucket this creates
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub history: i64,
}

#[cfg(feature = "nats")]
#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Whether the bridge runs and is connected, the last revision applied,
    /// local rows not pushed yet, and the conflicts reported
    Status {
        /// One JSON object instead of a table
        #[arg(long)]
        json: bool,
    },
}

/// What a database is seeded with: nothing unless asked.
#[derive(clap::Args, Debug)]
pub struct Seed {
    /// Seed an empty database with the bundled VisionFlow demo settings
    #[arg(long)]
    pub demo: bool,
    /// Seed missing keys from this nested JSON file
    #[arg(long, value_name = "FILE.json")]
    pub defaults: Option<PathBuf>,
    /// Deprecated, no effect: nothing is seeded unless --demo or --defaults
    /// is given (kept so that existing scripts work)
    #[arg(long, conflicts_with_all = ["defaults", "demo"])]
    pub no_defaults: bool,
}

/// `--dry-run`: check the write and print what it would change, writing
/// nothing.
#[derive(clap::Args, Debug)]
pub struct DryRun {
    /// Check the write against every rule and print the per-key changes it
    /// would make (`key: old → new`) without writing anything; exit 1 when
    /// it would be refused
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run, one JSON object per key and line
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

/// Where the validation rules come from: `watch` and `check` judge the
/// settings with them, every writing command refuses a write they
/// refuse, and the reading commands redact the keys they mark secret.
#[derive(clap::Args, Debug)]
pub struct SchemaArg {
    /// Rules file (see the README) [default: $SETTINGS_SCHEMA_PATH, else
    /// DB.schema.json beside the database, if present]
    #[arg(long, value_name = "FILE.json")]
    pub schema: Option<PathBuf>,
}

impl Cli {
    /// The database path: --db, else $SETTINGS_DB_PATH, else data/settings.db.
    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .or_else(|| std::env::var_os("SETTINGS_DB_PATH").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("data/settings.db"))
    }
}
