"""The container's clients and primitives: the database pool, the Redis store, per-loop clients, the clock, text."""
