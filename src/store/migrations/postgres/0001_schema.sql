-- The history's schema in PostgreSQL: the tables and columns of SQLite's
-- migrations 0001 to 0008 (the same names, so one query reads both),
-- without the journal's tables (the journal is SQLite's fast path; with
-- PostgreSQL a run's start and end are written straight away). Integers
-- are BIGINT, as SQLite's INTEGER is 64 bits; times stay RFC 3339 UTC
-- text, which sorts like time in both.

-- Run ids: one sequence for runs, fires not run and flow runs.
CREATE SEQUENCE run_ids;

CREATE TABLE runs (
    id             BIGINT  PRIMARY KEY,
    job            TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    attempt        BIGINT  NOT NULL DEFAULT 1,
    scheduled_at   TEXT,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT,
    status         TEXT    NOT NULL,
    exit_code      BIGINT,
    signal         BIGINT,
    error_count    BIGINT  NOT NULL DEFAULT 0,
    warning_count  BIGINT  NOT NULL DEFAULT 0,
    summary        TEXT,
    report         TEXT,
    capture_path   TEXT,
    host           TEXT    NOT NULL,
    pid            BIGINT,
    job_pid        BIGINT,
    job_started    BIGINT,
    locks          TEXT,
    runner_started BIGINT
);
CREATE INDEX runs_by_job ON runs (job, id DESC);
CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

CREATE TABLE jobs (
    name            TEXT PRIMARY KEY,
    schedule        TEXT,
    kind            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE schedule_state (
    job          TEXT PRIMARY KEY,
    last_handled TEXT NOT NULL
);

CREATE TABLE attempts (
    run_id      BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    started_at  TEXT   NOT NULL,
    finished_at TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    exit_code   BIGINT,
    signal      BIGINT,
    summary     TEXT,
    report      TEXT,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE notifications (
    id        BIGSERIAL PRIMARY KEY,
    run_id    BIGINT NOT NULL,
    job       TEXT   NOT NULL,
    rule      TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    condition TEXT   NOT NULL,
    status    TEXT   NOT NULL,
    detail    TEXT,
    at        TEXT   NOT NULL
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
    flow           TEXT   NOT NULL,
    trigger        TEXT   NOT NULL,
    scheduled_at   TEXT,
    started_at     TEXT   NOT NULL,
    finished_at    TEXT,
    status         TEXT   NOT NULL,
    plan           TEXT   NOT NULL,
    holds          TEXT   NOT NULL,
    host           TEXT   NOT NULL,
    pid            BIGINT,
    driver_started BIGINT
);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, id);
CREATE INDEX flow_runs_open ON flow_runs (finished_at) WHERE finished_at IS NULL;

CREATE TABLE flow_steps (
    flow_run   BIGINT NOT NULL,
    step       BIGINT NOT NULL,
    state      TEXT   NOT NULL,
    runs       TEXT   NOT NULL,
    started_at TEXT,
    ended_at   TEXT,
    PRIMARY KEY (flow_run, step)
);
