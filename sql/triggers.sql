-- Change-log triggers on `settings`. AFTER triggers only: an UPSERT fires
-- BEFORE INSERT and then AFTER UPDATE, and INSERT OR REPLACE fires AFTER
-- INSERT without a delete, so only AFTER triggers see what was stored.
-- Recreated whenever a store finds one missing.

-- `old` comes from the key's last log row: INSERT OR REPLACE deletes the
-- previous row without firing the delete trigger, so this insert may be
-- replacing a value (NULL when the key was absent or last deleted).
CREATE TRIGGER IF NOT EXISTS settings_log_insert AFTER INSERT ON settings
BEGIN
    INSERT INTO settings_log (key, old, new) VALUES (
        NEW.key,
        (SELECT new FROM settings_log WHERE key = NEW.key ORDER BY seq DESC LIMIT 1),
        NEW.value);
END;

-- An update that changes nothing logs nothing. An update of the key column
-- logs the old key's removal and the new key's insertion.
CREATE TRIGGER IF NOT EXISTS settings_log_update AFTER UPDATE ON settings
WHEN OLD.value IS NOT NEW.value OR OLD.key IS NOT NEW.key
BEGIN
    INSERT INTO settings_log (key, old, new)
        SELECT OLD.key, OLD.value, NULL WHERE OLD.key IS NOT NEW.key;
    INSERT INTO settings_log (key, old, new)
        SELECT NEW.key,
               CASE WHEN OLD.key IS NEW.key THEN OLD.value END,
               NEW.value;
END;

CREATE TRIGGER IF NOT EXISTS settings_log_delete AFTER DELETE ON settings
BEGIN
    INSERT INTO settings_log (key, old, new) VALUES (OLD.key, OLD.value, NULL);
END;
