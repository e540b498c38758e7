"""Who uses AgentPay: organizations, their agents and keys, their card (billing), and what their admins read."""
