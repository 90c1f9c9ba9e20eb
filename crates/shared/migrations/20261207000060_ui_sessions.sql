-- Dashboard sessions (crates/api/src/ui): one row per signed-in browser. Only the SHA-256 of
-- the random session id is stored, so a database reader cannot take a session over. The token
-- itself is never stored: its name and scopes are, and the API re-checks the name against the
-- configured tokens on every request (a removed token ends its sessions).
CREATE TABLE ui_sessions (
    id_hash     bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    token_name  text NOT NULL,
    -- `read+enqueue+admin` as `slipway_core::auth::Scopes` prints them.
    scopes      text NOT NULL,
    -- The CSRF token every state-changing form of this session carries.
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
