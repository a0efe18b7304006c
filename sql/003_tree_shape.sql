-- livesettings schema, version 3: the tree shape is enforced by the
-- database itself. A key cannot hold a value while a key above it holds one
-- (`a.b` set, then `a.b.c`), nor while keys lie below it (`a.b.c` set, then
-- `a.b`), whoever writes: the BEFORE INSERT / BEFORE UPDATE OF key triggers
-- `settings_shape_insert` and `settings_shape_update` in triggers.sql,
-- recreated with this migration, refuse such rows with a
-- `livesettings: ...` message. Rows stored before version 3 stay; the store
-- keeps refusing them on its side (they are reported as rejected).

UPDATE livesettings_meta SET value = '3' WHERE name = 'schema_version';
