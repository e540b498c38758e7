-- Outside local mode an organization spends only once its admin email is verified (the link in the email sign-up
-- sends). Organizations that exist already were created under the old rules, with the sign-up token: they stay able
-- to spend. So do those a container still running the previous release creates during a deploy: it does not know
-- the column, and the default marks its sign-ups verified as they always were. New code states the value itself
-- (NULL until the link is posted).
ALTER TABLE organizations ADD COLUMN email_verified_at timestamptz DEFAULT now();
