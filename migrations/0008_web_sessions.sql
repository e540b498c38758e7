-- Dashboard sign-ins as rows, so that logging out, changing the admin key or removing a member ends them at once
-- (a signed cookie alone stays valid until it expires). The cookie carries a random token; only its SHA-256 is
-- stored, so a copy of this table opens no session.
CREATE TABLE web_sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The lookup on every dashboard request; the UNIQUE index serves it.
    token_hash      text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    -- The organization's admin key hash when the session was opened: once the key changes, the session is void.
    admin_key_hash  text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);

-- Revoking an organization's sessions (key rotation, member removal) touches only its live ones.
CREATE INDEX web_sessions_org_live_idx ON web_sessions (organization_id) WHERE revoked_at IS NULL;
-- The sweep deletes sessions a day after they expired, oldest first.
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
