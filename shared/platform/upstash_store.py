"""The budget store over Upstash Redis REST (production); loaded only when UPSTASH_REDIS_REST_URL selects it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
from upstash_redis import Redis as UpstashRedis
from upstash_redis.errors import UpstashError

from shared.errors import BudgetUnavailable
from shared.platform.redis_store import (
    RETRIES,
    UPSTASH_RETRY_INTERVAL_S,
    UPSTASH_TIMEOUT_S,
    LuaScript,
    error_code,
    refusal,
    script_args,
)

T = TypeVar("T")


class UpstashStore:
    """The store over Upstash Redis REST (production)."""

    def __init__(self, url: str, token: str) -> None:
        self._client = _upstash_client(url, token)

    def run_script(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        argv: list[str] = script_args(args)
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
            if script is not None and error_code(message) == "NOSCRIPT":
                raise _NoScript() from exc
            raise refusal(message, script) from exc
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            # No answer, a non-2xx status other than 400 (see _refuse_unanswered), or a body that is not JSON.
            raise BudgetUnavailable() from exc


class _NoScript(Exception):
    """EVALSHA found no script under that SHA1 (Upstash): send EVAL."""


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
        raise RuntimeError("upstash-redis moved its httpx.Client (Redis._http._client): see upstash_store.py")
    http._client.close()
    http._client = httpx.Client(
        timeout=httpx.Timeout(UPSTASH_TIMEOUT_S),
        event_hooks={"response": [_refuse_unanswered]},
    )
    return client
