-- livesettings schema, version 1 (002_replaced_values.sql moves it to 2).
--
-- Applied idempotently every time a store opens a database. Written for the
-- oldest `sqlite3` shell operators use (3.40): one-argument json_valid, no
-- STRICT tables, no jsonb.

-- Schema version and a random id that tells two database files apart.
CREATE TABLE IF NOT EXISTS livesettings_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO livesettings_meta (name, value) VALUES ('schema_version', '1');
INSERT OR IGNORE INTO livesettings_meta (name, value) VALUES ('instance_id', lower(hex(randomblob(16))));

-- One row per leaf setting: a dotted key and its value as JSON text.
-- The key rules match livesettings' key parser: 1 to 512 bytes, segments of
-- [A-Za-z0-9_-] separated by single dots.
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY NOT NULL CHECK (
              typeof(key) = 'text'
              AND length(CAST(key AS BLOB)) BETWEEN 1 AND 512
              -- GLOB stops at a NUL byte; a text length that differs from
              -- the byte length means a NUL or a non-ASCII character.
              AND length(key) = length(CAST(key AS BLOB))
              AND key NOT GLOB '*[^A-Za-z0-9_.-]*'
              AND key NOT GLOB '.*'
              AND key NOT GLOB '*.'
              AND key NOT GLOB '*..*'),
    value TEXT NOT NULL CHECK (typeof(value) = 'text' AND json_valid(value))
);

-- The change log: every insert, update and delete of `settings`, by any
-- writer, leaves one row per key here (see triggers.sql). AUTOINCREMENT keeps
-- `seq` increasing after old rows are pruned. `origin` is 'external' unless
-- the livesettings writer that made the change names itself; `session` is
-- that store's random id (NULL for other writers), so a store can tell its
-- own rows from those of another store with the same origin name.
CREATE TABLE IF NOT EXISTS settings_log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    key    TEXT NOT NULL,
    old    TEXT,
    new    TEXT,
    at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    origin TEXT NOT NULL DEFAULT 'external',
    session TEXT
);
CREATE INDEX IF NOT EXISTS settings_log_key ON settings_log (key, seq);
