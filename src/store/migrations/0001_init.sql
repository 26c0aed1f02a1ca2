-- Runs: one row per run, inserted when it starts, completed when it ends.
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job           TEXT    NOT NULL,
    trigger       TEXT    NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 1,
    scheduled_at  TEXT,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    status        TEXT    NOT NULL,
    exit_code     INTEGER,
    signal        INTEGER,
    error_count   INTEGER NOT NULL DEFAULT 0,
    warning_count INTEGER NOT NULL DEFAULT 0,
    summary       TEXT,
    report        TEXT,
    capture_path  TEXT,
    host          TEXT    NOT NULL,
    pid           INTEGER
);
CREATE INDEX runs_by_job ON runs (job, id DESC);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

-- The job definitions as last loaded, so SQL reports can join runs with them.
CREATE TABLE jobs (
    name            TEXT PRIMARY KEY,
    schedule        TEXT,
    kind            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
