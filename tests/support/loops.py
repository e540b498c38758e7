"""Running a coroutine to completion in a test without touching the thread's current event loop.

`asyncio.run` leaves the main thread with no current loop (it sets it to None when done), and Mangum's handler asks
for the current loop on every call: a Lambda handler test after an `asyncio.run` would fail for that reason alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
