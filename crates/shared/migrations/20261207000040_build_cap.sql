-- The per-key cap on running jobs (the per-repository build cap, docs/worker-build.md): a job
-- that starts under the cap records its key; the jobs holding a key's slots are its `running`
-- jobs, so a slot ends with the job's state (success, failure, cancel, retry back-off) and a
-- dead worker's slot passes to the attempt that resumes the job. Nullable, no default: adding
-- it rewrites nothing.
ALTER TABLE jobs ADD COLUMN cap_key text;
CREATE INDEX jobs_running_cap_idx ON jobs (kind, cap_key)
    WHERE state = 'running' AND cap_key IS NOT NULL;
