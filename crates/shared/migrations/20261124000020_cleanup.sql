-- The cleanup worker: log retention bookkeeping, queue repair and the sweep journal.

-- When a finished job's logs were removed by log retention (NULL: still kept).
ALTER TABLE jobs ADD COLUMN logs_deleted_at timestamptz;
-- Log retention's work list: finished jobs whose logs are still kept, oldest first.
CREATE INDEX jobs_logs_kept_idx ON jobs (finished_at)
    WHERE finished_at IS NOT NULL AND logs_deleted_at IS NULL;
-- Queue repair's and the preview sweeps' work list: jobs not yet finished.
CREATE INDEX jobs_unfinished_idx ON jobs (updated_at)
    WHERE state IN ('queued', 'running', 'retrying');

-- One row per sweep the leader ran: who, when, and what it did (counts by kind and reason).
CREATE TABLE cleanup_sweeps (
    id          bigserial PRIMARY KEY,
    holder      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    report      jsonb NOT NULL
);
CREATE INDEX cleanup_sweeps_started_idx ON cleanup_sweeps (started_at);
