-- The start time (in clock ticks since boot, as /proc/PID/stat gives it)
-- of the process that ran the run, beside its pid: a run whose runner is
-- gone is found by any reader, and a reused pid is not taken for it.
ALTER TABLE runs ADD COLUMN runner_started INTEGER;
