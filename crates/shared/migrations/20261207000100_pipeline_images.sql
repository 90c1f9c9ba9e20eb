-- The images of a compose pipeline's service builds, recorded as each build succeeds. The
-- pipeline's first job (the one that read the compose file and started the builds) is
-- `pipeline`; the build whose record completes the set enqueues the pipeline's one launch.
CREATE TABLE IF NOT EXISTS pipeline_images (
    pipeline    uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    service     text NOT NULL,
    image       text NOT NULL,
    built_by    uuid NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, service)
);
