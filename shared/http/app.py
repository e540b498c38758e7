"""The FastAPI application every function is built from: error shape, request ids, request bounds, Sentry."""

from __future__ import annotations

import gc
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, model_validator
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import get_settings
from shared.errors import AgentPayError, HeadersTooLarge, NotFound, PayloadTooLarge, ValidationFailed
from shared.http.json_bounds import nests_deeper_than
from shared.platform.aio import close_loop_clients
from shared.platform.collector import tune_gc
from shared.platform.logs import agent_id_var, configure_logging, request_id_var

MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # names and values of all request headers together
# A JSON body nests at most this deep (the body itself is level 1). Python's parser and our own recursive checks
# would otherwise run into the interpreter's recursion limit on a hostile body: a 500 with a logged trace.
MAX_JSON_DEPTH = 32
TOO_DEEP = ValidationFailed([{"field": "body", "message": f"is nested deeper than {MAX_JSON_DEPTH} levels"}])
# Every answer: never sniffed as another type, and never kept by a cache (some carry keys shown once); a route that
# wants caching (static files) sets its own Cache-Control.
DEFAULT_RESPONSE_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))

# Sent with every HTML page (the dashboard, the approval links). Powerful browser features none of them uses are
# denied to the page and to anything it could embed; a page that starts to use one (passkeys, say) takes it out of
# this list. Only features Chromium recognises: an unknown one is a console warning on every page. The clipboard
# stays allowed for the "Copy" button beside a key shown once. COOP cuts the link between our window and a window
# of another origin that opened it or that it opened.
PAGE_ISOLATION_HEADERS = {
    "Permissions-Policy": ", ".join(
        f"{feature}=()"
        for feature in (
            "accelerometer",
            "autoplay",
            "camera",
            "clipboard-read",
            "display-capture",
            "encrypted-media",
            "fullscreen",
            "geolocation",
            "gyroscope",
            "hid",
            "idle-detection",
            "local-fonts",
            "magnetometer",
            "microphone",
            "midi",
            "otp-credentials",
            "payment",
            "publickey-credentials-create",
            "publickey-credentials-get",
            "screen-wake-lock",
            "serial",
            "usb",
            "window-management",
            "xr-spatial-tracking",
        )
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
}

log = logging.getLogger("agentpay")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class RequestContextMiddleware:
    """Gives every request an id (echoed in X-Request-Id), bounds what it makes us read (headers, body size, JSON
    nesting) before any route sees it, adds the default response headers, logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        token = request_id_var.set(request_id)
        agent_token = agent_id_var.set(None)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in DEFAULT_RESPONSE_HEADERS if header[0] not in present]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            refusal = _refusal_of_head(scope)
            if refusal is None and _has_json_body(scope):
                receive, refusal = await _checked_json_body(receive)
            if refusal is not None:
                await _send_error(refusal, request_id, send_with_id)
                return
            await self.app(scope, _limited(receive), send_with_id)
        except _BodyTooLarge:
            await _send_error(PayloadTooLarge(), request_id, send_with_id)
        except Exception as exc:
            # The client gets the error shape with no trace; the trace goes to the log and to Sentry.
            report_unhandled(exc)
            if response_started:
                raise
            await _send_error(AgentPayError(), request_id, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round(elapsed_ms, 2),
                    }
                },
            )
            request_id_var.reset(token)
            agent_id_var.reset(agent_token)


class _BodyTooLarge(Exception):
    pass


def _refusal_of_head(scope: Scope) -> AgentPayError | None:
    """What the request line and headers alone refuse: headers over their bound, a declared body over its own."""
    headers = scope.get("headers", [])
    if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
        return HeadersTooLarge()
    declared = _content_length(scope)
    if declared is not None and declared > MAX_BODY_BYTES:
        return PayloadTooLarge()
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_json_body(scope: Scope) -> bool:
    """A body our routes would parse as JSON: declared as JSON, or sent with no type at all (the payment route
    reads an untyped body as JSON). Forms and GETs stream through untouched."""
    content_type = None
    has_body = False
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
    if not has_body:
        return False
    if content_type is None:
        return True
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


async def _checked_json_body(receive: Receive) -> tuple[Receive, AgentPayError | None]:
    """Read the whole (at most 64 KiB) JSON body and measure its nesting before any route parses it.

    Returns a receive that hands the app the same body, and the refusal if there is one."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break  # the client went away: the app sees that as it would have
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > MAX_BODY_BYTES:
            return receive, PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if nests_deeper_than(b"".join(chunks), MAX_JSON_DEPTH):
        return receive, TOO_DEEP

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay, None


def _limited(receive: Receive) -> Receive:
    """Count the body as it arrives, so a chunked body without Content-Length is limited too."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _BodyTooLarge()
        return message

    return wrapped


async def _send_error(error: AgentPayError, request_id: str, send: Send) -> None:
    body = json.dumps(error.body(request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _unstorable(value: Any, path: str) -> list[dict[str, str]]:
    """Fields holding text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate)."""
    if isinstance(value, str):
        if "\x00" in value:
            return [{"field": path or "body", "message": "must not contain the NUL character"}]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [{"field": path or "body", "message": "must be valid Unicode text (it has a lone surrogate)"}]
        return []
    problems: list[dict[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            problems += _unstorable(key, child) if isinstance(key, str) else []
            problems += _unstorable(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += _unstorable(item, f"{path}.{index}" if path else str(index))
    return problems


class RequestModel(BaseModel):
    """Base of request bodies: refuses, field by field, text that could never be stored."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        problems = _unstorable(data, "")
        if problems:
            raise ValidationFailed(problems)
        return data


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(model: type[ModelT], body: bytes) -> ModelT:
    """A raw JSON body as `model`, or a 422 naming each bad field (never a 500)."""
    try:
        return model.model_validate_json(body or b"null")
    except PydanticValidationError as exc:
        raise validation_error_from(exc.errors()) from exc


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or request_id_var.get() or new_request_id()


def error_response(error: AgentPayError, request: Request) -> JSONResponse:
    return JSONResponse(error.body(request_id_of(request)), status_code=error.http_status, headers=error.headers)


def _field_name(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_error_from(errors: Iterable[Any]) -> ValidationFailed:
    """FastAPI's or pydantic's error list as our `validation_error` with one {field, message} per problem."""
    items = []
    for err in errors:
        message = str(err.get("msg", "is invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        items.append({"field": _field_name(err.get("loc", ())), "message": message})
    return ValidationFailed(items)


async def _note_rejection(request: Request, error: AgentPayError) -> None:
    """Routes that must audit refused requests (payment requests, I3) leave a callback on the request."""
    on_rejected = getattr(request.state, "on_rejected", None)
    if on_rejected is not None:
        from starlette.concurrency import run_in_threadpool

        try:
            await run_in_threadpool(on_rejected, error, request_id_of(request))
        except Exception:  # the refusal stands; failing to audit it must not turn a 4xx into a 500
            log.warning("could not audit a refused request", extra={"fields": {"code": error.code}}, exc_info=True)


async def _on_agentpay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentPayError)
    await _note_rejection(request, exc)
    return error_response(exc, request)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = validation_error_from(exc.errors())
    await _note_rejection(request, error)
    return error_response(error, request)


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL refused a value (a NUL in a query parameter, say): the client's input, not our failure."""
    error = ValidationFailed([{"field": "body", "message": "contains a value that cannot be stored"}])
    await _note_rejection(request, error)
    return error_response(error, request)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # Starlette could not parse the body (not UTF-8, not JSON)
        unparsable = ValidationFailed([{"field": "body", "message": "is not valid JSON in UTF-8"}])
        await _note_rejection(request, unparsable)
        return error_response(unparsable, request)
    if exc.status_code == 404:
        return error_response(NotFound("No such route."), request)
    if exc.status_code == 405:
        error = AgentPayError("This method is not allowed on this route.", code="method_not_allowed")
        error.http_status, error.type = 405, "invalid_request"
        return error_response(error, request)
    error = AgentPayError(str(exc.detail), code="http_error")
    error.http_status, error.type = exc.status_code, "invalid_request"
    return error_response(error, request)


def report_unhandled(exc: BaseException) -> None:
    log.error("unhandled error", exc_info=exc)
    if _sentry_started:
        import sentry_sdk

        sentry_sdk.capture_exception(exc)


_sentry_started = False


def init_sentry(dsn: str | None, *, environment: str, transport: Any = None) -> bool:
    """Start Sentry once per container when a DSN is configured. Returns whether it is on."""
    global _sentry_started
    if not dsn or _sentry_started:
        return _sentry_started
    import sentry_sdk

    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "send_default_pii": False,
        "traces_sample_rate": 0.0,
        # Our own 500 handler reports the exception; the framework integrations would report it again.
        "default_integrations": False,
    }
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    _sentry_started = True
    return True


@asynccontextmanager
async def close_clients_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    """The event loop's Redis and Postgres clients close with the server (Lambda never shuts down: lifespan off).

    At startup, what the server has built so far (modules, the app, its routes) is frozen out of the collector's
    walks: it lives as long as the process."""
    gc.freeze()
    try:
        yield
    finally:
        await close_loop_clients()


def create_app(*routers: APIRouter, title: str = "AgentPay") -> FastAPI:
    """A FastAPI app with AgentPay's error shape, request ids, body limit and logging around the given routers."""
    settings = get_settings()
    configure_logging()
    init_sentry(settings.sentry_dsn, environment=settings.agentpay_env)
    app = FastAPI(title=title, version="1.0.0", docs_url=None, redoc_url=None, lifespan=close_clients_on_shutdown)
    app.add_exception_handler(AgentPayError, _on_agentpay_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(psycopg.DataError, _on_data_error)
    app.add_middleware(RequestContextMiddleware)
    for router in routers:
        app.include_router(router)
    tune_gc()  # the app is built: a function's cold start ends here
    return app
