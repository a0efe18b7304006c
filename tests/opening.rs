//! How a store opens the file at its path: read-only stores and read
//! commands write nothing (no schema, no side files, no chown), files of
//! other applications are refused, paths are never URIs, and a failed open
//! names its real cause (read-only mount, immutable folder, full disk).
//!
//! "A process that cannot write" is user `nobody` (through `setpriv`) when
//! the tests run as root, whom permission bits do not stop, and this user
//! with the write bits removed otherwise (see `NoWriteAccess`).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use livesettings::{Error, Event, Options, Retention, Store, WatchMode};
use serde_json::{Value, json};

use support::*;

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn side_files(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal", "-livesettings-follow"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|side| side.exists())
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A database with `a.b = 1` (and `a.c = "x"`) written by the CLI, closed:
/// no side files beside it.
fn closed_db() -> TempDb {
    let db = TempDb::new();
    cli_ok(&db.path, &["set", "a.b", "1"]);
    cli_ok(&db.path, &["set", "a.c", "\"x\""]);
    assert!(side_files(&db.path).is_empty(), "the CLI left side files");
    db
}

#[test]
fn get_by_a_user_without_write_access_leaves_no_side_files_and_the_owners_set_still_works() {
    let reader = NoWriteAccess::new();
    let db = closed_db();
    // The folder is writable by the reader (like /tmp): SQLite could create
    // -wal and -shm there, owned by the reader. The file is not writable.
    chmod(db.dir.path(), 0o1777);
    reader.deny(&db.path, 0o644);
    let before = folder_state(db.dir.path());
    let output = reader.cli(&db.path, &["get", "a.b"]);
    assert!(
        output.status.success(),
        "get failed: {}",
        stderr_of(&output)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    assert_eq!(
        folder_state(db.dir.path()),
        before,
        "get created, changed or chowned a file"
    );
    for command in [&["export"][..], &["history", "a.b"], &["stats"], &["check"]] {
        let output = reader.cli(&db.path, command);
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            stderr_of(&output)
        );
        assert_eq!(folder_state(db.dir.path()), before, "{command:?} wrote");
    }
    reader.allow(&db.path);
    assert_eq!(cli_ok(&db.path, &["set", "a.b", "2"]).trim(), "3");
    assert_eq!(db_value(&db.path, "a.b"), Some(json!(2)));
}

#[test]
fn read_commands_in_a_folder_the_reader_cannot_write_work_and_write_nothing() {
    let reader = NoWriteAccess::new();
    let db = closed_db();
    reader.deny(&db.path, 0o644);
    reader.deny(db.dir.path(), 0o755);
    let before = folder_state(db.dir.path());
    let get = reader.cli(&db.path, &["get", "a"]);
    assert!(get.status.success(), "get failed: {}", stderr_of(&get));
    let tree: Value = serde_json::from_slice(&get.stdout).expect("get prints JSON");
    assert_eq!(tree, json!({"b": 1, "c": "x"}));
    let history = reader.cli(&db.path, &["history", "a.b", "--json"]);
    assert!(
        history.status.success(),
        "history failed: {}",
        stderr_of(&history)
    );
    assert_eq!(String::from_utf8_lossy(&history.stdout).lines().count(), 1);
    for command in [&["export"][..], &["stats", "--json"], &["check"]] {
        let output = reader.cli(&db.path, command);
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            stderr_of(&output)
        );
    }
    assert_eq!(folder_state(db.dir.path()), before);
    reader.allow(db.dir.path());
    reader.allow(&db.path);
}

#[test]
fn set_by_a_user_who_cannot_write_names_the_cause_and_writes_nothing() {
    let reader = NoWriteAccess::new();
    let db = closed_db();
    reader.deny(&db.path, 0o644);
    reader.deny(db.dir.path(), 0o755);
    let before = folder_state(db.dir.path());
    let output = reader.cli(&db.path, &["set", "a.b", "5"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let message = stderr_of(&output);
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(!message.contains("is it a SQLite file"), "{message}");
    assert_eq!(folder_state(db.dir.path()), before);
    // A new database in that folder cannot be created either, and says why.
    let fresh = db.sibling("new.db");
    let output = reader.cli(&fresh, &["set", "a.b", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("permission denied"),
        "{}",
        stderr_of(&output)
    );
    assert!(!fresh.exists());
    reader.allow(db.dir.path());
    reader.allow(&db.path);
}

/// `watch` opens through `Store::open` (a store that writes when it can):
/// in a folder the process cannot write it switches to read-only by itself,
/// and follows the owner's writes, first on a file without side files
/// (read immutable, then opened again), then with an open writer.
#[test]
fn store_open_in_a_folder_it_cannot_write_switches_to_read_only_and_follows_the_owner() {
    let reader = NoWriteAccess::new();
    let db = closed_db();
    reader.deny(&db.path, 0o644);
    reader.deny(db.dir.path(), 0o755);
    let mut watch = reader
        .command(&db.path, &["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch as the reader");
    let stdout = watch.stdout.take().expect("piped stdout");
    let (send, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Value {
        let line = lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no line from watch: {what}"));
        serde_json::from_str(&line).expect("watch prints JSON lines")
    };
    assert_eq!(next("ready")["event"], "ready");
    assert!(side_files(&db.path).is_empty(), "watch created side files");
    reader.allow(db.dir.path());
    reader.allow(&db.path);
    // The owner writes and closes: the commit is in the main file.
    cli_ok(&db.path, &["set", "a.b", "2"]);
    let change = loop {
        let line = next("the owner's first change");
        if line["event"] == "change" {
            break line;
        }
    };
    assert_eq!(
        (change["key"].clone(), change["new"].clone()),
        (json!("a.b"), json!(2))
    );
    // An open writer (side files stay): followed through them.
    let mut shell = Sqlite3Session::open(&db.path);
    shell.send("UPDATE settings SET value = '3' WHERE key = 'a.b';");
    let change = loop {
        let line = next("the open session's change");
        if line["event"] == "change" && line["new"] == json!(3) {
            break line;
        }
    };
    assert_eq!(change["key"], "a.b");
    shell.send("UPDATE settings SET value = '4' WHERE key = 'a.b';");
    loop {
        let line = next("the open session's second change");
        if line["event"] == "change" && line["new"] == json!(4) {
            break;
        }
    }
    let owner = std::fs::metadata(&db.path).expect("stat").uid();
    for side in side_files(&db.path) {
        assert_eq!(
            std::fs::metadata(&side).expect("stat a side file").uid(),
            owner,
            "{} is not the owner's",
            side.display()
        );
        assert!(!side.to_string_lossy().ends_with("-follow"));
    }
    shell.finish();
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn read_only_store_writes_nothing_refuses_writes_and_follows_other_processes() {
    let db = closed_db();
    // A dropped trigger a writing store would recreate.
    sqlite3(&db.path, "DROP TRIGGER settings_log_delete;");
    let before = folder_state(db.dir.path());
    let store = Options::new()
        .read_only()
        .with_seed(json!({"new": {"key": 1}}))
        .with_retention(Retention {
            keep_last: Some(0),
            max_age: None,
        })
        .open(&db.path)
        .expect("open read-only");
    assert!(store.is_read_only());
    assert_eq!(store.read_only_cause(), None);
    assert_eq!(store.get::<i64>("a.b").expect("a.b"), Some(1));
    assert_eq!(store.get::<i64>("new.key").expect("no defaults"), None);
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct A {
        b: i64,
        c: String,
    }
    assert_eq!(
        store.section::<A>("a").expect("section"),
        A {
            b: 1,
            c: "x".to_owned()
        }
    );
    assert_eq!(store.history("a.b", 10).expect("history").len(), 1);
    let read_only = |outcome: livesettings::Result<_>| {
        assert!(
            matches!(outcome, Err(Error::ReadOnly { .. })),
            "{outcome:?}"
        );
    };
    read_only(store.set("a.b", &2).map(drop));
    read_only(store.unset("a.b").map(drop));
    read_only(store.merge(&json!({"z": 1})).map(drop));
    read_only(store.seed(&json!({"z": 1})).map(drop));
    read_only(store.write(|_| Ok(())));
    read_only(store.revert(1).map(drop));
    read_only(
        store
            .prune(Retention {
                keep_last: Some(0),
                max_age: None,
            })
            .map(drop),
    );
    assert_eq!(
        folder_state(db.dir.path()),
        before,
        "the read-only store wrote"
    );
    // (The CLI's write below recreates it: that one writes.)
    assert_eq!(
        db_scalar(
            &db.path,
            "SELECT count(*) FROM sqlite_master WHERE name = 'settings_log_delete'"
        )
        .as_deref(),
        Some("0"),
        "the read-only store recreated a trigger"
    );
    let events = store.subscribe("a").expect("subscribe");
    // Another process writes and closes.
    cli_ok(&db.path, &["set", "a.b", "2"]);
    // Read immutable until now (no side files): opened again, which is a
    // reload with per-key events.
    loop {
        match next_event(&events, "the CLI's write") {
            Event::Change(change) => {
                assert_eq!(
                    (change.key.as_str(), change.new_value().cloned()),
                    ("a.b", Some(json!(2)))
                );
                break;
            }
            Event::Reloaded { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // An open session, with side files that stay.
    let mut shell = Sqlite3Session::open(&db.path);
    shell.send("UPDATE settings SET value = '3' WHERE key = 'a.b';");
    loop {
        match next_event(&events, "the session's write") {
            Event::Change(change) if change.new_value() == Some(&json!(3)) => break,
            _ => {}
        }
    }
    shell.send("UPDATE settings SET value = '\"y\"' WHERE key = 'a.c';");
    loop {
        match next_event(&events, "the session's second write") {
            Event::Change(change) if change.key == "a.c" => {
                assert_eq!(change.new_value(), Some(&json!("y")));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(store.get::<i64>("a.b").expect("a.b"), Some(3));
    shell.finish();
    store.close().expect("close");
    assert!(
        !side_files(&db.path)
            .iter()
            .any(|side| side.to_string_lossy().ends_with("-follow")),
        "the read-only store created its follow lock"
    );
}

#[test]
fn read_only_store_does_not_migrate_or_switch_journal_mode() {
    let db = closed_db();
    sqlite3(
        &db.path,
        "PRAGMA journal_mode=DELETE; UPDATE livesettings_meta SET value = '1' WHERE name = 'schema_version';",
    );
    let before = folder_state(db.dir.path());
    let error = Options::new()
        .read_only()
        .open(&db.path)
        .expect_err("an old schema needs a migration");
    assert!(error.to_string().contains("migrat"), "{error}");
    assert_eq!(folder_state(db.dir.path()), before);
    sqlite3(
        &db.path,
        &format!(
            "UPDATE livesettings_meta SET value = '{}' WHERE name = 'schema_version';",
            livesettings::SCHEMA_VERSION
        ),
    );
    let before = folder_state(db.dir.path());
    let store = Options::new()
        .read_only()
        .with_watch(WatchMode::Off)
        .open(&db.path)
        .expect("open read-only");
    assert_eq!(store.get::<i64>("a.b").expect("a.b"), Some(1));
    store.close().expect("close");
    assert_eq!(folder_state(db.dir.path()), before, "journal mode changed");
}

#[test]
fn a_foreign_sqlite_file_is_refused_by_every_command_and_left_untouched() {
    let db = TempDb::new();
    sqlite3(
        &db.path,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');",
    );
    let before = folder_state(db.dir.path());
    let import = db.sibling("doc.json");
    std::fs::write(&import, r#"{"a":{"b":1}}"#).expect("write the document");
    let import = import.to_string_lossy().into_owned();
    let commands: [&[&str]; 12] = [
        &["get", "a.b"],
        &["set", "a.b", "1"],
        &["unset", "a.b"],
        &["import", &import],
        &["export"],
        &["watch", "--json"],
        &["history", "a.b"],
        &["revert", "1"],
        &["prune", "--keep", "1"],
        &["check"],
        &["stats"],
        &["init"],
    ];
    let before_with_doc = folder_state(db.dir.path());
    for command in commands {
        let output = cli(&db.path, command);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command:?}: {}",
            stderr_of(&output)
        );
        let message = stderr_of(&output);
        assert!(
            message.contains("not a livesettings database") && message.contains("users"),
            "{command:?}: {message}"
        );
        assert_eq!(
            folder_state(db.dir.path()),
            before_with_doc,
            "{command:?} wrote"
        );
    }
    let error = Store::open(&db.path).expect_err("Store::open refuses it");
    assert!(matches!(error, Error::NotLivesettings { .. }), "{error:?}");
    assert_eq!(folder_state(db.dir.path()).len(), before.len() + 1);
}

#[test]
fn init_adopt_adds_the_schema_to_a_foreign_file_and_keeps_its_tables() {
    let db = TempDb::new();
    sqlite3(
        &db.path,
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');",
    );
    cli_ok(&db.path, &["init", "--adopt"]);
    assert_eq!(cli_ok(&db.path, &["set", "a.b", "1"]).trim(), "1");
    assert_eq!(cli_ok(&db.path, &["get", "a.b"]).trim(), "1");
    assert_eq!(
        db_scalar(&db.path, "SELECT name FROM users WHERE id = 1").as_deref(),
        Some("ada")
    );
    let store = Options::new()
        .adopt_foreign()
        .with_watch(WatchMode::Off)
        .open(db.sibling("other.db"))
        .expect("adopt_foreign also opens a new file");
    store.close().expect("close");
}

#[test]
fn an_empty_file_is_not_set_up_by_read_commands_but_by_init_and_set() {
    let db = TempDb::new();
    std::fs::write(&db.path, b"").expect("create an empty file");
    for command in [
        &["get", "a.b"][..],
        &["export"],
        &["stats"],
        &["history", "a.b"],
        &["check"],
    ] {
        let output = cli(&db.path, command);
        assert_eq!(output.status.code(), Some(1), "{command:?}");
        let message = stderr_of(&output);
        assert!(
            message.contains("empty file, not a livesettings database yet (run init)"),
            "{command:?}: {message}"
        );
        assert_eq!(std::fs::metadata(&db.path).expect("stat").len(), 0);
        assert!(
            side_files(&db.path).is_empty(),
            "{command:?} created side files"
        );
    }
    let error = Options::new()
        .read_only()
        .open(&db.path)
        .expect_err("a read-only store cannot set up an empty file");
    assert!(matches!(error, Error::NotLivesettings { .. }), "{error:?}");
    assert_eq!(cli_ok(&db.path, &["set", "a.b", "1"]).trim(), "1");
    let other = db.sibling("init.db");
    std::fs::write(&other, b"").expect("create an empty file");
    cli_ok(&other, &["init"]);
    assert!(table_exists(&other, "livesettings_meta"));
}

#[test]
fn paths_that_look_like_sqlite_uris_are_file_names() {
    let db = TempDb::new();
    let run = |args: &[&str]| {
        let output = Command::new(cli_path())
            .current_dir(db.dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("run the CLI");
        assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    // In memory, the value would be gone when the first process exits.
    run(&["--db", "file:u.db?mode=memory", "set", "a.b", "1"]);
    assert_eq!(run(&["--db", "file:u.db?mode=memory", "get", "a.b"]), "1");
    let literal = db.dir.path().join("file:u.db?mode=memory");
    assert_eq!(db_value(&literal, "a.b"), Some(json!(1)));
    assert!(!db.dir.path().join("u.db").exists());
    // A URI parameter cannot reach SQLite through the name either.
    run(&["--db", "file:x.db", "set", "a.b", "2"]);
    assert_eq!(
        run(&["--db", "file:x.db", "export"]),
        "{\n  \"a\": {\n    \"b\": 2\n  }\n}"
    );
    assert!(db.dir.path().join("file:x.db").exists());
    // The read-only path (an immutable URI built from the name) too.
    let odd = db.sibling("odd?immutable=0&mode=memory#x%41.db");
    cli_ok(&odd, &["set", "a.b", "3"]);
    let store = Options::new()
        .read_only()
        .with_watch(WatchMode::Off)
        .open(&odd)
        .expect("open the odd name read-only");
    assert_eq!(store.get::<i64>("a.b").expect("a.b"), Some(3));
}

// ---------------------------------------------------------------------------
// Causes only root can set up here: mounts and `chattr +i`.

/// A small tmpfs mounted in a temporary folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying so) when this process cannot mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("NOT TESTED: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "running as root, mount must work here");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {option}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `get` works and `set` fails naming `cause`, without the misleading
/// "is it a SQLite file?" and with "nothing was written".
fn assert_reads_work_and_set_names(db: &Path, cause: &str) {
    assert_eq!(cli_ok(db, &["get", "a.b"]).trim(), "1");
    let output = cli(db, &["set", "a.b", "9"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let message = stderr_of(&output);
    assert!(message.contains(cause), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(!message.contains("is it a SQLite file"), "{message}");
}

#[test]
fn on_a_read_only_mount_reads_work_and_set_names_the_read_only_filesystem() {
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        return;
    };
    let db = tmpfs.path().join("settings.db");
    cli_ok(&db, &["set", "a.b", "1"]);
    tmpfs.remount("ro");
    assert_reads_work_and_set_names(&db, "read-only filesystem");
    let store = Store::open(&db).expect("Store::open on a read-only mount");
    assert!(store.is_read_only());
    assert!(
        store
            .read_only_cause()
            .is_some_and(|cause| cause.contains("read-only filesystem")),
        "{:?}",
        store.read_only_cause()
    );
    let error = store.set("a.b", &2).expect_err("no writes");
    assert!(
        error.to_string().contains("read-only filesystem"),
        "{error}"
    );
    drop(store);
    tmpfs.remount("rw");
}

#[test]
fn in_an_immutable_folder_reads_work_and_set_names_it() {
    if !is_root() {
        eprintln!("NOT TESTED: chattr +i needs root");
        return;
    }
    let db = closed_db();
    let status = Command::new("chattr")
        .arg("+i")
        .arg(db.dir.path())
        .status()
        .expect("run chattr");
    assert!(status.success(), "chattr +i works on this machine's /tmp");
    let outcome = std::panic::catch_unwind(|| {
        assert_reads_work_and_set_names(&db.path, "not permitted");
    });
    let _ = Command::new("chattr").arg("-i").arg(db.dir.path()).status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn on_a_full_disk_reads_work_and_set_names_the_full_disk() {
    let Some(tmpfs) = Tmpfs::mount("1m") else {
        return;
    };
    let db = tmpfs.path().join("settings.db");
    cli_ok(&db, &["set", "a.b", "1"]);
    // Fill every block that is left.
    let filler = tmpfs.path().join("filler");
    let mut file = std::fs::File::create(&filler).expect("create the filler");
    let block = vec![0u8; 4096];
    loop {
        use std::io::Write;
        if file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            break;
        }
    }
    drop(file);
    let before = std::fs::read(&db).expect("read the database");
    assert_reads_work_and_set_names(&db, "is full");
    // SQLite may leave an empty -wal and a stub -shm it could not grow;
    // the database itself is untouched.
    assert_eq!(std::fs::read(&db).expect("read the database"), before);
    std::fs::remove_file(&filler).expect("free the disk");
    assert_eq!(cli_ok(&db, &["set", "a.b", "2"]).trim(), "2");
    assert_eq!(cli_ok(&db, &["get", "a.b"]).trim(), "2");
}

/// A writer that crashed leaves a `-wal` with commits; without its `-shm` a
/// read-only store cannot read them without creating the `-shm`: it says so
/// and creates nothing (reading the main file alone would serve stale
/// values).
#[test]
fn read_only_store_refuses_a_wal_with_commits_but_no_shm_and_creates_nothing() {
    let db = closed_db();
    let crash = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute(\"UPDATE settings SET value = '7' WHERE key = 'a.b'\")\n\
             os._exit(0)\n",
        )
        .arg(&db.path)
        .status()
        .expect("run python3");
    assert!(crash.success());
    let mut shm = db.path.as_os_str().to_owned();
    shm.push("-shm");
    std::fs::remove_file(PathBuf::from(shm)).expect("remove the -shm");
    let before = folder_state(db.dir.path());
    let error = Options::new()
        .read_only()
        .open(&db.path)
        .expect_err("the WAL cannot be read");
    assert!(
        matches!(error, Error::Unusable { .. }) && error.to_string().contains("-shm is missing"),
        "{error}"
    );
    assert_eq!(folder_state(db.dir.path()), before);
    // A store that writes recovers it.
    assert_eq!(cli_ok(&db.path, &["set", "a.c", "1"]).trim(), "4");
    assert_eq!(cli_ok(&db.path, &["get", "a.b"]).trim(), "7");
}
