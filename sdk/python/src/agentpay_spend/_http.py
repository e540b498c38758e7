"""Signed requests, the retry policy and response decoding, shared by the sync and async clients."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import httpx

from ._errors import APIConnectionError, APIError, error_from_response, parse_retry_after
from ._signing import SIGNATURE_VERSION, sign_request

BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0
# A Retry-After longer than this is not waited out: the caller learns of the outage instead of hanging.
RETRY_AFTER_CAP = 60.0


def _timestamp() -> str:
    """Unix seconds for AgentPay-Timestamp; taken again for every attempt, so retries carry a fresh one."""
    return str(int(time.time()))


def _should_retry(*, attempt: int, max_retries: int, response: httpx.Response | None) -> bool:
    """Retry network failures (response is None) and 5xx, never 4xx, at most max_retries times.

    Safe for payments because every retry carries the same idempotency key.
    """
    if attempt >= max_retries:
        return False
    return response is None or response.status_code >= 500


def _backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt + 1`: a 503's Retry-After if given, else full jitter."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP)
    return random.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def _retry_delay(attempt: int, response: httpx.Response | None) -> float:
    retry_after = None
    if response is not None and response.status_code == 503:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return _backoff_delay(attempt, retry_after)


def encode_json(body: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) for a JSON body."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sign(request: httpx.Request, api_key: str) -> httpx.Request:
    """Add the auth headers, signing the request target exactly as it goes on the wire."""
    timestamp = _timestamp()
    path = request.url.raw_path.decode("ascii")
    body = request.content if request.method != "GET" else b""
    signature = sign_request(api_key, timestamp=timestamp, method=request.method, path=path, body=body)
    request.headers["Authorization"] = f"Bearer {api_key}"
    request.headers["AgentPay-Timestamp"] = timestamp
    request.headers["AgentPay-Signature"] = f"{SIGNATURE_VERSION}={signature}"
    return request


def decode(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other answer raises its mapped error."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if response.is_success and isinstance(body, dict):
        return body
    if response.is_success:
        raise APIError(
            "AgentPay answered with something other than a JSON object.",
            http_status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            body=body,
            headers=response.headers,
        )
    raise error_from_response(response.status_code, body, response.headers)


class SyncTransport:
    """Sends signed requests with retries over one httpx.Client."""

    def __init__(self, *, api_key: str, http: httpx.Client, max_retries: int) -> None:
        self._api_key = api_key
        self._http = http
        self._max_retries = max_retries

    def request(self, request: httpx.Request) -> dict[str, Any]:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.send(sign(request, self._api_key))
            except httpx.TransportError as exc:
                if not _should_retry(attempt=attempt, max_retries=self._max_retries, response=None):
                    raise _connection_error(exc, attempt, request.url) from exc
            else:
                if not _should_retry(attempt=attempt, max_retries=self._max_retries, response=response):
                    return decode(response)
            time.sleep(_retry_delay(attempt, response))
            attempt += 1

    def close(self) -> None:
        self._http.close()


class AsyncTransport:
    """Sends signed requests with retries over one httpx.AsyncClient."""

    def __init__(self, *, api_key: str, http: httpx.AsyncClient, max_retries: int) -> None:
        self._api_key = api_key
        self._http = http
        self._max_retries = max_retries

    async def request(self, request: httpx.Request) -> dict[str, Any]:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.send(sign(request, self._api_key))
            except httpx.TransportError as exc:
                if not _should_retry(attempt=attempt, max_retries=self._max_retries, response=None):
                    raise _connection_error(exc, attempt, request.url) from exc
            else:
                if not _should_retry(attempt=attempt, max_retries=self._max_retries, response=response):
                    return decode(response)
            await asyncio.sleep(_retry_delay(attempt, response))
            attempt += 1

    async def close(self) -> None:
        await self._http.aclose()


def _connection_error(exc: httpx.TransportError, attempt: int, url: httpx.URL) -> APIConnectionError:
    """Says where it tried (without any user:password of the URL), how often, and what went wrong last."""
    attempts = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
    where = url.copy_with(userinfo=b"")
    cause = f"{type(exc).__name__}: {exc}"
    return APIConnectionError(f"Could not reach AgentPay at {where} after {attempts}: {cause}")
