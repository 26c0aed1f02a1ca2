-- A run is written three times: inserted, given its process, ended.
--
-- The locks a run holds are a column of the run (`name mode` pairs, one per
-- line): they are held while the run is `running`, released with it.
ALTER TABLE runs ADD COLUMN locks TEXT;
DROP TABLE held_locks;

-- Inserting a scheduled run marks its fire handled, in the same statement,
-- so a crash cannot separate the two.
CREATE TRIGGER runs_mark_handled AFTER INSERT ON runs
WHEN NEW.scheduled_at IS NOT NULL
BEGIN
    INSERT INTO schedule_state (job, last_handled) VALUES (NEW.job, NEW.scheduled_at)
    ON CONFLICT (job) DO UPDATE SET last_handled = max(last_handled, excluded.last_handled);
END;
