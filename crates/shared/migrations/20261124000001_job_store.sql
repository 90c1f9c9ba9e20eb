-- Slipway's system of record: jobs, their attempts and logs, and the preview registry.
-- String values of kind/state/error_class are the `as_str()` forms of slipway-core's enums.

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('build', 'launch', 'cleanup')),
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'failed',
                                     'cancelled', 'superseded')),
    preview         text,
    commit_sha      text,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    result          jsonb,
    error           text,
    error_class     text CHECK (error_class IN ('transient', 'permanent')),
    -- Highest attempt number started so far; attempt numbers never repeat for a job.
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Attempt budget per run (an operator retry opens a new run).
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    -- Attempts used before the latest operator retry: a run may start attempts
    -- attempt_base + 1 ..= attempt_base + max_attempts.
    attempt_base    integer NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),
    idempotency_key text UNIQUE,
    trace_context   text,
    retry_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- NULL = not yet pushed to Redis; the API's relay pushes it.
    enqueued_at     timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (attempt_base <= attempts)
);

-- Keyset pagination is (created_at DESC, id DESC); each API filter has a matching index.
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_kind_created_idx ON jobs (kind, created_at DESC, id DESC);
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at DESC, id DESC);
CREATE INDEX jobs_preview_created_idx ON jobs (preview, created_at DESC, id DESC)
    WHERE preview IS NOT NULL;
-- The relay's work list stays tiny however many jobs exist.
CREATE INDEX jobs_unenqueued_idx ON jobs (created_at)
    WHERE enqueued_at IS NULL AND state = 'queued';

CREATE TABLE job_attempts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    worker_id   text NOT NULL,
    k8s_objects text[] NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- 'abandoned': a later attempt started while this one was still open (its worker died).
    outcome     text CHECK (outcome IN ('succeeded', 'retrying', 'failed', 'cancelled',
                                        'superseded', 'abandoned')),
    error       text,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE job_logs (
    job_id  uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    seq     bigint NOT NULL,
    ts      timestamptz NOT NULL,
    stream  text NOT NULL,
    line    text NOT NULL,
    -- Re-sent lines after a worker crash hit this key and are dropped (ON CONFLICT DO NOTHING).
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE previews (
    key         text PRIMARY KEY,
    namespace   text NOT NULL,
    url         text,
    image       text,
    commit_sha  text,
    status      text NOT NULL,
    pods        text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    deleted_at  timestamptz,
    last_job_id uuid REFERENCES jobs (id) ON DELETE SET NULL
);

CREATE INDEX previews_created_idx ON previews (created_at DESC, key DESC);
CREATE INDEX previews_live_created_idx ON previews (created_at DESC, key DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX previews_expires_idx ON previews (expires_at) WHERE deleted_at IS NULL;
