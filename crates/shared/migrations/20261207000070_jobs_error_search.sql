-- The search of jobs by error text (`GET /v1/jobs?error=`, the dashboard's jobs page): a
-- case-insensitive substring, `error ILIKE '%term%'`. Without an index a rare term reads every
-- job (about 200 ms at 100k jobs); a trigram index finds it in under a millisecond. Only rows
-- with an error are indexed, and a row is written there only when a job fails or is cancelled.
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the database's owner may
-- create it without superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX jobs_error_trgm_idx ON jobs USING gin (error gin_trgm_ops) WHERE error IS NOT NULL;
