"""GET /healthz: whether this container can reach the database and Redis."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.errors import AgentPayError
from shared.http import schema
from shared.platform import db
from shared.platform.aio import run_blocking
from shared.platform.redis_store import get_store

router = APIRouter(tags=["operations"])


def _blocking_database_and_redis() -> dict[str, str]:
    checks = {"database": "ok", "redis": "ok"}
    try:
        with db.connection() as conn:
            conn.execute("SELECT 1")
    except AgentPayError:
        checks["database"] = "unavailable"
    try:
        if not get_store().ping():
            checks["redis"] = "unavailable"
    except AgentPayError:
        checks["redis"] = "unavailable"
    return checks


async def check_health() -> dict[str, str]:
    """ "ok" or "unavailable" for each dependency, through both of the process's Postgres pools: the event loop's
    (payment requests) and the blocking one (everything else)."""
    checks = await run_blocking(_blocking_database_and_redis)
    try:
        async with db.async_connection() as conn:
            await conn.execute("SELECT 1")
    except AgentPayError:
        checks["database"] = "unavailable"
    return checks


@router.get(
    "/healthz",
    summary="Health of this container's dependencies",
    response_model=None,
    responses={
        200: {"model": schema.Health, "description": "the database and Redis answer"},
        503: {"model": schema.Health, "description": "a dependency does not answer"},
    },
)
async def healthz() -> JSONResponse:
    checks = await check_health()
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
        headers={} if healthy else {"Retry-After": "5"},
    )
