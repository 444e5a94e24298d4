-- A claim (the only move to `running`, claim.rs) is one UPDATE; this
-- trigger opens the attempt and records the transition in the same
-- statement, so the dispatcher's claim is one round trip. `IF NOT EXISTS`:
-- a database made by a build that shipped this trigger as its version 7
-- has it already (see queue::repair_migrations).
CREATE TRIGGER IF NOT EXISTS jobs_claimed AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'running' AND OLD.state <> 'running'
BEGIN
    INSERT INTO attempts (job_id, n, state, started_at)
        VALUES (NEW.id, NEW.attempts, 'running', NEW.updated_at);
    INSERT INTO transitions (job_id, at, state)
        VALUES (NEW.id, NEW.updated_at, 'running');
END;
