-- Webhooks: a job's result POSTed to its `webhook` URL when it ends
-- (deliveries are queued in the same transaction as the state change), and
-- named triggers: POST /v1/hooks/{name} turns a request body into a job.
ALTER TABLE jobs ADD COLUMN webhook TEXT;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          TEXT NOT NULL REFERENCES jobs (id),
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,    -- pending, delivered, failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER NOT NULL, -- due, or leased until
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);

CREATE TABLE hooks (
    name            TEXT PRIMARY KEY,
    template        TEXT NOT NULL,    -- a job request, JSON
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
