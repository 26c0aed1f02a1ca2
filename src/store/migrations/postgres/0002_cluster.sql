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
    -- Its own `cluster.host_timeout`: silent longer, it is declared dead.
    timeout_ms   BIGINT      NOT NULL,
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

-- The job definitions each host loaded, and the flows' beside them, so
-- that `check --cluster` can tell hosts running different ones apart.
ALTER TABLE jobs ADD COLUMN host TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE jobs DROP CONSTRAINT jobs_pkey;
ALTER TABLE jobs ADD PRIMARY KEY (host, name);
CREATE TABLE flows (
    host            TEXT COLLATE "C" NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    schedule        TEXT COLLATE "C",
    definition      TEXT COLLATE "C" NOT NULL,
    definition_hash TEXT COLLATE "C" NOT NULL,
    updated_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (host, name)
);

-- Keys the hosts share: `definitions` digests jobs' `env` values, so that
-- one definition reads the same from every host.
CREATE TABLE cluster_keys (
    name TEXT COLLATE "C" PRIMARY KEY,
    key  BYTEA NOT NULL
);
