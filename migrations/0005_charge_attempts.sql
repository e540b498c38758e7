-- How many times a charge was started for the transaction: from the second attempt on, the worker first looks in
-- Stripe for a PaymentIntent an earlier attempt created but could not record (it died, or Postgres did).
ALTER TABLE transactions ADD COLUMN charge_attempts integer NOT NULL DEFAULT 0;
