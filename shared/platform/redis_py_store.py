"""The budget store over redis-py, for a real Redis or Valkey (local and CI); loaded only when REDIS_URL selects it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.errors import BudgetUnavailable
from shared.platform.redis_store import (
    CONNECT_TIMEOUT_S,
    HEALTH_CHECK_INTERVAL_S,
    READ_TIMEOUT_S,
    RETRIES,
    LuaScript,
    refusal,
    script_args,
)

T = TypeVar("T")


class RedisPyStore:
    """The store over redis-py, for a real Redis or Valkey (local and CI)."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), RETRIES, supported_errors=(redis.exceptions.ConnectionError,)),
            **_redis_py_options(),
        )

    def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv = script_args(args)
        try:
            return self._call(lambda: self._client.evalsha(script.sha1, len(keys), *keys, *argv), script)
        except redis.exceptions.NoScriptError:
            return self._call(lambda: self._client.eval(script.source, len(keys), *keys, *argv), script)

    def get(self, key: str) -> str | None:
        value = self._call(lambda: self._client.get(key))
        return None if value is None else str(value)

    def set(self, key: str, value: str, *, ex: int | None = None) -> None:
        self._call(lambda: self._client.set(key, value, ex=ex))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self._call(lambda: self._client.delete(*keys)))

    def ping(self) -> bool:
        return bool(self._call(self._client.ping))

    def scan_keys(self, pattern: str) -> list[str]:
        return self._call(lambda: [str(k) for k in self._client.scan_iter(match=pattern, count=500)])

    def hgetall(self, key: str) -> dict[str, str]:
        return self._call(lambda: {str(k): str(v) for k, v in self._client.hgetall(key).items()})

    def flushall(self) -> None:
        self._call(self._client.flushall)

    def close(self) -> None:
        self._client.close()

    def _call(self, command: Callable[[], T], script: LuaScript | None = None) -> T:
        try:
            return command()
        except redis.exceptions.NoScriptError:
            raise
        except redis.exceptions.RedisError as exc:
            failure = _redis_py_failure(exc, script)
            if failure is exc:
                raise
            raise failure from exc


def _redis_py_options() -> dict[str, Any]:
    """redis-py's options, the same for its blocking and its asyncio client."""
    return {
        "decode_responses": True,
        "protocol": 2,  # RESP2, as Upstash speaks: Lua replies convert the same way on both stores
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": READ_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        # redis-py's default is 10 retries with backoff, timeouts included. One retry on a dropped
        # connection (a stale pooled socket after a restart) is enough; a timeout is not retried.
        "retry_on_timeout": False,
    }


def _redis_py_failure(exc: redis.exceptions.RedisError, script: LuaScript | None) -> Exception:
    """What a redis-py error means: Redis is unavailable, it refused the command, or (`exc` itself) a bug here."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return BudgetUnavailable()
    if isinstance(exc, redis.exceptions.ResponseError):
        # redis-py strips known codes ("ERR", "NOSCRIPT") from the text and keeps them in status_code.
        code = getattr(exc, "status_code", None)
        return refusal(f"{code} {exc}" if code else str(exc), script)
    return exc


class AsyncRedisPyStore:
    """run_script over redis.asyncio (local and CI): the request waits for Redis on the event loop, no thread."""

    def __init__(self, url: str) -> None:
        self._client = redis.asyncio.Redis.from_url(
            url,
            retry=redis.asyncio.retry.Retry(NoBackoff(), RETRIES, supported_errors=(redis.exceptions.ConnectionError,)),
            **_redis_py_options(),
        )

    async def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv = script_args(args)
        try:
            try:
                return await self._client.evalsha(script.sha1, len(keys), *keys, *argv)
            except redis.exceptions.NoScriptError:
                return await self._client.eval(script.source, len(keys), *keys, *argv)
        except redis.exceptions.RedisError as exc:
            failure = _redis_py_failure(exc, script)
            if failure is exc:
                raise
            raise failure from exc

    async def close(self) -> None:
        await self._client.aclose()
