-- An attempt, a transition and an output are only ever written by a
-- statement that holds its job's row: a CTE fed by the RETURNING of the
-- job's own UPDATE or INSERT, or submit's insert in the same transaction;
-- no job is ever deleted. The foreign keys' per-row checks (a locking
-- lookup of the job for every attempt and transition) cost 12% of the
-- queue's throughput on 2 cores (`skiff bench queue --noop`: 4,850 to
-- 5,495 jobs/s) and could never fail: they go. The conformance test
-- `test_postgres_children_always_have_their_job` checks the invariant.
-- The tables are locked in the order a worker's statements take them
-- (jobs, then its children), so a worker still running during a rolling
-- upgrade waits for this migration instead of deadlocking with it.
LOCK TABLE jobs, attempts, transitions, outputs IN ACCESS EXCLUSIVE MODE;
ALTER TABLE attempts DROP CONSTRAINT attempts_job_id_fkey;
ALTER TABLE transitions DROP CONSTRAINT transitions_job_id_fkey;
ALTER TABLE outputs DROP CONSTRAINT outputs_job_id_fkey;
