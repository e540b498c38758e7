"""The append-only audit log: one entry per decision and state change, never changed afterwards."""
