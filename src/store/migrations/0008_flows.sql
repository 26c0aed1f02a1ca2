-- Flow runs (DESIGN §8): one row each, written before any of its steps
-- starts and after every change. `plan` is the flow's definition when the
-- run started (a reload does not change a run going on); `state` is each
-- step's state and runs, the holds and the operators' actions, as JSON.
-- `pid` and `driver_started` name the process driving the run, so that a
-- daemon starting finds the runs a dead one left.
CREATE TABLE flow_runs (
    id             INTEGER PRIMARY KEY,
    flow           TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    scheduled_at   TEXT,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT,
    status         TEXT    NOT NULL,
    plan           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    pid            INTEGER,
    driver_started INTEGER
);
CREATE INDEX flow_runs_by_flow ON flow_runs (flow, id);
CREATE INDEX flow_runs_open ON flow_runs (finished_at) WHERE finished_at IS NULL;
