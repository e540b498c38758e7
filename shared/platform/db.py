"""The container's PostgreSQL connection pool and the helpers to borrow from it."""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from shared.config import Settings, get_settings
from shared.errors import DatabaseUnavailable
from shared.platform.aio import PerLoop

log = logging.getLogger("agentpay.db")

Connection = psycopg.Connection[dict[str, Any]]
AsyncConnection = psycopg.AsyncConnection[dict[str, Any]]


IDLE_CHECK_SECONDS = 5.0  # a connection idle longer than this is checked before use (a Lambda container resumed)
_last_returned: weakref.WeakKeyDictionary[psycopg.Connection[Any] | psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


def _note_returned(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    # Noted by connection() as the borrower gives it back, not by the pool's `reset` hook: with a hook the pool
    # returns every connection through a worker (a thread, or a task), a hand-off on every request.
    _last_returned[conn] = time.monotonic()


_last_failure = -1e9  # when a connection last broke in this process (a server restart, a network cut)
RECENT_FAILURE_SECONDS = 30.0  # after a failure every checkout is checked for this long (the server may be restarting)


def _needs_check(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a connection sat idle, or any connection is being borrowed soon after a failure.

    A connection in steady use skips the extra round trip.
    """
    now = time.monotonic()
    return now - _last_failure < RECENT_FAILURE_SECONDS or now - _last_returned.get(conn, 0.0) > IDLE_CHECK_SECONDS


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """Check a connection that may have died (see _needs_check): a dead one raises and is replaced."""
    if _needs_check(conn):
        ConnectionPool.check_connection(conn)


async def _check_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if _needs_check(conn):
        await AsyncConnectionPool.check_connection(conn)


def _connection_kwargs(connect_timeout: float) -> dict[str, Any]:
    return {
        # Neon's pooled URL is PgBouncer in transaction mode: no prepared statements.
        "prepare_threshold": None,
        "connect_timeout": max(1, int(connect_timeout)),
        "row_factory": dict_row,
        "autocommit": True,
    }


def create_pool(database_url: str, *, max_size: int, connect_timeout: float) -> ConnectionPool[Any]:
    """A pool that survives a dropped connection: an idle one is checked before use and replaced if dead."""
    pool: ConnectionPool[Any] = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        kwargs=_connection_kwargs(connect_timeout),
        check=_check_if_idle,
        timeout=connect_timeout,
        reconnect_timeout=30.0,
        open=False,
        name="agentpay",
    )
    pool.open(wait=False)
    return pool


@functools.cache
def get_pool() -> ConnectionPool[Any]:
    """One pool per container: size 1 in Lambda (one request at a time), larger in the local server."""
    settings: Settings = get_settings()
    return create_pool(
        settings.require("database_url"),
        max_size=1 if settings.in_lambda else settings.db_pool_max_size,
        connect_timeout=settings.db_connect_timeout,
    )


def close_pool() -> None:
    if get_pool.cache_info().currsize:
        get_pool().close()
        get_pool.cache_clear()


@contextmanager
def connection(pool: ConnectionPool[Any] | None = None) -> Iterator[Connection]:
    """Borrow a connection (autocommit); a database that cannot be reached becomes DatabaseUnavailable."""
    pool = pool or get_pool()
    try:
        with pool.connection() as conn:
            try:
                yield conn
            finally:
                _note_returned(conn)
    except PoolTimeout as exc:
        raise DatabaseUnavailable() from exc
    except psycopg.OperationalError as exc:
        # One broken connection usually means the server restarted: check the idle ones now, so only this
        # request fails and the next ones get fresh connections.
        _discard_dead_connections(pool)
        raise DatabaseUnavailable() from exc


def _note_failure() -> None:
    """A connection broke: every checkout is checked for the next RECENT_FAILURE_SECONDS."""
    global _last_failure
    _last_failure = time.monotonic()


def _discard_dead_connections(pool: ConnectionPool[Any]) -> None:
    _note_failure()
    try:
        pool.check()
    except Exception:  # the check is best effort; the pool keeps reconnecting by itself
        log.warning("pool check failed", exc_info=True)


# The event loop's pool: the payment request's insert awaits Postgres on the loop instead of holding a thread.
async def _open_async_pool() -> AsyncConnectionPool[Any]:
    settings: Settings = get_settings()
    connect_timeout = settings.db_connect_timeout
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.require("database_url"),
        min_size=1,
        max_size=1 if settings.in_lambda else settings.db_async_pool_max_size,
        kwargs=_connection_kwargs(connect_timeout),
        check=_check_if_idle_async,
        timeout=connect_timeout,
        reconnect_timeout=30.0,
        open=False,
        name="agentpay-async",
    )
    await pool.open(wait=False)
    return pool


async def _close_async_pool(pool: AsyncConnectionPool[Any]) -> None:
    await pool.close()


_async_pools = PerLoop(_open_async_pool, _close_async_pool)


@asynccontextmanager
async def async_connection() -> AsyncIterator[AsyncConnection]:
    """Borrow a connection of the running loop's pool (autocommit); failures as in `connection()`."""
    pool = await _async_pools.get()
    try:
        async with pool.connection() as conn:
            try:
                yield conn
            finally:
                _note_returned(conn)
    except PoolTimeout as exc:
        raise DatabaseUnavailable() from exc
    except psycopg.OperationalError as exc:
        _note_failure()
        try:
            await pool.check()
        except Exception:
            log.warning("pool check failed", exc_info=True)
        raise DatabaseUnavailable() from exc


@contextmanager
def transaction(pool: ConnectionPool[Any] | None = None) -> Iterator[Connection]:
    """Borrow a connection inside one database transaction, committed on success."""
    with connection(pool) as conn:
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable() from exc
