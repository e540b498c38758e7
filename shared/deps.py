"""FastAPI dependencies shared by the functions: who is calling, and the container's settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from shared import auth
from shared.config import Settings, get_settings
from shared.web import agent_id_var


def request_path(request: Request) -> str:
    """The path as the client sent it, query string included: the exact string the signature covers."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def current_agent(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    agentpay_timestamp: Annotated[str | None, Header(include_in_schema=False)] = None,
    agentpay_signature: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> auth.AgentIdentity:
    body = await request.body()
    agent = auth.authenticate_agent(
        authorization=authorization,
        timestamp=agentpay_timestamp,
        signature=agentpay_signature,
        method=request.method,
        path=request_path(request),
        body=body,
    )
    agent_id_var.set(str(agent.id))
    request.state.agent = agent
    return agent


def current_admin(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> auth.AdminIdentity:
    return auth.authenticate_admin(authorization)


AgentDep = Annotated[auth.AgentIdentity, Depends(current_agent)]
AdminDep = Annotated[auth.AdminIdentity, Depends(current_admin)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
