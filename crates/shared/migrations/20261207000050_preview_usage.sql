-- The latest resource reading of each live preview: its pods' CPU and memory as metrics-server
-- measured them, against its namespace's ResourceQuota. Written by the cleanup worker's sweeps
-- (the API never calls Kubernetes); one row per preview, replaced at each reading, removed when
-- the preview ends.
CREATE TABLE preview_usage (
    preview                 text PRIMARY KEY REFERENCES previews (key) ON DELETE CASCADE,
    sampled_at              timestamptz NOT NULL,
    -- Whether metrics-server answered: 'ok', 'no_metrics_server' (the metrics API does not
    -- exist on the cluster) or 'metrics_unavailable' (registered but not answering).
    metrics                 text NOT NULL
        CHECK (metrics IN ('ok', 'no_metrics_server', 'metrics_unavailable')),
    -- Measured usage; NULL unless metrics = 'ok'.
    pods                    integer CHECK (pods >= 0),
    cpu_millis              bigint CHECK (cpu_millis >= 0),
    memory_bytes            bigint CHECK (memory_bytes >= 0),
    -- The quota's ceilings (limits, else requests) and what the pods reserved (requests).
    cpu_limit_millis        bigint CHECK (cpu_limit_millis >= 0),
    memory_limit_bytes      bigint CHECK (memory_limit_bytes >= 0),
    cpu_requested_millis    bigint CHECK (cpu_requested_millis >= 0),
    memory_requested_bytes  bigint CHECK (memory_requested_bytes >= 0)
);
