-- Per job, the latest fire time the scheduler has dealt with (run, or
-- recorded as missed), so a restarted daemon knows what it missed.
CREATE TABLE schedule_state (
    job          TEXT PRIMARY KEY,
    last_handled TEXT NOT NULL
);
