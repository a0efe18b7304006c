//! One function per subcommand; every behaviour lives in the library.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use livesettings::{Error, Options, Retention, Rules, Store, WatchMode};
use serde_json::Value;

use crate::args::{Cli, Command, SchemaArg, Seed};
use crate::output;

/// The VisionFlow settings tree, used to seed an empty database by default.
const DEMO_DEFAULTS: &str = include_str!("../../../examples/visionflow-settings.json");

pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let path = cli.db_path();
    match cli.command {
        Command::Init { seed } => {
            let store = open(&path, WatchMode::Off)?;
            seed_defaults(&store, &seed)?;
            println!("{} keys in {}", store.snapshot().len(), path.display());
            store.close()?;
        }
        Command::Get { key } => {
            livesettings::validate_prefix(&key)?;
            let store = open_existing(&path)?;
            match store.subtree(&key)? {
                Some(value) => println!("{}", pretty(&value)),
                None => {
                    eprintln!(
                        "livesettings: no key or section '{key}' in {}",
                        path.display()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Set { key, value } => {
            // Check everything before opening: a failed command must not even
            // create the database file.
            livesettings::validate_key(&key)?;
            let parsed: Value = serde_json::from_str(&value).map_err(|error| Error::InvalidValue {
                key: key.clone(),
                reason: format!(
                    "'{value}' is not JSON ({error}); a string needs JSON quotes, e.g. '\"{value}\"'"
                ),
            })?;
            let store = open(&path, WatchMode::Off)?;
            let commit = if parsed.is_object() {
                // `set a.b '{"c":1}'` writes the section below a.b.
                let mut tree = serde_json::Map::new();
                tree.insert(key, parsed);
                store.merge_json(&Value::Object(tree))?
            } else {
                store.set(&key, &parsed)?
            };
            println!("{}", commit.seq);
        }
        Command::Unset { key, recursive } => {
            livesettings::validate_prefix(&key)?;
            let store = open(&path, WatchMode::Off)?;
            let commit = if recursive {
                store.unset_prefix(&key)?
            } else {
                livesettings::validate_key(&key)?;
                if !store.contains(&key) {
                    eprintln!(
                        "livesettings: no key '{key}' in {} (use --recursive for a section)",
                        path.display()
                    );
                    return Ok(ExitCode::from(1));
                }
                store.unset(&key)?
            };
            println!("{}", commit.seq);
        }
        Command::Import { file } => {
            let document = read_document(&file)?;
            let store = open(&path, WatchMode::Off)?;
            let commit = store.merge_json(&document)?;
            eprintln!(
                "imported: {} keys changed, seq {}",
                commit.changes, commit.seq
            );
        }
        Command::Export { prefix } => {
            let prefix = prefix.unwrap_or_default();
            livesettings::validate_prefix(&prefix)?;
            let store = open_existing(&path)?;
            let tree = store
                .subtree(&prefix)?
                .unwrap_or_else(|| Value::Object(Default::default()));
            println!("{}", pretty(&tree));
        }
        Command::Watch {
            prefix,
            json,
            poll,
            from,
            seed,
            schema,
        } => {
            let mode = match poll {
                Some(ms) => WatchMode::Poll {
                    interval: std::time::Duration::from_millis(ms.max(1)),
                },
                None => WatchMode::default(),
            };
            let store = open(&path, mode)?;
            seed_defaults(&store, &seed)?;
            if let Some(rules) = load_rules(&path, &schema)? {
                store.validate_rules(&rules)?;
            }
            output::watch(store, &prefix.unwrap_or_default(), json, from)?;
        }
        Command::History {
            key,
            limit,
            prefix,
            json,
        } => {
            let store = open_existing(&path)?;
            let entries = if prefix {
                store.history_prefix(&key, limit)?
            } else {
                store.history(&key, limit)?
            };
            for entry in entries {
                println!("{}", output::history_line(&entry, json));
            }
        }
        Command::Revert { seq, to } => {
            let store = open(&path, WatchMode::Off)?;
            let commit = if to {
                store.revert_to(seq)?
            } else {
                store.revert(seq)?
            };
            println!("{}", commit.seq);
        }
        Command::Prune { keep, older_than } => {
            if keep.is_none() && older_than.is_none() {
                return Err(Error::InvalidOption {
                    option: "prune",
                    reason: "give --keep N and/or --older-than SECS".to_owned(),
                });
            }
            let store = open(&path, WatchMode::Off)?;
            let deleted = store.prune(Retention {
                keep_last: keep,
                max_age: older_than.map(std::time::Duration::from_secs),
            })?;
            println!("{deleted}");
        }
        Command::Check { schema } => {
            let store = open_existing(&path)?;
            let Some(rules) = load_rules(&path, &schema)? else {
                println!(
                    "no schemas registered (give --schema FILE, set SETTINGS_SCHEMA_PATH, or put {} beside the database)",
                    schema_default(&path).display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let violations = rules.check(&store.snapshot());
            for violation in &violations {
                println!(
                    "{}: {} is {}",
                    violation.key, violation.value, violation.reason
                );
            }
            if !violations.is_empty() {
                eprintln!(
                    "livesettings: {} settings break the rules",
                    violations.len()
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "ok: {} keys checked against {} rules",
                store.snapshot().len(),
                rules.rules.len()
            );
        }
        Command::Stats => {
            let store = open_existing(&path)?;
            println!("{}", pretty(&output::stats_json(&store.stats())));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens an existing database for a command that only reads: a typo in
/// `--db` must not create an empty database.
fn open_existing(path: &Path) -> Result<Store, Error> {
    if !path.exists() {
        return Err(Error::Io {
            context: format!(
                "no database at {} (create one with `livesettings init`, or pass --db)",
                path.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    open(path, WatchMode::Off)
}

fn open(path: &Path, watch: WatchMode) -> Result<Store, Error> {
    Options::new()
        .with_origin("livesettings-cli")
        .with_watch(watch)
        .open(path)
}

/// Inserts missing keys from --defaults, or the demo tree into an empty
/// database unless --no-defaults.
fn seed_defaults(store: &Store, seed: &Seed) -> Result<(), Error> {
    let document = match (&seed.defaults, seed.no_defaults) {
        (Some(file), _) => read_document(file)?,
        (None, false) if store.snapshot().is_empty() => serde_json::from_str(DEMO_DEFAULTS)
            .map_err(|source| Error::Json {
                context: "bundled demo settings".to_owned(),
                source,
            })?,
        _ => return Ok(()),
    };
    let commit = store.set_defaults(&document)?;
    if commit.changes > 0 {
        log::info!("seeded {} default keys", commit.changes);
    }
    Ok(())
}

/// Reads a JSON document from a file or `-` (stdin).
fn read_document(file: &Path) -> Result<Value, Error> {
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
    serde_json::from_str(&text).map_err(|source| Error::Json {
        context: format!("{name} is not valid JSON"),
        source,
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
