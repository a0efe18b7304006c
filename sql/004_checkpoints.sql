-- livesettings schema, version 4: named checkpoints. A checkpoint is a
-- name for a change-log position (`livesettings checkpoint before-deploy`),
-- usable wherever a seq is (diff, revert --to, export --at, watch --from).
-- Stored in the database, so every process sees the same names. A
-- checkpoint whose seq the log was pruned past can no longer be reached
-- back to; it stays listed (with its seq) until deleted.

CREATE TABLE IF NOT EXISTS livesettings_checkpoints (
    name TEXT PRIMARY KEY NOT NULL CHECK (
             typeof(name) = 'text'
             AND length(CAST(name AS BLOB)) BETWEEN 1 AND 64
             AND length(name) = length(CAST(name AS BLOB))
             AND name NOT GLOB '*[^A-Za-z0-9_.-]*'),
    seq  INTEGER NOT NULL CHECK (typeof(seq) = 'integer' AND seq >= 0),
    at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
UPDATE livesettings_meta SET value = '4' WHERE name = 'schema_version';
