-- Spend policies (API.md, "Policies"): an agent's whole policy in budget_limits (the limits it had, weekly and
-- monthly windows, payments per day, merchant rules, approval rules, a draft "shadow" policy), the organization's
-- ceiling, the transaction's shadow verdict, and the decision reasons the policy adds.
--
-- Existing rows keep their meaning: every limit they had stays set, the new ones are NULL (no such rule).

ALTER TABLE budget_limits
    ALTER COLUMN daily_limit_cents DROP NOT NULL,
    ALTER COLUMN per_tx_limit_cents DROP NOT NULL,
    ALTER COLUMN approval_threshold_cents DROP NOT NULL,
    ALTER COLUMN max_requests_per_minute DROP NOT NULL,
    ADD COLUMN weekly_limit_cents bigint,
    ADD COLUMN monthly_limit_cents bigint,
    ADD COLUMN max_payments_per_day integer CHECK (max_payments_per_day BETWEEN 1 AND 1000000),
    -- Host names or "*." + a host name, lower case.
    ADD COLUMN merchant_allow text[] NOT NULL DEFAULT '{}',
    ADD COLUMN merchant_block text[] NOT NULL DEFAULT '{}',
    -- [["api.openai.com", 5000], ...]: a daily cap per merchant host.
    ADD COLUMN merchant_daily_limits jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(merchant_daily_limits) = 'array'),
    ADD COLUMN approve_new_merchant boolean NOT NULL DEFAULT false,
    ADD COLUMN dual_approval_above_cents bigint CHECK (dual_approval_above_cents BETWEEN 0 AND 100000000000),
    -- The draft policy as API.md writes it, or NULL.
    ADD COLUMN shadow_policy jsonb CHECK (shadow_policy IS NULL OR jsonb_typeof(shadow_policy) = 'object'),
    -- Raised by every change: the budget script refuses to decide with an older version than one it has seen.
    ADD COLUMN version bigint NOT NULL DEFAULT 1;

ALTER TABLE budget_limits DROP CONSTRAINT budget_limits_ordered;
ALTER TABLE budget_limits DROP CONSTRAINT budget_limits_daily_max;
-- 0 <= approval_threshold <= per_transaction <= daily <= weekly <= monthly, comparing each set limit with the next
-- one set (a NULL comparison passes a CHECK); at least one spending limit; every window far below 2^53.
ALTER TABLE budget_limits ADD CONSTRAINT budget_limits_ordered CHECK (
    0 <= approval_threshold_cents
    AND approval_threshold_cents <= COALESCE(per_tx_limit_cents, daily_limit_cents, weekly_limit_cents,
                                             monthly_limit_cents)
    AND per_tx_limit_cents <= COALESCE(daily_limit_cents, weekly_limit_cents, monthly_limit_cents)
    AND daily_limit_cents <= COALESCE(weekly_limit_cents, monthly_limit_cents)
    AND weekly_limit_cents <= monthly_limit_cents
);
ALTER TABLE budget_limits ADD CONSTRAINT budget_limits_one_spending_limit CHECK (
    num_nonnulls(per_tx_limit_cents, daily_limit_cents, weekly_limit_cents, monthly_limit_cents) >= 1
);
ALTER TABLE budget_limits ADD CONSTRAINT budget_limits_max CHECK (
    GREATEST(per_tx_limit_cents, daily_limit_cents, weekly_limit_cents, monthly_limit_cents) <= 100000000000
);

-- The organization's ceiling over all its agents together.
ALTER TABLE organizations
    ADD COLUMN daily_limit_cents bigint CHECK (daily_limit_cents BETWEEN 0 AND 100000000000),
    ADD COLUMN monthly_limit_cents bigint CHECK (monthly_limit_cents BETWEEN 0 AND 100000000000),
    ADD COLUMN ceiling_version bigint NOT NULL DEFAULT 1,
    ADD CONSTRAINT organizations_ceiling_ordered CHECK (daily_limit_cents <= monthly_limit_cents);

-- What the shadow policy would have decided: {"status": ..., "decision_reason": ...}, or NULL.
ALTER TABLE transactions ADD COLUMN shadow jsonb CHECK (shadow IS NULL OR jsonb_typeof(shadow) = 'object');

ALTER TABLE transactions DROP CONSTRAINT transactions_decision_reason_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_decision_reason_check CHECK (decision_reason IN (
    'auto_approved', 'approval_required', 'new_merchant_requires_approval', 'approved_by_admin',
    'merchant_blocked', 'merchant_not_allowed', 'per_transaction_limit_exceeded', 'merchant_daily_limit_exceeded',
    'daily_limit_exceeded', 'weekly_limit_exceeded', 'monthly_limit_exceeded', 'organization_daily_limit_exceeded',
    'organization_monthly_limit_exceeded', 'payment_count_exceeded', 'declined_by_admin', 'charge_failed',
    'approval_timed_out'
));
ALTER TABLE transactions DROP CONSTRAINT transactions_status_reason;
ALTER TABLE transactions ADD CONSTRAINT transactions_status_reason CHECK (
    (status = 'pending' AND decision_reason IN ('approval_required', 'new_merchant_requires_approval'))
    OR (status IN ('approved', 'completed') AND decision_reason IN ('auto_approved', 'approved_by_admin'))
    OR (status = 'declined' AND decision_reason IN (
        'merchant_blocked', 'merchant_not_allowed', 'per_transaction_limit_exceeded', 'merchant_daily_limit_exceeded',
        'daily_limit_exceeded', 'weekly_limit_exceeded', 'monthly_limit_exceeded',
        'organization_daily_limit_exceeded', 'organization_monthly_limit_exceeded', 'payment_count_exceeded',
        'declined_by_admin', 'charge_failed'))
    OR (status = 'timed_out' AND decision_reason = 'approval_timed_out')
);

-- Rebuilding the organization's windows sums its held transactions by day.
CREATE INDEX transactions_org_day_held_idx ON transactions (organization_id, budget_day)
    WHERE status IN ('pending', 'approved', 'completed');
-- "Has this agent paid this merchant before?" for the new-merchant approval rule.
CREATE INDEX transactions_agent_merchant_paid_idx ON transactions (agent_id, (rtrim(lower(btrim(merchant)), '.')))
    WHERE status IN ('approved', 'completed');

-- The payment request's row as in 0006, with the shadow verdict. The old signature stays for containers of the
-- previous release during a deploy.
CREATE FUNCTION record_payment_request(
    p_id uuid,
    p_agent_id uuid,
    p_organization_id uuid,
    p_amount_cents bigint,
    p_currency text,
    p_merchant text,
    p_purpose text,
    p_context jsonb,
    p_status text,
    p_decision_reason text,
    p_idempotency_key text,
    p_request_hash text,
    p_budget_day date,
    p_callback_url text,
    p_approval_expires_at timestamptz,
    p_now timestamptz,
    p_actor text,
    p_audit_entries jsonb,
    p_jobs jsonb,
    p_shadow jsonb
) RETURNS TABLE (job_id uuid)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transactions (id, agent_id, organization_id, amount_cents, currency, merchant, purpose, context,
                              status, decision_reason, idempotency_key, request_hash, budget_day, callback_url,
                              approval_expires_at, created_at, updated_at, shadow)
    VALUES (p_id, p_agent_id, p_organization_id, p_amount_cents, p_currency, p_merchant, p_purpose, p_context,
            p_status, p_decision_reason, p_idempotency_key, p_request_hash, p_budget_day, p_callback_url,
            p_approval_expires_at, p_now, p_now, p_shadow)
    ON CONFLICT ON CONSTRAINT transactions_agent_idempotency_key DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    INSERT INTO audit_logs (organization_id, agent_id, transaction_id, actor, action, details)
    SELECT p_organization_id, p_agent_id, p_id, p_actor, entry.action, entry.details
    FROM jsonb_to_recordset(p_audit_entries) AS entry(action text, details jsonb);

    job_id := NULL;
    INSERT INTO job_outbox AS outbox (job_type, dedup_id, payload)
    SELECT job.job_type, job.dedup_id, job.payload
    FROM jsonb_to_recordset(p_jobs) AS job(job_type text, dedup_id text, payload jsonb)
    ON CONFLICT (dedup_id) DO NOTHING
    RETURNING outbox.id INTO job_id;
    RETURN NEXT;
END;
$$;
