-- A payment request's row, its audit entries and its job in one call (one round trip, one database transaction).
-- As a function its statements are planned once per database session and reused: Neon's pooled URL (PgBouncer in
-- transaction mode) rules out prepared statements, and parsing and planning the same three INSERTs on every request
-- cost PostgreSQL about a third of its time per decision (`make bench`).
--
-- Returns one row (job_id, NULL when the status needs no job) when the transaction was written, and no row when
-- the agent had already used the idempotency key (the caller then answers with the existing transaction).
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
    p_audit_entries jsonb,  -- [{"action": ..., "details": {...}}, ...]
    p_jobs jsonb            -- [{"job_type": ..., "dedup_id": ..., "payload": {...}}] or []
) RETURNS TABLE (job_id uuid)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transactions (id, agent_id, organization_id, amount_cents, currency, merchant, purpose, context,
                              status, decision_reason, idempotency_key, request_hash, budget_day, callback_url,
                              approval_expires_at, created_at, updated_at)
    VALUES (p_id, p_agent_id, p_organization_id, p_amount_cents, p_currency, p_merchant, p_purpose, p_context,
            p_status, p_decision_reason, p_idempotency_key, p_request_hash, p_budget_day, p_callback_url,
            p_approval_expires_at, p_now, p_now)
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
