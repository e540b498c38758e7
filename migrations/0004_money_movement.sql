-- Money movement: the PaymentIntent a charge is confirming, a lease so only one worker charges at a time, and the
-- job outbox that makes every background job survive a failed publish.

-- The PaymentIntent created for the transaction, recorded before it is confirmed: a retried charge confirms this
-- one instead of creating another. stripe_charge_id is set to it once Stripe confirms the charge.
ALTER TABLE transactions ADD COLUMN payment_intent_id text UNIQUE;
-- Set by the worker that is charging; another delivery of the job waits until it is older than the lease.
ALTER TABLE transactions ADD COLUMN charge_attempt_at timestamptz;

-- Jobs are written here in the same database transaction as the change that causes them, then published
-- (QStash, or the local dispatcher). published_at stays NULL until the transport took the job; the sweep
-- publishes again what stayed unpublished.
CREATE TABLE job_outbox (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_type       text NOT NULL CHECK (job_type IN ('charge', 'email', 'webhook')),
    -- The transport's deduplication id: one job per cause, however often it is enqueued.
    dedup_id       text NOT NULL UNIQUE,
    payload        jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_error     text
);

-- The sweep's query: jobs still waiting for their transport.
CREATE INDEX job_outbox_unpublished_idx ON job_outbox (created_at) WHERE published_at IS NULL;
