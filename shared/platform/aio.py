"""Clients that belong to one event loop (redis.asyncio, psycopg's async pool): one per running loop.

An asyncio client's sockets and locks are bound to the loop that opened them. A container normally has one loop for
its life (uvicorn's, or the one Mangum keeps across Lambda invocations), but a test client starts a loop per test, so
each loop gets its own client, created on first use there and closed with `close_loop_clients()` before the loop ends
(the app's shutdown). A loop that goes away without that only drops its client to the garbage collector.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

# Blocking work (a Postgres or Redis call of a rare path, Upstash's REST client) of async code. A plain executor:
# anyio's thread hop, which FastAPI uses for sync routes, costs about 20 us more CPU per call on the event loop.
_blocking_pool = concurrent.futures.ThreadPoolExecutor(max_workers=40, thread_name_prefix="agentpay-blocking")


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn` in a worker thread with the caller's context variables (request and agent ids in the logs)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_blocking_pool, call)


_registry: list[PerLoop[object]] = []


class PerLoop(Generic[T]):
    """A client per running event loop, made by `create` on first use and closed by `close`."""

    def __init__(self, create: Callable[[], Awaitable[T]], close: Callable[[T], Awaitable[None]]) -> None:
        self._create = create
        self._close = close
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[T]] = (
            weakref.WeakKeyDictionary()
        )
        _registry.append(self)  # type: ignore[arg-type]

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        made = self._by_loop.get(loop)
        if made is None:
            # A future, not the client: requests arriving while the first one creates it wait for that one.
            made = self._by_loop[loop] = asyncio.ensure_future(self._create())
        try:
            return await made
        except Exception:
            if self._by_loop.get(loop) is made:
                del self._by_loop[loop]  # the next request tries again
            raise

    async def close_current(self) -> None:
        made = self._by_loop.pop(asyncio.get_running_loop(), None)
        if made is not None and made.done() and not made.cancelled() and made.exception() is None:
            await self._close(made.result())

    def forget(self) -> None:
        """Drop every loop's client without closing it (tests that point the settings somewhere else)."""
        self._by_loop.clear()


async def close_loop_clients() -> None:
    """Close the clients the running loop opened (the app's shutdown)."""
    for per_loop in _registry:
        await per_loop.close_current()


def forget_loop_clients() -> None:
    """Forget every loop's clients without closing them (tests that point the settings at other services)."""
    for per_loop in _registry:
        per_loop.forget()
