-- A fleet's job output: each ended attempt's captured stdout and stderr
-- (already capped by the worker's --output-cap), written with the
-- attempt's result by the worker that ran it, so that every worker can
-- serve any job's log.
CREATE TABLE outputs (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    n      BIGINT NOT NULL,
    stream TEXT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (job_id, n, stream)
);
