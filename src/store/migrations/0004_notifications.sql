-- Every trigger delivery, or its refusal, kept with the run it was about.
CREATE TABLE notifications (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    INTEGER NOT NULL,
    job       TEXT    NOT NULL,
    rule      TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    condition TEXT    NOT NULL,
    status    TEXT    NOT NULL,  -- sent | failed | suppressed
    detail    TEXT,
    at        TEXT    NOT NULL
);
CREATE INDEX notifications_by_run ON notifications (run_id);
CREATE INDEX notifications_by_rule ON notifications (rule, at);
