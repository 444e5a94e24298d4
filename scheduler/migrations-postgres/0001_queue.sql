-- skiff serve on PostgreSQL (the fleet): the schema of SQLite's versions
-- 1–8 in one version, plus what a fleet needs (the worker that runs an
-- attempt, its lease, the workers). Times are milliseconds since the Unix
-- epoch, as on SQLite. sqlx's migrator holds an advisory lock while it
-- runs, so workers starting together apply this once.
CREATE TABLE jobs (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- FIFO within a priority
    id               TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    reason           TEXT,
    queue            TEXT NOT NULL,
    label            TEXT,
    priority         BIGINT NOT NULL,
    spec             TEXT NOT NULL,    -- the request as accepted, JSON, payload left out
    payload          BYTEA,
    memory_bytes     BIGINT,
    cpus             DOUBLE PRECISION,
    timeout_ms       BIGINT NOT NULL,
    max_retries      BIGINT NOT NULL,
    retry_delay_ms   BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    run_at           BIGINT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    webhook          TEXT,
    code             TEXT,
    image            TEXT NOT NULL,    -- the image reference it runs (placement)
    worker_id        TEXT,             -- the worker running the current attempt
    lease_until      BIGINT,           -- and until when it holds it
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Dequeue reads only queued jobs, whatever the history's size.
CREATE INDEX jobs_queued ON jobs (priority DESC, seq) WHERE state = 'queued';
CREATE INDEX jobs_delayed ON jobs (run_at) WHERE state = 'delayed';
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, queue);

CREATE TABLE attempts (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    n                 BIGINT NOT NULL,
    worker_id         TEXT,
    state             TEXT NOT NULL,
    reason            TEXT,
    exit_code         BIGINT,
    signal            BIGINT,
    oom_killed        BOOLEAN,
    wall_ms           DOUBLE PRECISION,
    cpu_usec          BIGINT,
    peak_memory_bytes BIGINT,
    stdout_dropped    BIGINT,
    stderr_dropped    BIGINT,
    started_at        BIGINT NOT NULL,
    ended_at          BIGINT,
    PRIMARY KEY (job_id, n)
);

CREATE TABLE transitions (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    at     BIGINT NOT NULL,
    state  TEXT NOT NULL
);
CREATE INDEX transitions_by_job ON transitions (job_id, seq);

CREATE TABLE schedules (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    template    TEXT NOT NULL,
    cron        TEXT,
    run_every   BIGINT,
    start_at    BIGINT,
    end_at      BIGINT,
    run_times   BIGINT,
    run_count   BIGINT NOT NULL DEFAULT 0,
    next_at     BIGINT,
    firing_at   BIGINT,
    last_run_at BIGINT,
    last_job_id TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (state, next_at);

CREATE TABLE webhook_deliveries (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    url          TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);

CREATE TABLE hooks (
    name       TEXT PRIMARY KEY,
    template   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE code_packages (
    name            TEXT PRIMARY KEY,
    base_image      TEXT NOT NULL,
    image_id        TEXT NOT NULL,
    command         TEXT,
    layer_bytes     BIGINT NOT NULL,
    max_concurrency BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    max_concurrency BIGINT,
    updated_at      BIGINT NOT NULL
);

-- The fleet's workers: who they are, what they can take, and when each
-- was last heard from.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    address       TEXT,
    slots         BIGINT NOT NULL,
    memory_bytes  BIGINT NOT NULL,
    cpus          DOUBLE PRECISION NOT NULL,
    running       BIGINT NOT NULL DEFAULT 0,
    images        JSONB NOT NULL DEFAULT '[]', -- image references its store resolves
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);
