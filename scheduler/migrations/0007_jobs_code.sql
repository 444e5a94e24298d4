-- The job's code package, beside its spec, so that admission reads a
-- column (on SQLite and PostgreSQL alike) instead of parsing each queued
-- job's JSON spec.
ALTER TABLE jobs ADD COLUMN code TEXT;
UPDATE jobs SET code = json_extract(spec, '$.code');
