-- Code packages on a fleet: the layer a package was pushed with is kept
-- in the database, so that any worker can make the package's image in its
-- own store (code_fetch.rs). Chunks of at most 1 MiB, in order; the
-- digest (sha256 of the bytes as pushed) is checked when they are read.
ALTER TABLE code_packages ADD COLUMN layer_digest TEXT;

CREATE TABLE code_layers (
    name  TEXT NOT NULL REFERENCES code_packages (name) ON DELETE CASCADE,
    seq   INTEGER NOT NULL,
    data  BYTEA NOT NULL,
    PRIMARY KEY (name, seq)
);
