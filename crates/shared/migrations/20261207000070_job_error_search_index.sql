-- The jobs list's error-text filter (`error ILIKE '%text%'`, the dashboard's jobs page) is a
-- substring match, which no btree serves: a text few jobs' errors contain made the list read
-- every job (126 ms at 100k jobs). A trigram index answers it from the index (2 ms). Only jobs
-- with an error are indexed, so a job's writes before it fails pay nothing.
--
-- pg_trgm is a contrib module shipped with Postgres and marked trusted (the database owner may
-- create it). Where it is not installed or may not be created, the index is left out and the
-- filter still works, reading the jobs instead.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        RAISE NOTICE 'pg_trgm is not available: the jobs list''s error search is not indexed';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pg_trgm may not be created here: the jobs list''s error search is not indexed';
        RETURN;
    END;
    CREATE INDEX jobs_error_trgm_idx ON jobs USING gin (error gin_trgm_ops)
        WHERE error IS NOT NULL;
END
$$;
