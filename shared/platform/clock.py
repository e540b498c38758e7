"""The time AgentPay runs on: one place to read it (so tests can travel in time) and to format it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time, with an offset tests can move."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0

    def time(self) -> float:
        return time.time() + self.offset_seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), tz=UTC)


clock = Clock()


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    return value.isoformat() if value is not None else None
