-- Code packages: a base image plus one uploaded layer, stored as an image
-- tagged skiff-code/<name>:latest; jobs name the package instead of an image.
CREATE TABLE code_packages (
    name            TEXT PRIMARY KEY,
    base_image      TEXT NOT NULL,
    image_id        TEXT NOT NULL,
    command         TEXT,             -- JSON array, the default command
    layer_bytes     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
