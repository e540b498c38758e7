"""The budget store: one small interface over redis-py (local, CI) and Upstash Redis REST (production)."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from upstash_redis import Redis as UpstashRedis
from upstash_redis.errors import UpstashError

from shared.config import get_settings
from shared.errors import BudgetUnavailable, CommandError, ScriptError
from shared.platform.aio import PerLoop, run_blocking

T = TypeVar("T")

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


def _error_code(message: str) -> str:
    return message.split(" ", 1)[0]


def _script_args(args: Sequence[str | int]) -> list[str]:
    # bool is an int: refuse it rather than send "True".
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, str | int):
            raise TypeError(f"script arguments are str or int, not {type(arg).__name__}")
    return [str(arg) for arg in args]


class RedisPyStore:
    """The store over redis-py, for a real Redis or Valkey (local and CI)."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), RETRIES, supported_errors=(redis.exceptions.ConnectionError,)),
            **_redis_py_options(),
        )

    def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv = _script_args(args)
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
        return _refusal(f"{code} {exc}" if code else str(exc), script)
    return exc


class AsyncRedisStore(Protocol):
    """What a payment request awaits from Redis: the budget script, with RedisStore.run_script's contract."""

    async def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any: ...

    async def close(self) -> None: ...


class AsyncRedisPyStore:
    """run_script over redis.asyncio (local and CI): the request waits for Redis on the event loop, no thread."""

    def __init__(self, url: str) -> None:
        self._client = redis.asyncio.Redis.from_url(
            url,
            retry=redis.asyncio.retry.Retry(NoBackoff(), RETRIES, supported_errors=(redis.exceptions.ConnectionError,)),
            **_redis_py_options(),
        )

    async def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv = _script_args(args)
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


class UpstashStore:
    """The store over Upstash Redis REST (production)."""

    def __init__(self, url: str, token: str) -> None:
        self._client = _upstash_client(url, token)

    def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv: list[str] = _script_args(args)
        try:
            return self._call(lambda: self._client.evalsha(script.sha1, list(keys), argv), script)
        except _NoScript:
            return self._call(lambda: self._client.eval(script.source, list(keys), argv), script)

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
        return self._call(self._client.ping) == "PONG"

    def scan_keys(self, pattern: str) -> list[str]:
        keys: list[str] = []
        cursor = 0
        while True:
            cursor, page = self._call(lambda c=cursor: self._client.scan(c, match=pattern, count=500))  # type: ignore[misc]
            keys.extend(str(k) for k in page)
            if int(cursor) == 0:
                return keys

    def hgetall(self, key: str) -> dict[str, str]:
        value = self._call(lambda: self._client.hgetall(key))
        return {str(k): str(v) for k, v in (value or {}).items()}

    def flushall(self) -> None:
        self._call(self._client.flushall)

    def close(self) -> None:
        self._client.close()

    def _call(self, command: Callable[[], T], script: LuaScript | None = None) -> T:
        try:
            return command()
        except UpstashError as exc:
            # A 400 reply: Redis refused the command. Its text starts with the Redis error code.
            message = str(exc)
            if script is not None and _error_code(message) == "NOSCRIPT":
                raise _NoScript() from exc
            raise _refusal(message, script) from exc
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            # No answer, a non-2xx status other than 400 (see _refuse_unanswered), or a body that is not JSON.
            raise BudgetUnavailable() from exc


class _NoScript(Exception):
    """EVALSHA found no script under that SHA1 (Upstash): send EVAL."""


def _refusal(message: str, script: LuaScript | None) -> Exception:
    code = _error_code(message)
    if code in _UNAVAILABLE_CODES:
        return BudgetUnavailable()
    if script is not None:
        return ScriptError(message, code=code, script=script.name)
    return CommandError(message, code=code)


def _refuse_unanswered(response: httpx.Response) -> None:
    """Turn every status but 2xx and 400 into an httpx error, so the outage is told by status, not by text.

    Upstash answers a refused command with 400 and {"error": "ERR ..."}; 401 (bad token), 429 (limits)
    and 5xx mean it could not answer. upstash-redis reads only the body, so without this hook a 5xx with a
    JSON error body would look like a refused command.
    """
    if response.is_success or response.status_code == 400:
        return
    response.read()
    response.raise_for_status()


def _upstash_client(url: str, token: str) -> UpstashRedis:
    client = UpstashRedis(
        url,
        token,
        # upstash_redis/http.py: `for attempt in range(retries + 1)` retries on any exception, a timeout
        # included, after `time.sleep(retry_interval)`; the defaults are 1 retry after 3 s (client.py).
        rest_retries=RETRIES,
        rest_retry_interval=UPSTASH_RETRY_INTERVAL_S,
        allow_telemetry=False,
    )
    # upstash_redis/http.py builds `httpx.Client(timeout=None)` and takes no client or timeout argument, so
    # the only way to bound a request is to swap that client. Fail at start-up if a new version moved it.
    http: Any = getattr(client, "_http", None)
    if not isinstance(getattr(http, "_client", None), httpx.Client):
        raise RuntimeError("upstash-redis moved its httpx.Client (Redis._http._client): see redis_store.py")
    http._client.close()
    http._client = httpx.Client(
        timeout=httpx.Timeout(UPSTASH_TIMEOUT_S),
        event_hooks={"response": [_refuse_unanswered]},
    )
    return client


def store_from_settings(*, upstash_url: str | None, upstash_token: str | None, redis_url: str | None) -> RedisStore:
    """Upstash when its URL and token are set, else redis-py on redis_url. A new store each call."""
    if upstash_url or upstash_token:
        if not (upstash_url and upstash_token):
            raise ValueError("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together")
        return UpstashStore(upstash_url, upstash_token)
    if redis_url:
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
    return AsyncRedisPyStore(settings.redis_url)


async def _close_async_store(store: AsyncRedisStore) -> None:
    await store.close()


_async_stores = PerLoop(_open_async_store, _close_async_store)


async def get_async_store() -> AsyncRedisStore:
    """The budget store the running event loop's requests await (one per loop; see shared.platform.aio)."""
    return await _async_stores.get()
