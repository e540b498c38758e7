"""An Upstash-REST-compatible HTTP bridge to a real Redis or Valkey, so tests run the real upstash client.

Wire protocol, as upstash-redis (upstash_redis/http.py) and Upstash's REST docs use it:
- `POST /` with a JSON array `["SET", "k", "v"]` answers `{"result": ...}`.
- `POST /pipeline` and `POST /multi-exec` with an array of such arrays answer an array of `{"result": ...}` or
  `{"error": ...}`, one per command; multi-exec runs them in MULTI/EXEC.
- `Authorization: Bearer <token>` (or `?_token=`); a wrong or missing token answers 401 `{"error": ...}`.
- `Upstash-Encoding: base64`: every string in a result is base64 of its bytes, except the status reply "OK".
- A command Redis refuses answers 400 `{"error": "ERR ..."}`; Redis unreachable answers 503 `{"error": ...}`.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

# Commands that need a dedicated connection or a session; Upstash's REST API refuses them too.
_REFUSED = frozenset(
    {
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "UNWATCH",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "MONITOR",
        "SELECT",
    }
)


class _CommandRefused(Exception):
    """The request is not a command the bridge can send."""


class UpstashBridge:
    """Serves the Upstash REST protocol on 127.0.0.1 (a free port), forwarding to redis_url with redis-py."""

    def __init__(self, redis_url: str, token: str) -> None:
        self._redis_url = redis_url
        self._token = token
        self._server: _BridgeServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the bridge is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        client = redis.Redis.from_url(
            self._redis_url,
            decode_responses=False,  # bytes, so base64 carries exactly what Redis holds
            protocol=2,
            socket_connect_timeout=0.5,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        )
        client.response_callbacks.clear()  # raw replies, as Upstash relays them: no bool for OK, no dicts
        self._server = _BridgeServer(("127.0.0.1", 0), _BridgeHandler, client=client, token=self._token)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="upstash-bridge",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.client.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> UpstashBridge:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _BridgeServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: 40 clients connecting at once overflowed it, the kernel dropped the
    # SYNs past it, and their 1 s retransmit met the Upstash client's 1 s connect timeout (a flaky ConnectTimeout in
    # the concurrency tests on a loaded machine). Upstash's own endpoint has no such limit.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, client: Any, token: str):
        super().__init__(address, handler)
        self.client: redis.Redis = client
        self.token = token


class _BridgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Upstash and httpx use it
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _BridgeServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if not self._authorized(url.query):
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
            return
        base64_encoded = self.headers.get("Upstash-Encoding", "").lower() == "base64"
        try:
            request = json.loads(body or b"null")
            if url.path in ("", "/"):
                result = self.server.client.execute_command(*_command(request))
                self._reply(HTTPStatus.OK, {"result": _encode(result, base64_encoded)})
            elif url.path in ("/pipeline", "/multi-exec"):
                commands = _commands(request)
                pipe = self.server.client.pipeline(transaction=url.path == "/multi-exec")
                for command in commands:
                    pipe.execute_command(*command)
                results = pipe.execute(raise_on_error=False)
                self._reply(HTTPStatus.OK, [_item(result, base64_encoded) for result in results])
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"ERR unknown path {url.path}"})
        except (ValueError, _CommandRefused) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"ERR {exc}"})
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"ERR redis unavailable: {exc}"})
        except redis.exceptions.ResponseError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": _error_text(exc)})

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "ERR the bridge takes commands by POST"})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def _authorized(self, query: str) -> bool:
        sent = self.headers.get("Authorization", "")
        token = sent.removeprefix("Bearer ") if sent.startswith("Bearer ") else None
        if token is None:
            token = next(iter(parse_qs(query).get("_token", [])), None)
        return token is not None and hmac.compare_digest(token.encode(), self.server.token.encode())

    def _reply(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _command(request: Any) -> list[bytes]:
    if not isinstance(request, list) or not request:
        raise _CommandRefused("a command is a non-empty JSON array")
    args = [_arg(arg) for arg in request]
    name = args[0].decode(errors="replace").upper()
    if name in _REFUSED:
        raise _CommandRefused(f"Command is not available: '{name}'")
    return args


def _commands(request: Any) -> list[list[bytes]]:
    if not isinstance(request, list) or not request:
        raise _CommandRefused("a pipeline is a non-empty JSON array of commands")
    return [_command(command) for command in request]


def _arg(arg: Any) -> bytes:
    if isinstance(arg, bool) or not isinstance(arg, str | int | float):
        raise _CommandRefused(f"arguments are strings or numbers, not {json.dumps(arg)}")
    return (arg if isinstance(arg, str) else json.dumps(arg)).encode()


def _error_text(exc: redis.exceptions.RedisError) -> str:
    # redis-py strips known codes ("ERR", "NOSCRIPT", ...) from the text and keeps them in status_code.
    code = getattr(exc, "status_code", None)
    return f"{code} {exc}" if code else str(exc)


def _item(result: Any, base64_encoded: bool) -> dict[str, Any]:
    if isinstance(result, redis.exceptions.RedisError):
        return {"error": _error_text(result)}
    return {"result": _encode(result, base64_encoded)}


def _encode(value: Any, base64_encoded: bool) -> Any:
    if isinstance(value, bytes):
        if not base64_encoded:
            return value.decode(errors="replace")
        return "OK" if value == b"OK" else base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_encode(element, base64_encoded) for element in value]
    if isinstance(value, redis.exceptions.RedisError):  # an error nested in a script's reply
        return _error_text(value)
    return value  # int or None
