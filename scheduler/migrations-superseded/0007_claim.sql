-- The job's code package, beside its spec, so that admission reads a
-- column (on SQLite and PostgreSQL alike) instead of parsing each queued
-- job's JSON spec.
ALTER TABLE jobs ADD COLUMN code TEXT;
UPDATE jobs SET code = json_extract(spec, '$.code');

-- A claim (the only move to `running`, claim.rs) is one UPDATE; this
-- trigger opens the attempt and records the transition in the same
-- statement, so the dispatcher's claim is one round trip.
CREATE TRIGGER jobs_claimed AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'running' AND OLD.state <> 'running'
BEGIN
    INSERT INTO attempts (job_id, n, state, started_at)
        VALUES (NEW.id, NEW.attempts, 'running', NEW.updated_at);
    INSERT INTO transitions (job_id, at, state)
        VALUES (NEW.id, NEW.updated_at, 'running');
END;
