-- Outside local mode an organization spends only once its admin email is verified (the link in the email sign-up
-- sends). Organizations that exist already were created under the old rules, with the sign-up token: they stay able
-- to spend.
ALTER TABLE organizations ADD COLUMN email_verified_at timestamptz;
UPDATE organizations SET email_verified_at = created_at;
