-- Schedules: a job template fired on a cron expression (5 fields, UTC) or
-- every `run_every` seconds. Each fire submits a job with the idempotency
-- key `sched:<id>:<slot ms>`, so a slot makes one job, also across a crash.
-- Times are milliseconds since the Unix epoch.
CREATE TABLE schedules (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,       -- s-<16 hex>
    state           TEXT NOT NULL,              -- active, done, deleted
    template        TEXT NOT NULL,              -- a job request, JSON, no idempotency key
    cron            TEXT,                       -- exactly one of cron, run_every
    run_every       INTEGER,                    -- seconds
    start_at        INTEGER,
    end_at          INTEGER,
    run_times       INTEGER,                    -- at most this many fires
    run_count       INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER,                    -- the next slot; NULL once done
    firing_at       INTEGER,                    -- the slot being fired (set before its job is submitted)
    last_run_at     INTEGER,                    -- the last slot fired
    last_job_id     TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (state, next_at);
