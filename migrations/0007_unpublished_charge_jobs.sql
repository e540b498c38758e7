-- The sweep re-drives an approved transaction's charge only when no charge job for it still waits in the outbox
-- (shared/sweep.py, _redrive_charges): a backlog is not a lost job. This finds a transaction's waiting charge jobs
-- without reading the outbox.
CREATE INDEX job_outbox_unpublished_charge_idx ON job_outbox ((payload->>'transaction_id'))
    WHERE published_at IS NULL AND job_type = 'charge';
