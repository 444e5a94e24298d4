-- skiff serve: the durable job queue (SQLite; the fleet issue adds PostgreSQL).
-- Times are milliseconds since the Unix epoch.
CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- FIFO order within a priority
    id              TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL,
    reason          TEXT,
    queue           TEXT NOT NULL,
    label           TEXT,
    priority        INTEGER NOT NULL,
    spec            TEXT NOT NULL,    -- the request as accepted, JSON, payload left out
    payload         BLOB,
    memory_bytes    INTEGER,          -- admission: the job's memory limit
    cpus            REAL,             -- admission: the job's CPU limit
    timeout_ms      INTEGER NOT NULL,
    max_retries     INTEGER NOT NULL,
    retry_delay_ms  INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    run_at          INTEGER NOT NULL, -- not before
    idempotency_key TEXT UNIQUE,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, priority DESC, seq);

CREATE TABLE attempts (
    job_id          TEXT NOT NULL REFERENCES jobs (id),
    n               INTEGER NOT NULL,
    state           TEXT NOT NULL,    -- running, then complete|error|timeout|killed|cancelled
    reason          TEXT,
    exit_code       INTEGER,
    signal          INTEGER,
    oom_killed      INTEGER,
    wall_ms         REAL,
    cpu_usec        INTEGER,
    peak_memory_bytes INTEGER,
    stdout_dropped  INTEGER,
    stderr_dropped  INTEGER,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    PRIMARY KEY (job_id, n)
);

-- Every state a job entered, and when.
CREATE TABLE transitions (
    job_id          TEXT NOT NULL REFERENCES jobs (id),
    at              INTEGER NOT NULL,
    state           TEXT NOT NULL
);
CREATE INDEX transitions_by_job ON transitions (job_id, at);
