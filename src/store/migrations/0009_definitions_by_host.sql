-- The job definitions each host loaded (one host here; in a cluster on
-- PostgreSQL, each its own), and the flows' beside them.
CREATE TABLE jobs_by_host (
    host            TEXT NOT NULL,
    name            TEXT NOT NULL,
    schedule        TEXT,
    kind            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (host, name)
);
INSERT INTO jobs_by_host (host, name, schedule, kind, definition, definition_hash, updated_at)
    SELECT '', name, schedule, kind, definition, definition_hash, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_by_host RENAME TO jobs;

CREATE TABLE flows (
    host            TEXT NOT NULL,
    name            TEXT NOT NULL,
    schedule        TEXT,
    definition      TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (host, name)
);
