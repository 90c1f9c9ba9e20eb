-- The dashboard's live views.

-- A running build's progress as the build worker last read it from BuildKit's output
-- ({"step", "steps", "name", "step_started_at"}); NULL before the first step and for other kinds.
ALTER TABLE jobs ADD COLUMN progress jsonb;
-- The queues page's throughput chart: jobs finished per minute over the last hour, a range
-- scan of the newest finish times.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
