-- The fleet bridge's state (`livesettings sync`), kept in the settings file
-- itself so that a bucket entry and the revision it moves the bridge to are
-- committed by one transaction: a crash can neither skip nor repeat one.
-- Created idempotently by the bridge; stores ignore these tables. Written
-- for the 3.40 shell like the rest of the schema.

-- One row per bucket the file was synchronised with.
CREATE TABLE IF NOT EXISTS livesettings_fleet (
    bucket           TEXT PRIMARY KEY NOT NULL,
    -- The last bucket revision the inbox has handled (applied, recognised
    -- as this host's own push, or skipped as already known).
    applied_revision INTEGER NOT NULL DEFAULT 0,
    -- The last settings_log seq the outbox has handled (pushed, reported or
    -- found to need no push).
    pushed_seq       INTEGER NOT NULL DEFAULT 0
);

-- What this host last knew of each key in the bucket: the revision (its
-- own push's, or an applied entry's), the settings_log position at which it
-- learnt it, and the value at that revision (NULL: deleted). A push is
-- conditional on `revision`; a local change logged before `seq` was
-- already overwritten by the fleet.
CREATE TABLE IF NOT EXISTS livesettings_fleet_keys (
    bucket   TEXT NOT NULL,
    key      TEXT NOT NULL,
    revision INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    value    TEXT,
    PRIMARY KEY (bucket, key)
);

-- Local changes that did not become the fleet's: `conflict` (the fleet's
-- value won and was put back locally), `refused` (too large for the server,
-- never pushed), `invalid` (a bucket entry that is no livesettings setting).
CREATE TABLE IF NOT EXISTS livesettings_fleet_reports (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    key            TEXT NOT NULL,
    local_seq      INTEGER,
    local_value    TEXT,
    fleet_revision INTEGER,
    fleet_value    TEXT,
    undo_seq       INTEGER,
    reason         TEXT NOT NULL,
    at             TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
