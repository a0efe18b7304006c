-- Triggers on `settings` (schema version 3): the change log, and the tree
-- shape. AFTER triggers log
-- what was stored: an UPSERT fires BEFORE INSERT and then AFTER UPDATE, and
-- INSERT OR REPLACE fires AFTER INSERT without a delete. Dropped and
-- recreated together whenever a store finds one missing or migrates.

DROP TRIGGER IF EXISTS settings_log_before_insert;
DROP TRIGGER IF EXISTS settings_log_insert;
DROP TRIGGER IF EXISTS settings_log_update;
DROP TRIGGER IF EXISTS settings_log_delete;
DROP TRIGGER IF EXISTS settings_shape_insert;
DROP TRIGGER IF EXISTS settings_shape_update;

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

-- The tree shape: one key is either a value or a section, never both. A
-- BEFORE trigger refuses, for any writer, a row whose key lies below a key
-- that holds a value, or that has keys below it. Both run before the CHECK
-- constraints, so the WHEN clause repeats the key rules: a malformed key is
-- left to the CHECK, whose message names the rule it breaks.
--
-- Written for the 3.40 shell: no WITH clause (refused inside CREATE
-- TRIGGER), and RAISE takes a literal message only (an expression there is a
-- 3.47 feature: the whole schema would be unreadable to an older shell), so
-- the message says which rule the key breaks but cannot name the other key.
--
-- Keys above NEW.key: its segments, from json_each over the JSON array
-- '["a","b","c"]' (key characters need no JSON escaping), each prefix cut
-- at the sum of the lengths of the segments up to it plus the dots between
-- them, and looked up by primary key: O(segments^2) string work on the key,
-- O(segments * log n) index probes, no scan of `settings`.
-- Keys below NEW.key sort in [NEW.key || '.', NEW.key || '/') ('/' follows
-- '.'): one primary-key range probe.
CREATE TRIGGER settings_shape_insert BEFORE INSERT ON settings
WHEN typeof(NEW.key) = 'text'
     AND length(CAST(NEW.key AS BLOB)) BETWEEN 1 AND 512
     AND length(NEW.key) = length(CAST(NEW.key AS BLOB))
     AND NEW.key NOT GLOB '*[^A-Za-z0-9_.-]*'
     AND NEW.key NOT GLOB '.*'
     AND NEW.key NOT GLOB '*.'
     AND NEW.key NOT GLOB '*..*'
BEGIN
    SELECT RAISE(ABORT, 'livesettings: a key cannot lie below a key that holds a value (one key is either a value or a section: delete that value first)')
    FROM (SELECT substr(NEW.key, 1, segment.key + (
                     SELECT sum(length(earlier.value))
                     FROM json_each('["' || replace(NEW.key, '.', '","') || '"]') AS earlier
                     WHERE earlier.key <= segment.key)) AS prefix,
                 segment.key AS segment
          FROM json_each('["' || replace(NEW.key, '.', '","') || '"]') AS segment) AS above
    -- every segment but the last (the key itself): fewer than its dots
    WHERE above.segment < length(NEW.key) - length(replace(NEW.key, '.', ''))
      AND EXISTS (SELECT 1 FROM settings WHERE settings.key = above.prefix);
    SELECT RAISE(ABORT, 'livesettings: a key that has keys below it cannot hold a value (one key is either a value or a section: delete the keys below it first)')
    WHERE EXISTS (SELECT 1 FROM settings
                  WHERE settings.key > NEW.key || '.' AND settings.key < NEW.key || '/');
END;

-- The same for a key renamed by UPDATE (the row being renamed does not count:
-- it is leaving its old key). Value updates do not run it.
CREATE TRIGGER settings_shape_update BEFORE UPDATE OF key ON settings
WHEN NEW.key IS NOT OLD.key
     AND typeof(NEW.key) = 'text'
     AND length(CAST(NEW.key AS BLOB)) BETWEEN 1 AND 512
     AND length(NEW.key) = length(CAST(NEW.key AS BLOB))
     AND NEW.key NOT GLOB '*[^A-Za-z0-9_.-]*'
     AND NEW.key NOT GLOB '.*'
     AND NEW.key NOT GLOB '*.'
     AND NEW.key NOT GLOB '*..*'
BEGIN
    SELECT RAISE(ABORT, 'livesettings: a key cannot lie below a key that holds a value (one key is either a value or a section: delete that value first)')
    FROM (SELECT substr(NEW.key, 1, segment.key + (
                     SELECT sum(length(earlier.value))
                     FROM json_each('["' || replace(NEW.key, '.', '","') || '"]') AS earlier
                     WHERE earlier.key <= segment.key)) AS prefix,
                 segment.key AS segment
          FROM json_each('["' || replace(NEW.key, '.', '","') || '"]') AS segment) AS above
    -- every segment but the last (the key itself): fewer than its dots
    WHERE above.segment < length(NEW.key) - length(replace(NEW.key, '.', ''))
      AND above.prefix IS NOT OLD.key
      AND EXISTS (SELECT 1 FROM settings WHERE settings.key = above.prefix);
    SELECT RAISE(ABORT, 'livesettings: a key that has keys below it cannot hold a value (one key is either a value or a section: delete the keys below it first)')
    WHERE EXISTS (SELECT 1 FROM settings
                  WHERE settings.key > NEW.key || '.' AND settings.key < NEW.key || '/'
                    AND settings.key IS NOT OLD.key);
END;
