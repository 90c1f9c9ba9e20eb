-- GitHub pull-request previews: which repositories Slipway serves and how, and the webhook
-- deliveries already handled (GitHub redelivers; a repeat is acknowledged and ignored).

CREATE TABLE repositories (
    -- Lowercased, as GitHub treats owner and repository names case-insensitively.
    owner          text NOT NULL,
    name           text NOT NULL,
    enabled        boolean NOT NULL DEFAULT true,
    mode           text NOT NULL DEFAULT 'automatic' CHECK (mode IN ('automatic', 'label')),
    label          text,
    build_forks    boolean NOT NULL DEFAULT false,
    -- The `build` and `launch` options of a pipeline request, as the operator gave them;
    -- validated on write and again for every pipeline.
    build_options  jsonb NOT NULL DEFAULT '{}'::jsonb,
    launch_options jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, name),
    CHECK (mode <> 'label' OR label IS NOT NULL)
);

CREATE TABLE github_deliveries (
    id          text PRIMARY KEY,
    event       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX github_deliveries_received_idx ON github_deliveries (received_at);
