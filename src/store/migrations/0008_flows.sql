-- Flow runs (DESIGN §8). A run's row and its steps' rows are written
-- before any of its steps starts; then each move writes the rows it
-- changed, in one transaction. `plan` is the flow's definition when the
-- run started (a reload does not change a run going on); `holds` the
-- run's own state as JSON (where it is stopped, paused or aborted, since
-- when it is held, the operators' actions). `pid` and `driver_started`
-- name the process driving the run, so that a daemon starting finds the
-- runs a dead one left.
CREATE TABLE flow_runs (
    id             INTEGER PRIMARY KEY,
    flow           TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    scheduled_at   TEXT,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT,
    status         TEXT    NOT NULL,
    plan           TEXT    NOT NULL,
    holds          TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    pid            INTEGER,
    driver_started INTEGER
);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, id);
CREATE INDEX flow_runs_open ON flow_runs (finished_at) WHERE finished_at IS NULL;
-- Each step of a flow run, by its place in the plan: its state as JSON
-- (waiting, running, holding, how it ended, or why it was skipped) and
-- the ids of its runs (more than one when an operator retried it).
CREATE TABLE flow_steps (
    flow_run   INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    runs       TEXT    NOT NULL,
    started_at TEXT,
    ended_at   TEXT,
    PRIMARY KEY (flow_run, step)
) WITHOUT ROWID;
