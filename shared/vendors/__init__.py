"""Third-party services wrapped where they enter: Stripe (the one client and the one error mapping)."""
