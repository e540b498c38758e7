"""The budget store: one small interface over redis-py (local, CI) and Upstash Redis REST (production).

Each client lives in its own module (redis_py_store, upstash_store), imported when the settings select it: a
container loads one of the two libraries, never both, and neither before its first command.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.config import get_settings
from shared.errors import BudgetUnavailable, CommandError, ScriptError
from shared.platform.aio import PerLoop, run_blocking

if TYPE_CHECKING:
    pass

# Transport settings. Each command is sent at most twice (one retry), so a script whose reply was lost may run
# twice: every budget script must be safe to run twice.
CONNECT_TIMEOUT_S = 0.5  # redis-py, local Valkey
READ_TIMEOUT_S = 0.5  # redis-py; a budget script takes microseconds
UPSTASH_TIMEOUT_S = 1.0  # connect, write, read and pool, each; worst case about 2 x 1 s + 50 ms
UPSTASH_RETRY_INTERVAL_S = 0.05
RETRIES = 1
HEALTH_CHECK_INTERVAL_S = 30  # a pooled connection idle longer than this is PINGed before use

# Redis error codes (a reply's first word) meaning the server cannot answer now, not a wrong command.
_UNAVAILABLE_CODES = frozenset({"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM"})


@dataclass(frozen=True)
class LuaScript:
    """A Lua script's source and the SHA1 Redis knows it by."""

    source: str
    name: str = "<string>"
    sha1: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha1", digest)

    @classmethod
    def from_file(cls, path: str | Path) -> LuaScript:
        path = Path(path)
        return cls(path.read_text(encoding="utf-8"), name=path.name)


class RedisStore(Protocol):
    """What the budget engine needs from Redis. Unreachable Redis raises BudgetUnavailable."""

    def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA, then EVAL on NOSCRIPT; replies are int, str, None (nil or false) and list.

        A reply lost in transit is retried once, so one call may run the script twice: make it safe to.
        """
        ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, *, ex: int | None = None) -> None: ...

    def delete(self, *keys: str) -> int: ...

    def ping(self) -> bool: ...

    def scan_keys(self, pattern: str) -> list[str]:
        """Every key matching a glob pattern (SCAN, never KEYS): for the sweep, not for request paths."""
        ...

    def hgetall(self, key: str) -> dict[str, str]: ...

    def flushall(self) -> None:
        """Tests only."""
        ...

    def close(self) -> None:
        """Tests and shutdown; a container keeps its store for its life."""
        ...


def error_code(message: str) -> str:
    """A Redis error's code: its reply's first word."""
    return message.split(" ", 1)[0]


def script_args(args: Sequence[str | int]) -> list[str]:
    """A script's ARGV as both clients send it."""
    # bool is an int: refuse it rather than send "True".
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            raise TypeError(f"script arguments are str or int, not {type(arg).__name__}")
    return [str(arg) for arg in args]


def refusal(message: str, script: LuaScript | None) -> Exception:
    """What a refused command means: Redis cannot answer now (BudgetUnavailable), or it refused this command."""
    code = error_code(message)
    if code in _UNAVAILABLE_CODES:
        return BudgetUnavailable()
    if script is not None:
        return ScriptError(message, code=code, script=script.name)
    return CommandError(message, code=code)


class AsyncRedisStore(Protocol):
    """What a payment request awaits from Redis: the budget script, with RedisStore.run_script's contract."""

    async def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any: ...

    async def close(self) -> None: ...


class InThreadStore:
    """run_script of a blocking store in a worker thread: Upstash's REST client has no asyncio twin we can bound.

    In Lambda a container serves one request at a time, so the thread costs nothing that matters there.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        return await run_blocking(self.store.run_script, script, keys, args)

    async def close(self) -> None:
        """Nothing: the blocking store is the container's (get_store()) and outlives the loop."""


def store_from_settings(*, upstash_url: str | None, upstash_token: str | None, redis_url: str | None) -> RedisStore:
    """Upstash when its URL and token are set, else redis-py on redis_url. A new store each call."""
    if upstash_url or upstash_token:
        if not (upstash_url and upstash_token):
            raise ValueError("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together")
        from shared.platform.upstash_store import UpstashStore

        return UpstashStore(upstash_url, upstash_token)
    if redis_url:
        from shared.platform.redis_py_store import RedisPyStore

        return RedisPyStore(redis_url)
    raise ValueError("no budget store configured: set UPSTASH_REDIS_REST_URL and _TOKEN, or REDIS_URL")


@functools.cache
def get_store() -> RedisStore:
    """The container's one budget store, created on first use (tests: get_store.cache_clear())."""
    settings = get_settings()
    try:
        return store_from_settings(
            upstash_url=settings.upstash_redis_rest_url,
            upstash_token=settings.upstash_redis_rest_token,
            redis_url=settings.redis_url,
        )
    except ValueError as exc:
        raise BudgetUnavailable("The budget store is not configured.") from exc


async def _open_async_store() -> AsyncRedisStore:
    settings = get_settings()
    if settings.upstash_redis_rest_url or settings.upstash_redis_rest_token or not settings.redis_url:
        return InThreadStore(get_store())  # get_store() refuses a half-configured Upstash or no store at all
    from shared.platform.redis_py_store import AsyncRedisPyStore

    return AsyncRedisPyStore(settings.redis_url)


async def _close_async_store(store: AsyncRedisStore) -> None:
    await store.close()


_async_stores = PerLoop(_open_async_store, _close_async_store)


async def get_async_store() -> AsyncRedisStore:
    """The budget store the running event loop's requests await (one per loop; see shared.platform.aio)."""
    return await _async_stores.get()
