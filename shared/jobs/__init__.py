"""Background jobs: the outbox, publishing to QStash (or the local dispatcher), and verifying deliveries."""
