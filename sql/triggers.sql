-- Change-log triggers on `settings` (schema version 2). AFTER triggers log
-- what was stored: an UPSERT fires BEFORE INSERT and then AFTER UPDATE, and
-- INSERT OR REPLACE fires AFTER INSERT without a delete. Dropped and
-- recreated together whenever a store finds one missing or migrates.

DROP TRIGGER IF EXISTS settings_log_before_insert;
DROP TRIGGER IF EXISTS settings_log_insert;
DROP TRIGGER IF EXISTS settings_log_update;
DROP TRIGGER IF EXISTS settings_log_delete;

-- INSERT OR REPLACE deletes the row it replaces without firing the delete
-- trigger, so the value being replaced is kept aside here, while the row
-- still exists, for the AFTER INSERT trigger to log as `old` (the key's last
-- log row may have been pruned). Always cleared first, so what the AFTER
-- INSERT trigger finds is the value of this very insert's predecessor.
CREATE TRIGGER settings_log_before_insert BEFORE INSERT ON settings
BEGIN
    DELETE FROM settings_replaced WHERE key = NEW.key;
    INSERT INTO settings_replaced (key, value)
        SELECT key, value FROM settings WHERE key = NEW.key;
END;

-- A replace that stores the same value logs nothing, like an update.
CREATE TRIGGER settings_log_insert AFTER INSERT ON settings
BEGIN
    INSERT INTO settings_log (key, old, new)
        SELECT NEW.key,
               (SELECT value FROM settings_replaced WHERE key = NEW.key),
               NEW.value
        WHERE NOT EXISTS (SELECT 1 FROM settings_replaced
                          WHERE key = NEW.key AND value IS NEW.value);
    DELETE FROM settings_replaced WHERE key = NEW.key;
END;

-- An update that changes nothing logs nothing. An update of the key column
-- logs the old key's removal and the new key's insertion. (An UPSERT that
-- updates leaves the BEFORE INSERT trigger's note behind: cleared here.)
CREATE TRIGGER settings_log_update AFTER UPDATE ON settings
WHEN OLD.value IS NOT NEW.value OR OLD.key IS NOT NEW.key
BEGIN
    INSERT INTO settings_log (key, old, new)
        SELECT OLD.key, OLD.value, NULL WHERE OLD.key IS NOT NEW.key;
    INSERT INTO settings_log (key, old, new)
        SELECT NEW.key,
               CASE WHEN OLD.key IS NEW.key THEN OLD.value END,
               NEW.value;
    DELETE FROM settings_replaced WHERE key = NEW.key;
END;

CREATE TRIGGER settings_log_delete AFTER DELETE ON settings
BEGIN
    INSERT INTO settings_log (key, old, new) VALUES (OLD.key, OLD.value, NULL);
END;
