-- The history's schema in PostgreSQL: the tables and columns of SQLite's
-- migrations 0001 to 0008 (the same names, so one query reads both),
-- without the journal's tables (the journal is SQLite's fast path; with
-- PostgreSQL a run's start and end are written straight away). Integers
-- are BIGINT, as SQLite's INTEGER is 64 bits; times stay RFC 3339 UTC
-- text, which sorts like time in both. Text compares byte by byte
-- (COLLATE "C"), as SQLite's does, whatever the database's locale.

-- Run ids: one sequence for runs, fires not run and flow runs.
CREATE SEQUENCE run_ids;

CREATE TABLE runs (
    id             BIGINT  PRIMARY KEY,
    job            TEXT COLLATE "C"    NOT NULL,
    trigger        TEXT COLLATE "C"    NOT NULL,
    attempt        BIGINT  NOT NULL DEFAULT 1,
    scheduled_at   TEXT COLLATE "C",
    started_at     TEXT COLLATE "C"    NOT NULL,
    finished_at    TEXT COLLATE "C",
    status         TEXT COLLATE "C"    NOT NULL,
    exit_code      BIGINT,
    signal         BIGINT,
    error_count    BIGINT  NOT NULL DEFAULT 0,
    warning_count  BIGINT  NOT NULL DEFAULT 0,
    summary        TEXT COLLATE "C",
    report         TEXT COLLATE "C",
    capture_path   TEXT COLLATE "C",
    host           TEXT COLLATE "C"    NOT NULL,
    pid            BIGINT,
    job_pid        BIGINT,
    job_started    BIGINT,
    locks          TEXT COLLATE "C",
    runner_started BIGINT
);
CREATE INDEX runs_by_job ON runs (job, id DESC);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

CREATE TABLE jobs (
    name            TEXT COLLATE "C" PRIMARY KEY,
    schedule        TEXT COLLATE "C",
    kind            TEXT COLLATE "C" NOT NULL,
    definition      TEXT COLLATE "C" NOT NULL,
    definition_hash TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL
);

CREATE TABLE schedule_state (
    job          TEXT COLLATE "C" PRIMARY KEY,
    last_handled TEXT COLLATE "C" NOT NULL
);

CREATE TABLE attempts (
    run_id      BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    started_at  TEXT COLLATE "C"   NOT NULL,
    finished_at TEXT COLLATE "C"   NOT NULL,
    status      TEXT COLLATE "C"   NOT NULL,
    exit_code   BIGINT,
    signal      BIGINT,
    summary     TEXT COLLATE "C",
    report      TEXT COLLATE "C",
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE notifications (
    id        BIGSERIAL PRIMARY KEY,
    run_id    BIGINT NOT NULL,
    job       TEXT COLLATE "C"   NOT NULL,
    rule      TEXT COLLATE "C"   NOT NULL,
    action    TEXT COLLATE "C"   NOT NULL,
    condition TEXT COLLATE "C"   NOT NULL,
    status    TEXT COLLATE "C"   NOT NULL,
    detail    TEXT COLLATE "C",
    at        TEXT COLLATE "C"   NOT NULL
);
CREATE INDEX notifications_by_run ON notifications (run_id);
CREATE INDEX notifications_by_rule ON notifications (rule, at);

-- Inserting a scheduled run marks its fire handled, in the same statement.
CREATE FUNCTION runs_mark_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_state (job, last_handled) VALUES (NEW.job, NEW.scheduled_at)
    ON CONFLICT (job) DO UPDATE
        SET last_handled = GREATEST(schedule_state.last_handled, excluded.last_handled);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_mark_handled AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.scheduled_at IS NOT NULL) EXECUTE FUNCTION runs_mark_handled();

CREATE TABLE flow_runs (
    id             BIGINT PRIMARY KEY,
    flow           TEXT COLLATE "C"   NOT NULL,
    trigger        TEXT COLLATE "C"   NOT NULL,
    scheduled_at   TEXT COLLATE "C",
    started_at     TEXT COLLATE "C"   NOT NULL,
    finished_at    TEXT COLLATE "C",
    status         TEXT COLLATE "C"   NOT NULL,
    plan           TEXT COLLATE "C"   NOT NULL,
    holds          TEXT COLLATE "C"   NOT NULL,
    host           TEXT COLLATE "C"   NOT NULL,
    pid            BIGINT,
    driver_started BIGINT
);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, id);
CREATE INDEX flow_runs_open ON flow_runs (finished_at) WHERE finished_at IS NULL;

CREATE TABLE flow_steps (
    flow_run   BIGINT NOT NULL,
    step       BIGINT NOT NULL,
    state      TEXT COLLATE "C"   NOT NULL,
    runs       TEXT COLLATE "C"   NOT NULL,
    started_at TEXT COLLATE "C",
    ended_at   TEXT COLLATE "C",
    PRIMARY KEY (flow_run, step)
);
