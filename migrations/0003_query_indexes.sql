-- Indexes for the queries the app runs. Lookups by key hash, by (agent_id, idempotency_key), by stripe_charge_id and
-- webhook events by transaction are served by their UNIQUE constraints.

-- Dashboard transactions, newest first, keyset pages: WHERE organization_id = $1 ORDER BY created_at DESC, id DESC.
CREATE INDEX transactions_org_created_idx ON transactions (organization_id, created_at DESC, id DESC);

-- The same page filtered by agent (?agent_id=).
CREATE INDEX transactions_org_agent_created_idx
    ON transactions (organization_id, agent_id, created_at DESC, id DESC);

-- The same page filtered by status (?status=).
CREATE INDEX transactions_org_status_created_idx
    ON transactions (organization_id, status, created_at DESC, id DESC);

-- I5: rebuilding an agent's day counter sums the held amounts of one day from the index alone.
CREATE INDEX transactions_agent_day_held_idx ON transactions (agent_id, budget_day)
    INCLUDE (amount_cents)
    WHERE status IN ('pending', 'approved', 'completed');

-- Expiry sweep: pending approvals whose approval_expires_at has passed.
CREATE INDEX transactions_pending_expiry_idx ON transactions (approval_expires_at) WHERE status = 'pending';

-- Re-drive sweep: approved but not yet charged for a while (updated_at is when it became approved).
CREATE INDEX transactions_approved_since_idx ON transactions (updated_at) WHERE status = 'approved';

-- Dashboard agent list of an organization.
CREATE INDEX agents_org_created_idx ON agents (organization_id, created_at);

-- Dashboard audit log, newest first, keyset pages.
CREATE INDEX audit_logs_org_created_idx ON audit_logs (organization_id, created_at DESC, id DESC);

-- Audit log of one transaction (?transaction_id=), already in page order.
CREATE INDEX audit_logs_transaction_created_idx ON audit_logs (transaction_id, created_at DESC, id DESC);

-- Audit log filtered by agent (?agent_id=).
CREATE INDEX audit_logs_org_agent_created_idx ON audit_logs (organization_id, agent_id, created_at DESC, id DESC);

-- Audit log filtered by action (?action=).
CREATE INDEX audit_logs_org_action_created_idx ON audit_logs (organization_id, action, created_at DESC, id DESC);

-- Dead letters of one transaction, for an operator re-driving it.
CREATE INDEX job_dead_letters_transaction_idx ON job_dead_letters (transaction_id) WHERE transaction_id IS NOT NULL;
