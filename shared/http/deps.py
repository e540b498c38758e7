"""FastAPI dependencies shared by the functions: who is calling, and the container's settings."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from shared.config import Settings, get_settings
from shared.errors import AgentPayError, AuthenticationFailed, MissingApiKey
from shared.http import auth, throttle
from shared.jobs import outbox as jobs
from shared.platform.logs import agent_id_var


def request_path(request: Request) -> str:
    """The path as the client sent it, query string included: the exact string the signature covers."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def current_agent(request: Request) -> auth.AgentIdentity:
    # The headers are read straight from the request: as Header() parameters FastAPI would inspect and validate
    # each one on every request, and they are not part of the schema anyway.
    headers = request.headers
    authorization = headers.get("authorization")
    body = await request.body()
    authenticate = functools.partial(
        auth.authenticate_agent,
        authorization=authorization,
        timestamp=headers.get("agentpay-timestamp"),
        signature=headers.get("agentpay-signature"),
        method=request.method,
        path=request_path(request),
        body=body,
    )
    # A cached agent is checked right here; a database lookup goes to the thread pool, off the event loop.
    try:
        if auth.is_cached(authorization, auth.agent_cache):
            agent = authenticate()
        else:
            agent = await run_in_threadpool(authenticate)
    except AuthenticationFailed as failure:
        raise await refusal_after(failure, request, authorization) from failure
    agent_id_var.set(str(agent.id))
    request.state.agent = agent
    return agent


async def current_admin(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> auth.AdminIdentity:
    try:
        if auth.is_cached(authorization, auth.admin_cache):
            return auth.authenticate_admin(authorization)
        return await run_in_threadpool(auth.authenticate_admin, authorization)
    except AuthenticationFailed as failure:
        raise await refusal_after(failure, request, authorization) from failure


def client_address(request: Request) -> str | None:
    """The caller's address: the peer locally, API Gateway's sourceIp in Lambda (Mangum puts it in the scope)."""
    return request.client.host if request.client else None


async def refusal_after(failure: AuthenticationFailed, request: Request, authorization: str | None) -> AgentPayError:
    """The failure counted by the auth throttle: itself, or a 429 once this address or key has failed too often."""
    try:
        key: str | None = auth.bearer_key(authorization)
    except MissingApiKey:
        key = None
    return await run_in_threadpool(
        throttle.refusal_after,
        failure,
        address=client_address(request),
        key=key,
        limits=throttle.Limits.of(get_settings()),
    )


AgentDep = Annotated[auth.AgentIdentity, Depends(current_agent)]
AdminDep = Annotated[auth.AdminIdentity, Depends(current_admin)]


async def settings_dependency() -> Settings:
    # async: FastAPI would otherwise hand this trivial call to its thread pool on every request
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]


async def signed_job_body(
    request: Request,
    upstash_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> bytes:
    """The raw body of a job delivery, once its Upstash-Signature (QStash or the local dispatcher) verified."""
    body = await request.body()
    url = str(request.url.replace(query=""))
    jobs.verify_job_signature(signature=upstash_signature, body=body, url=url, settings=get_settings())
    return body


SignedJobBody = Annotated[bytes, Depends(signed_job_body)]
