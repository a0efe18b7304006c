//! One function per subcommand; every behaviour lives in the library.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

use livesettings::{Error, Options, Plan, Retention, Rules, Secrets, Store, WatchMode};
use serde_json::Value;

use crate::args::{Cli, Command, DryRun, SchemaArg, Seed};
use crate::diff_output;
use crate::failure::{Failure, note, out, out_committed};
use crate::formats::Format;
use crate::output;
use crate::stats;
use crate::status;

/// The VisionFlow settings tree, seeded into an empty database by `--demo`.
const DEMO_DEFAULTS: &str = include_str!("../../../examples/visionflow-settings.json");

/// The environment prefix of `--env-prefix` / `$SETTINGS_ENV_PREFIX`, for
/// the commands that read effective values (set once, before any store is
/// opened).
static ENV_PREFIX: OnceLock<String> = OnceLock::new();

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let path = cli.db_path();
    let reads_layers = matches!(
        cli.command,
        Command::Get { .. }
            | Command::Export { .. }
            | Command::Explain { .. }
            | Command::Watch { .. }
    );
    if let (true, Some(prefix)) = (reads_layers, &cli.env_prefix) {
        let _ = ENV_PREFIX.set(prefix.clone());
    }
    let show_secrets = cli.show_secrets;
    match cli.command {
        Command::Init { seed, adopt } => {
            let mut options = options(WatchMode::Off);
            if adopt {
                options = options.adopt_foreign();
            }
            // The rules file beside the database (or $SETTINGS_SCHEMA_PATH)
            // checks the seeded values, read before anything is written.
            let rules = load_rules(&path, &SchemaArg { schema: None })?;
            let store = options.open(&path)?;
            if let Some(rules) = rules {
                store.add_rules(&rules)?;
            }
            seed_defaults(&store, &seed)?;
            out(&format!(
                "{} keys in {}",
                store.snapshot().len(),
                path.display()
            ))?;
            store.close()?;
        }
        Command::Get { key, schema } => {
            livesettings::validate_prefix(&key)?;
            let rules = load_rules(&path, &schema)?;
            let store = open_read_only(&path)?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            match store.subtree(&key)? {
                Some(value) => out(&pretty(&secrets.tree(&key, &value)))?,
                None => {
                    return Err(Failure::Missing(format!(
                        "no key or section '{key}' in {}",
                        path.display()
                    )));
                }
            }
        }
        Command::Set {
            key,
            value,
            for_duration,
            schema,
            dry,
        } => {
            // Check everything before opening: a failed command must not even
            // create the database file.
            livesettings::validate_key(&key)?;
            // A secret key's value is never echoed, not even in an error.
            let secret = load_rules(&path, &schema)?
                .is_some_and(|rules| livesettings::Secrets::from_rules(&rules).is_secret(&key));
            // Integers that JSON numbers would round are refused, not rounded.
            let parsed: Value =
                livesettings::parse_json_value(&key, &value).map_err(|error| match error {
                    Error::Json { .. } if secret => Error::InvalidValue {
                        key: key.clone(),
                        reason: "the value (secret, not shown) is not JSON; a string needs JSON quotes".to_owned(),
                    },
                    Error::Json { source, .. } => Error::InvalidValue {
                        key: key.clone(),
                        reason: format!(
                            "'{value}' is not JSON ({source}); a string needs JSON quotes, e.g. '\"{value}\"'"
                        ),
                    },
                    Error::InvalidValue { key, .. } if secret => Error::InvalidValue {
                        key,
                        reason: "the value (secret, not shown) cannot be stored as it is".to_owned(),
                    },
                    other => other,
                })?;
            if parsed.is_object() && !has_leaf(&parsed) {
                return Err(Failure::Missing(format!(
                    "nothing to set: '{value}' holds no value (an object writes the section below '{key}', and an empty one writes nothing)"
                )));
            }
            if parsed.is_object() && for_duration.is_some() {
                return Err(Failure::Error(Error::InvalidValue {
                    key,
                    reason: "--for sets one value for a while, not a section".to_owned(),
                }));
            }
            let store = open_for(&path, &schema, &dry)?;
            let write = |store: &Store| {
                if let Some(duration) = for_duration {
                    store.set_for(&key, &parsed, duration)
                } else if parsed.is_object() {
                    // `set a.b '{"c":1}'` writes the section below a.b.
                    let mut tree = serde_json::Map::new();
                    tree.insert(key.clone(), parsed.clone());
                    store.merge(&Value::Object(tree))
                } else {
                    store.set(&key, &parsed)
                }
            };
            if dry.dry_run {
                let secrets = secrets(&store, load_rules(&path, &schema)?.as_ref(), show_secrets)?;
                return print_plan(store.plan(write)?, &dry, &secrets);
            }
            let commit = write(&store)?;
            out_committed(commit.seq)?;
        }
        Command::Unset {
            key,
            recursive,
            schema,
            dry,
        } => {
            livesettings::validate_prefix(&key)?;
            let store = open_for(&path, &schema, &dry)?;
            if dry.dry_run {
                let plan = store.plan(|store| {
                    if recursive {
                        store.unset_section(&key)
                    } else {
                        livesettings::validate_key(&key)?;
                        store.unset(&key)
                    }
                })?;
                if plan.changes.is_empty() && !plan.is_refused() {
                    return Err(Failure::Missing(if recursive {
                        format!("no key at or below '{key}' in {}", path.display())
                    } else {
                        missing_key(&key, &path)
                    }));
                }
                let secrets = secrets(&store, load_rules(&path, &schema)?.as_ref(), show_secrets)?;
                return print_plan(plan, &dry, &secrets);
            }
            let commit = if recursive {
                store.unset_section(&key)?
            } else {
                livesettings::validate_key(&key)?;
                if !store.contains(&key) {
                    return Err(Failure::Missing(missing_key(&key, &path)));
                }
                store.unset(&key)?
            };
            // Judged by what the transaction removed: a key another writer
            // removed just before counts as missing, and nothing was written.
            if commit.changes == 0 {
                return Err(Failure::Missing(if recursive {
                    format!("no key at or below '{key}' in {}", path.display())
                } else {
                    missing_key(&key, &path)
                }));
            }
            out_committed(commit.seq)?;
        }
        Command::Import {
            file,
            prefix,
            format,
            schema,
            dry,
        } => {
            let prefix = prefix.unwrap_or_default();
            livesettings::validate_prefix(&prefix)?;
            let mut document = read_document(&file, format, &prefix)?;
            if !prefix.is_empty() {
                // `export PREFIX` prints the section below PREFIX (or the
                // value of the key PREFIX): put it back in its place.
                let mut tree = serde_json::Map::new();
                tree.insert(prefix, document);
                document = Value::Object(tree);
            }
            let store = open_for(&path, &schema, &dry)?;
            if dry.dry_run {
                let secrets = secrets(&store, load_rules(&path, &schema)?.as_ref(), show_secrets)?;
                return print_plan(store.plan(|store| store.merge(&document))?, &dry, &secrets);
            }
            let commit = store.merge(&document)?;
            note(&format!(
                "imported: {} keys changed, seq {}",
                commit.changes, commit.seq
            ));
        }
        Command::Export {
            prefix,
            layers,
            format,
            output,
            at,
            schema,
        } => {
            let prefix = prefix.unwrap_or_default();
            livesettings::validate_prefix(&prefix)?;
            let rules = load_rules(&path, &schema)?;
            let store = open_read_only(&path)?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            let past = match &at {
                Some(text) => {
                    let point = resolve(&store, text)?;
                    Some(
                        store
                            .state_at(point.seq)
                            .map_err(|error| point.refuse(error))?,
                    )
                }
                None => None,
            };
            if layers {
                let mut listed = serde_json::Map::new();
                for (key, value, layer) in store.provenance(&prefix)? {
                    let value = secrets.value(&key, &value);
                    let mut entry =
                        serde_json::json!({"value": value, "layer": layer_name(&layer)});
                    if let livesettings::Layer::Env(variable) = layer {
                        entry["variable"] = Value::String(variable);
                    }
                    listed.insert(key, entry);
                }
                if listed.is_empty() && !prefix.is_empty() {
                    return Err(Failure::Missing(format!(
                        "no key or section '{prefix}' in {}",
                        path.display()
                    )));
                }
                out(&pretty(&Value::Object(listed)))?;
                return Ok(ExitCode::SUCCESS);
            }
            let tree = match &past {
                Some(snapshot) => snapshot.subtree(&prefix)?,
                None => store.subtree(&prefix)?,
            };
            let tree = match tree {
                Some(tree) => tree,
                // Everything, of an empty database: an empty document.
                None if prefix.is_empty() => Value::Object(Default::default()),
                None => {
                    return Err(Failure::Missing(format!(
                        "no key or section '{prefix}' in {}",
                        path.display()
                    )));
                }
            };
            // `-o -` is standard output, as `import -` is standard input.
            let output = output.filter(|file| file.as_os_str() != "-");
            let tree = secrets.tree(&prefix, &tree);
            let text = Format::choose(format, output.as_deref()).render(&prefix, &tree)?;
            match output {
                Some(file) => write_document(&file, &text)?,
                None => out(&text)?,
            }
        }
        Command::Watch {
            prefix,
            json,
            poll,
            from,
            commits,
            seed,
            schema,
        } => {
            let mode = match poll {
                Some(ms) => WatchMode::Poll {
                    interval: std::time::Duration::from_millis(ms.max(1)),
                },
                None => WatchMode::default(),
            };
            let prefix = prefix.unwrap_or_default();
            livesettings::validate_prefix(&prefix)?;
            // Read before anything is written, so a bad file writes nothing.
            let rules = load_rules(&path, &schema)?;
            let store = open(&path, mode)?;
            let from = match &from {
                Some(text) => Some(resolve(&store, text)?.seq),
                None => None,
            };
            if let Some(seq) = from {
                // Before seeding: a seq beyond the log must not become valid
                // through the seeded rows (and a failed command writes
                // nothing). The log only grows, so `subscribe_after` cannot
                // then refuse it (its Error::UnknownSeq would exit 1 too).
                let newest = newest_seq(&store)?;
                if seq > newest {
                    return Err(Failure::Missing(format!(
                        "seq {seq} is not in the change log (the newest is {newest})"
                    )));
                }
            }
            // Rules first: seeded values are checked like every write.
            if let Some(rules) = rules {
                store.add_rules(&rules)?;
            }
            seed_defaults(&store, &seed)?;
            let secrets = secrets(&store, None, show_secrets)?;
            output::watch(store, &prefix, json, from, commits, &secrets)?;
        }
        Command::Explain { key, schema } => {
            livesettings::validate_key(&key)?;
            let rules = load_rules(&path, &schema)?;
            let store = open_read_only(&path)?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            let explained = store.explain(&key)?;
            let shown = |value: Option<&Value>| secrets.optional(&key, value);
            let last = explained.last_change.as_ref().map(|entry| {
                serde_json::json!({"seq": entry.seq, "at": entry.at, "origin": entry.origin})
            });
            let report = serde_json::json!({
                "key": explained.key,
                "value": shown(explained.value.as_ref()),
                "layer": explained.layer.as_ref().map(layer_name),
                "env": explained.env.as_ref().map(|(variable, value)| serde_json::json!({"variable": variable, "value": shown(Some(value))})),
                "database": shown(explained.database.as_ref()),
                "last_change": last,
                "default": shown(explained.default.as_ref()),
                "shadowed": explained.shadowed,
            });
            out(&pretty(&report))?;
            if explained.value.is_none() {
                return Err(Failure::Missing(format!(
                    "'{key}' has no value in any layer"
                )));
            }
        }
        Command::History {
            key,
            limit,
            prefix,
            json,
            schema,
        } => {
            let rules = load_rules(&path, &schema)?;
            let store = open_read_only(&path)?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            let entries = if prefix {
                store.section_history(&key, limit)?
            } else {
                store.history(&key, limit)?
            };
            if entries.is_empty() && limit > 0 {
                // No rows for KEY itself: a section (keys below it now, or
                // rows below it in the log) needs --prefix; a key that is
                // neither there nor in the log is a missing target.
                let below =
                    !store.keys(&key).is_empty() || !store.section_history(&key, 1)?.is_empty();
                if !prefix && below {
                    return Err(Failure::Missing(format!(
                        "'{key}' is a section, not a key: use `history {key} --prefix` for the keys below it"
                    )));
                }
                if !below && !store.contains(&key) {
                    return Err(Failure::Missing(format!(
                        "no key or section '{key}' in {} and no history for it",
                        path.display()
                    )));
                }
            }
            for entry in entries {
                out(&output::history_line(&secrets.history_entry(&entry), json))?;
            }
        }
        Command::Revert {
            seq,
            to,
            schema,
            dry,
        } => {
            let store = open_for(&path, &schema, &dry)?;
            let point = resolve(&store, &seq)?;
            let seq = point.seq;
            if to && seq > newest_seq(&store)? {
                return Err(Failure::Missing(format!(
                    "{} is not in the change log (the newest is {})",
                    point.label,
                    newest_seq(&store)?
                )));
            }
            if dry.dry_run {
                let plan = store
                    .plan(|store| {
                        if to {
                            store.revert_to(seq)
                        } else {
                            store.revert(seq)
                        }
                    })
                    .map_err(|error| point.refuse(error))?;
                let secrets = secrets(&store, load_rules(&path, &schema)?.as_ref(), show_secrets)?;
                return print_plan(plan, &dry, &secrets);
            }
            let commit = if to {
                let commit = store.revert_to(seq).map_err(|error| point.refuse(error))?;
                // `revert_to` of a seq after the newest changes nothing; the
                // write caught up with the log first, so a seq beyond
                // `commit.seq` was not in the log when it ran.
                if commit.changes == 0 && seq > commit.seq {
                    return Err(Failure::Missing(format!(
                        "seq {seq} is not in the change log (the newest is {})",
                        commit.seq
                    )));
                }
                commit
            } else {
                store.revert(seq)?
            };
            out_committed(commit.seq)?;
        }
        Command::Diff {
            from,
            to,
            prefix,
            json,
        } => {
            let prefix = prefix.unwrap_or_default();
            livesettings::validate_prefix(&prefix)?;
            let store = open_read_only(&path)?;
            let from = resolve(&store, &from)?;
            let to = to.map(|to| resolve(&store, &to)).transpose()?;
            let changes = store
                .diff(from.seq, to.as_ref().map(|to| to.seq))
                .map_err(|error| match &to {
                    // Which point is out of reach: the older one, normally.
                    Some(to) if to.seq < from.seq => to.refuse(error),
                    _ => from.refuse(error),
                })?;
            let under = |key: &str| {
                prefix.is_empty()
                    || key == prefix
                    || key
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            };
            let changes: Vec<_> = changes.into_iter().filter(|c| under(&c.key)).collect();
            let rules = load_rules(&path, &SchemaArg { schema: None })?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            for text in diff_output::lines(&changes, json, &secrets) {
                out(&text)?;
            }
        }
        Command::Checkpoint {
            name,
            list,
            delete,
            json,
        } => {
            if list {
                let store = open_read_only(&path)?;
                for checkpoint in store.checkpoints()? {
                    out(&if json {
                        serde_json::json!({"name": checkpoint.name, "seq": checkpoint.seq, "at": checkpoint.at})
                            .to_string()
                    } else {
                        format!("{}\t{}\t{}", checkpoint.name, checkpoint.seq, checkpoint.at)
                    })?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let Some(name) = name else {
                return Err(Failure::Missing(
                    "give a checkpoint NAME (or --list)".to_owned(),
                ));
            };
            livesettings::validate_checkpoint_name(&name)?;
            let store = open(&path, WatchMode::Off)?;
            if delete {
                if !store.delete_checkpoint(&name)? {
                    return Err(Failure::Missing(format!(
                        "no checkpoint '{name}' in {}",
                        path.display()
                    )));
                }
                note(&format!("deleted the checkpoint '{name}'"));
                return Ok(ExitCode::SUCCESS);
            }
            let (checkpoint, moved_from) = store.checkpoint(&name)?;
            match moved_from {
                Some(before) if before != checkpoint.seq => note(&format!(
                    "moved the checkpoint '{name}' from seq {before} to seq {}",
                    checkpoint.seq
                )),
                Some(_) => note(&format!(
                    "the checkpoint '{name}' already named seq {} (its time is updated)",
                    checkpoint.seq
                )),
                None => note(&format!("checkpoint '{name}' at seq {}", checkpoint.seq)),
            }
            out(&checkpoint.seq.to_string())?;
        }
        Command::Prune { keep, older_than } => {
            if keep.is_none() && older_than.is_none() {
                return Err(Failure::Error(Error::InvalidOption {
                    option: "prune",
                    reason: "give --keep N and/or --older-than SECS".to_owned(),
                }));
            }
            let store = open(&path, WatchMode::Off)?;
            let deleted = store.prune(Retention {
                keep_last: keep,
                max_age: older_than.map(std::time::Duration::from_secs),
            })?;
            out(&deleted.to_string())?;
        }
        Command::Check { schema } => {
            let store = open_read_only(&path)?;
            let rules = load_rules(&path, &schema)?;
            let secrets = secrets(&store, rules.as_ref(), show_secrets)?;
            let Some(rules) = rules else {
                out(&format!(
                    "no schemas registered (give --schema FILE, set SETTINGS_SCHEMA_PATH, or put {} beside the database)",
                    schema_default(&path).display()
                ))?;
                return Ok(ExitCode::SUCCESS);
            };
            let violations = rules.check(&store.snapshot());
            for violation in &violations {
                out(&format!(
                    "{}: {} is {}",
                    violation.key,
                    secrets.display(&violation.key, &violation.value),
                    violation.reason
                ))?;
            }
            if !violations.is_empty() {
                note(&format!(
                    "livesettings: {} settings break the rules",
                    violations.len()
                ));
                return Ok(ExitCode::from(1));
            }
            out(&format!(
                "ok: {} keys checked against {} rules",
                store.snapshot().len(),
                rules.rules.len()
            ))?;
        }
        Command::Stats { json } => {
            let store = open_read_only(&path)?;
            let stats = stats::read(&store)?;
            store.close()?;
            if json {
                out(&stats.to_json().to_string())?;
            } else {
                out(&stats.table())?;
            }
        }
        Command::Status {
            json,
            wait,
            timeout,
            expire_after,
        } => {
            let request = status::Request {
                json,
                wait,
                timeout: seconds(timeout),
                expire_after: seconds(expire_after),
            };
            return status::run(&path, &request, || open_read_only(&path));
        }
        Command::Serve(serve) => {
            // Read before anything is opened, so a bad file writes nothing.
            let rules = load_rules(&path, &serve.schema)?;
            return crate::serve::run(&path, &serve, rules);
        }
        #[cfg(feature = "nats")]
        Command::Sync(args) => return crate::sync::run(&path, args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "livesettings",
                &mut script,
            );
            out(String::from_utf8_lossy(&script).trim_end())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration from a number of seconds given on the command line
/// (negative or not a number: zero; too large: saturated).
fn seconds(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(std::time::Duration::MAX)
}

/// Opens an existing database for a command that only reads (`get`,
/// `export`, `history`, `check`, `stats`): read-only, so it never writes
/// anything into or beside the file (no schema, no `-wal`/`-shm` owned by
/// whoever ran it), and a typo in `--db` creates nothing.
fn open_read_only(path: &Path) -> Result<Store, Error> {
    if !path.exists() {
        return Err(Error::Io {
            context: format!(
                "no database at {} (create one with `livesettings init`, or pass --db)",
                path.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    options(WatchMode::Off).read_only().open(path)
}

/// Opens the database for a writing command, with the rules file's rules
/// registered: the library then refuses a write they refuse, naming the
/// key, the value and the rule, exactly as for a running `watch`. The rules
/// file is read before anything is opened, so a bad one writes nothing.
fn open_for_writing(path: &Path, schema: &SchemaArg) -> Result<Store, Error> {
    let rules = load_rules(path, schema)?;
    let store = open(path, WatchMode::Off)?;
    if let Some(rules) = rules {
        store.add_rules(&rules)?;
    }
    Ok(store)
}

/// Opens the database for a writing command that may be a dry run: a dry
/// run creates nothing, so it needs an existing database.
fn open_for(path: &Path, schema: &SchemaArg, dry: &DryRun) -> Result<Store, Failure> {
    if dry.dry_run && !path.exists() {
        return Err(Failure::Missing(format!(
            "no database at {} (a dry run creates nothing)",
            path.display()
        )));
    }
    Ok(open_for_writing(path, schema)?)
}

/// Opens the database for a command that writes (or `watch`), creating it
/// when missing. A zero-length file is set up: it holds nothing to lose.
/// Another application's SQLite file is refused (`init --adopt` takes it).
fn open(path: &Path, watch: WatchMode) -> Result<Store, Error> {
    options(watch).open(path)
}

/// The CLI's options; the commands that read effective values get the
/// environment overrides of `--env-prefix`.
fn options(watch: WatchMode) -> Options {
    let options = Options::new()
        .with_origin("livesettings-cli")
        .with_watch(watch);
    match ENV_PREFIX.get() {
        Some(prefix) => options.with_env_prefix(prefix.as_str()),
        None => options,
    }
}

/// What a command that prints values redacts: the secret patterns of
/// `rules` are registered on `store` first (so that its log lines hide
/// those values too, whatever `show`), then every secret the store knows,
/// or nothing with `--show-secrets`.
fn secrets(store: &Store, rules: Option<&Rules>, show: bool) -> Result<Secrets, Error> {
    for pattern in rules
        .map(Secrets::from_rules)
        .unwrap_or_default()
        .patterns()
    {
        store.mark_secret(pattern)?;
    }
    Ok(if show {
        Secrets::new()
    } else {
        store.secrets()
    })
}

fn layer_name(layer: &livesettings::Layer) -> &'static str {
    match layer {
        livesettings::Layer::Env(_) => "env",
        livesettings::Layer::Default => "default",
        _ => "database",
    }
}

/// The newest position in the log (or the snapshot's, if the log was pruned
/// empty): one indexed row read.
fn newest_seq(store: &Store) -> Result<i64, Error> {
    let logged = store
        .section_history("", 1)?
        .last()
        .map_or(0, |entry| entry.seq);
    Ok(logged.max(store.snapshot().seq()))
}

/// A point of the change log named on the command line, resolved.
struct Point {
    seq: i64,
    /// How to name it in a message: `seq 5`, `checkpoint 'x' (seq 5)`.
    label: String,
}

impl Point {
    /// A refusal because the log no longer reaches back to this point, in
    /// one line naming the oldest seq kept; other errors unchanged.
    fn refuse(&self, error: Error) -> Failure {
        match error {
            Error::UnknownSeq {
                seq,
                oldest: Some(oldest),
            } if seq < oldest => Failure::Missing(format!(
                "{}: the change log no longer reaches back that far (it was pruned; the oldest seq kept is {oldest})",
                self.label
            )),
            Error::UnknownSeq { oldest: None, .. } => Failure::Missing(format!(
                "{}: the change log is empty (pruned), so it no longer reaches back that far",
                self.label
            )),
            other => Failure::Error(other),
        }
    }
}

/// Reads a seq, a checkpoint name or a time.
fn resolve(store: &Store, text: &str) -> Result<Point, Failure> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let unresolved = Point {
        seq: 0,
        label: if digits {
            format!("seq {text}")
        } else {
            format!("'{text}'")
        },
    };
    let seq = store.resolve_point(text).map_err(|error| match error {
        Error::InvalidValue { reason, .. } => Failure::Missing(format!("'{text}': {reason}")),
        other => unresolved.refuse(other),
    })?;
    let label = if digits {
        format!("seq {seq}")
    } else {
        let checkpoint = livesettings::validate_checkpoint_name(text).is_ok()
            && store.checkpoints()?.iter().any(|found| found.name == text);
        if checkpoint {
            format!("checkpoint '{text}' (seq {seq})")
        } else {
            format!("{text} (seq {seq})")
        }
    };
    Ok(Point { seq, label })
}

/// Prints a dry run's changes (stdout) and a summary (stderr); a refused
/// write exits 1 with the refusal.
fn print_plan(plan: Plan, dry: &DryRun, secrets: &Secrets) -> Result<ExitCode, Failure> {
    if let Some(error) = plan.refused {
        note(&format!(
            "livesettings: dry run: the write would be refused: {error}"
        ));
        return Ok(ExitCode::from(1));
    }
    for text in diff_output::lines(&plan.changes, dry.json, secrets) {
        out(&text)?;
    }
    note(&format!(
        "dry run: {} keys would change; nothing was written",
        plan.changes.len()
    ));
    Ok(ExitCode::SUCCESS)
}

fn missing_key(key: &str, path: &Path) -> String {
    format!(
        "no key '{key}' in {} (use --recursive for a section)",
        path.display()
    )
}

/// Whether a JSON tree holds at least one leaf (`{}` and `{"a": {}}` hold
/// none: writing them changes nothing).
fn has_leaf(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().any(has_leaf),
        _ => true,
    }
}

/// Seeds the demo tree into an empty database with --demo, then inserts the
/// missing keys from --defaults. Nothing is seeded otherwise.
fn seed_defaults(store: &Store, seed: &Seed) -> Result<(), Error> {
    if seed.no_defaults {
        log::debug!("--no-defaults is deprecated and has no effect: nothing is seeded by default");
    }
    // Both files are read before anything is written.
    let demo = if seed.demo && store.snapshot().is_empty() {
        Some(
            serde_json::from_str::<Value>(DEMO_DEFAULTS).map_err(|source| Error::Json {
                context: "bundled demo settings".to_owned(),
                source,
            })?,
        )
    } else {
        None
    };
    let file = seed
        .defaults
        .as_deref()
        .map(|file| read_document(file, None, ""))
        .transpose()?;
    for document in demo.iter().chain(file.iter()) {
        let commit = store.seed(document)?;
        if commit.changes > 0 {
            log::info!("seeded {} default keys", commit.changes);
        }
    }
    Ok(())
}

/// Reads a document from a file or `-` (stdin), in `format` or else the
/// one its extension names (JSON by default), as the settings at or below
/// `base`.
fn read_document(file: &Path, format: Option<Format>, base: &str) -> Result<Value, Error> {
    let name = file.display().to_string();
    let mut bytes = Vec::new();
    let read = if name == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|source| Error::Io {
        context: format!("cannot read {name}"),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|error| Error::InvalidValue {
        key: String::new(),
        reason: format!(
            "{name} is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ),
    })?;
    let format = Format::choose(format, (name != "-").then_some(file));
    format.parse(&name, base, &text)
}

/// Writes an exported document to `file`, whole or not at all: into a
/// temporary file beside it, renamed over it once written.
fn write_document(file: &Path, text: &str) -> Result<(), Error> {
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{text}\n"))
        .and_then(|()| std::fs::rename(&temporary, file))
        .map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            Error::Io {
                context: format!("cannot write {}", file.display()),
                source,
            }
        })
}

/// The rules file: --schema, else $SETTINGS_SCHEMA_PATH, else
/// `DB.schema.json` when it exists.
fn load_rules(db: &Path, schema: &SchemaArg) -> Result<Option<Rules>, Error> {
    let file = schema
        .schema
        .clone()
        .or_else(|| std::env::var_os("SETTINGS_SCHEMA_PATH").map(std::path::PathBuf::from))
        .or_else(|| Some(schema_default(db)).filter(|file| file.exists()));
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
        context: format!("cannot read the rules file {}", file.display()),
        source,
    })?;
    Rules::from_json(&text).map(Some)
}

fn schema_default(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".schema.json");
    name.into()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
