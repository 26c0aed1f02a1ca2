-- The cluster (DESIGN §10): the hosts sharing this database, and the
-- scheduled fires they claimed.

-- One row per host name. `epoch` grows each time the host registers; a
-- host declared dead (`alive` false) starts nothing under its old epoch.
-- Heartbeats are the server's own time, so that the hosts' clocks do not
-- matter to who is declared dead.
CREATE TABLE hosts (
    name         TEXT COLLATE "C" PRIMARY KEY,
    epoch        BIGINT      NOT NULL,
    alive        BOOLEAN     NOT NULL,
    tags         TEXT COLLATE "C" NOT NULL,
    api          TEXT COLLATE "C",
    pid          BIGINT,
    started_at   TEXT COLLATE "C" NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    dead_since   TEXT COLLATE "C",
    declared_by  TEXT COLLATE "C"
);

-- A scheduled fire belongs to the one host whose claim was inserted
-- first: the primary key makes the others' inserts do nothing.
CREATE TABLE fires (
    job          TEXT COLLATE "C" NOT NULL,
    scheduled_at TEXT COLLATE "C" NOT NULL,
    host         TEXT COLLATE "C" NOT NULL,
    epoch        BIGINT NOT NULL,
    claimed_at   TEXT COLLATE "C" NOT NULL,
    -- A run (or a `missed` or `skipped` record) is in `runs` for it.
    done         BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (job, scheduled_at)
);
-- The claims still waiting for their run: few, looked at every heartbeat
-- for those whose host was declared dead.
CREATE INDEX fires_open ON fires (host, epoch) WHERE NOT done;
-- The locks jobs hold across hosts: a row per lock name and holding
-- host, under the epoch it was taken in. A row of a host declared dead,
-- or of an earlier epoch, excludes nothing.
CREATE TABLE run_locks (
    name  TEXT COLLATE "C" NOT NULL,
    host  TEXT COLLATE "C" NOT NULL,
    epoch BIGINT NOT NULL,
    mode  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (name, host)
);

-- Whether a fire has its run, without reading all of the job's runs.
CREATE INDEX runs_by_fire ON runs (job, scheduled_at) WHERE scheduled_at IS NOT NULL;

-- Inserting a scheduled run marks its fire handled and its claim done, in
-- the same statement.
CREATE OR REPLACE FUNCTION runs_mark_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO schedule_state (job, last_handled) VALUES (NEW.job, NEW.scheduled_at)
    ON CONFLICT (job) DO UPDATE
        SET last_handled = GREATEST(schedule_state.last_handled, excluded.last_handled);
    UPDATE fires SET done = true
        WHERE job = NEW.job AND scheduled_at = NEW.scheduled_at AND NOT done;
    RETURN NULL;
END $$;
