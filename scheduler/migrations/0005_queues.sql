-- Per-queue settings: max_concurrency caps the queue's running jobs.
CREATE TABLE queues (
    name            TEXT PRIMARY KEY,
    max_concurrency INTEGER,          -- NULL: no cap beyond the worker's
    updated_at      INTEGER NOT NULL
);
