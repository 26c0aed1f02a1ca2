-- The job's own process (its group leader), named by pid and start time so
-- a restarted daemon can tell it from a reused pid.
ALTER TABLE runs ADD COLUMN job_pid INTEGER;
ALTER TABLE runs ADD COLUMN job_started INTEGER;

-- Every attempt of a run; the run's row holds the last one.
CREATE TABLE attempts (
    run_id      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    exit_code   INTEGER,
    signal      INTEGER,
    summary     TEXT,
    report      TEXT,
    PRIMARY KEY (run_id, attempt)
);

-- Who holds which lock, for `status` and the API. The kernel's flock is the
-- truth; this mirrors it.
CREATE TABLE held_locks (
    name        TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    run_id      INTEGER NOT NULL,
    job         TEXT    NOT NULL,
    acquired_at TEXT    NOT NULL,
    PRIMARY KEY (name, run_id)
);
