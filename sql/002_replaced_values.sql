-- livesettings schema, version 2: the value an INSERT OR REPLACE replaces is
-- logged as `old` even when the key's earlier log rows were pruned (version 1
-- took it from the key's last log row, and logged NULL after a prune). The
-- triggers themselves are in triggers.sql, recreated with this migration.

CREATE TABLE IF NOT EXISTS settings_replaced (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT
);
UPDATE livesettings_meta SET value = '2' WHERE name = 'schema_version';
