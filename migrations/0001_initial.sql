-- The system of record: organizations, their agents and limits, transactions, the audit log, failed jobs and
-- decision webhooks. Money is BIGINT cents; ids are random uuids; times are timestamptz.

CREATE TABLE organizations (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                     text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- One "@", something on each side, a dot in the domain: a sanity check, not RFC 5322.
    admin_email              text NOT NULL
                             CHECK (char_length(admin_email) <= 320 AND admin_email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    admin_key_hash           text NOT NULL UNIQUE,
    admin_key_prefix         text NOT NULL,
    -- IANA name; it defines the organization's calendar day for daily limits (validated by the app).
    timezone                 text NOT NULL DEFAULT 'UTC' CHECK (timezone <> ''),
    stripe_customer_id       text,
    stripe_payment_method_id text,
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The lookup on every authenticated request; the UNIQUE index serves it.
    api_key_hash    text NOT NULL UNIQUE,
    key_prefix      text NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    blocked_at      timestamptz,
    blocked_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Target of the composite foreign key that keeps a transaction in its agent's organization.
    UNIQUE (id, organization_id)
);

CREATE TABLE budget_limits (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id                 uuid NOT NULL UNIQUE REFERENCES agents (id) ON DELETE CASCADE,
    daily_limit_cents        bigint NOT NULL,
    per_tx_limit_cents       bigint NOT NULL,
    approval_threshold_cents bigint NOT NULL,
    max_requests_per_minute  integer NOT NULL DEFAULT 20 CHECK (max_requests_per_minute BETWEEN 1 AND 10000),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT budget_limits_ordered CHECK (
        0 <= approval_threshold_cents
        AND approval_threshold_cents <= per_tx_limit_cents
        AND per_tx_limit_cents <= daily_limit_cents
    ),
    -- $1bn a day: a day's sum of holds stays far below 2^53, so Lua's doubles compare it exactly.
    CONSTRAINT budget_limits_daily_max CHECK (daily_limit_cents <= 100000000000)
);

CREATE TABLE transactions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL,
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    amount_cents        bigint NOT NULL CHECK (amount_cents BETWEEN 1 AND 100000000),
    currency            text NOT NULL DEFAULT 'usd' CHECK (currency = 'usd'),
    merchant            text NOT NULL CHECK (char_length(merchant) BETWEEN 1 AND 255),
    purpose             text NOT NULL CHECK (char_length(purpose) BETWEEN 1 AND 2000),
    context             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(context) = 'object'),
    status              text NOT NULL
                        CHECK (status IN ('pending', 'approved', 'declined', 'completed', 'timed_out')),
    decision_reason     text NOT NULL CHECK (decision_reason IN (
                            'auto_approved', 'approval_required', 'approved_by_admin',
                            'per_transaction_limit_exceeded', 'daily_limit_exceeded', 'declined_by_admin',
                            'charge_failed', 'approval_timed_out'
                        )),
    idempotency_key     text NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    -- Detects a key reused with other parameters (409 idempotency_key_reused).
    request_hash        text NOT NULL,
    -- The organization's calendar day the amount counts against.
    budget_day          date NOT NULL,
    callback_url        text,
    stripe_charge_id    text UNIQUE,
    approval_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    -- Idempotency keys are per agent: a global key would let one agent read another's transaction.
    CONSTRAINT transactions_agent_idempotency_key UNIQUE (agent_id, idempotency_key),
    -- Tenancy: a transaction always belongs to its agent's organization.
    CONSTRAINT transactions_agent_in_organization FOREIGN KEY (agent_id, organization_id)
        REFERENCES agents (id, organization_id) ON DELETE RESTRICT,
    CONSTRAINT transactions_completed_has_charge CHECK (status <> 'completed' OR stripe_charge_id IS NOT NULL),
    CONSTRAINT transactions_pending_has_expiry CHECK (status <> 'pending' OR approval_expires_at IS NOT NULL),
    -- Each status has only the reasons that can lead to it (completed keeps the reason it was approved for).
    CONSTRAINT transactions_status_reason CHECK (
        (status = 'pending' AND decision_reason = 'approval_required')
        OR (status IN ('approved', 'completed') AND decision_reason IN ('auto_approved', 'approved_by_admin'))
        OR (status = 'declined' AND decision_reason IN (
            'per_transaction_limit_exceeded', 'daily_limit_exceeded', 'declined_by_admin', 'charge_failed'))
        OR (status = 'timed_out' AND decision_reason = 'approval_timed_out')
    )
);

CREATE TABLE audit_logs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    agent_id        uuid REFERENCES agents (id) ON DELETE RESTRICT,
    transaction_id  uuid REFERENCES transactions (id) ON DELETE RESTRICT,
    -- 'agent:<id>', 'admin' or 'system'.
    actor           text NOT NULL CHECK (actor <> ''),
    action          text NOT NULL CHECK (action <> ''),
    details         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    -- clock_timestamp, not now(): entries written in one transaction keep the order they were written in.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Background jobs that exhausted their retries, kept for an operator to inspect and re-drive.
CREATE TABLE job_dead_letters (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_type       text NOT NULL,
    -- No foreign key: a malformed job may name a transaction that does not exist, and must still be kept.
    transaction_id uuid,
    payload        jsonb NOT NULL DEFAULT '{}',
    error          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Decision webhooks; the id is the one receivers dedupe on, so a retried delivery reuses its row.
CREATE TABLE webhook_events (
    id             text PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9_]+$'),
    transaction_id uuid NOT NULL REFERENCES transactions (id) ON DELETE RESTRICT,
    type           text NOT NULL CHECK (type IN (
                       'transaction.approved', 'transaction.completed', 'transaction.declined',
                       'transaction.timed_out'
                   )),
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- A transaction enters each state at most once, so a job run twice finds its event already there.
    CONSTRAINT webhook_events_one_per_transition UNIQUE (transaction_id, type)
);
