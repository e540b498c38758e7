"""Telling people and systems: emails (Resend), decision webhooks, and where a callback may point."""
