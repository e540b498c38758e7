"""Every function's router in one FastAPI app, for the local server (`agentpay dev`) and the tests."""

from __future__ import annotations

import importlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from shared.config import get_settings
from shared.http.app import close_clients_on_shutdown, create_app
from shared.http.health import router as health_router

# The functions of ARCHITECTURE.md that serve HTTP.
FUNCTIONS = (
    "payment_request",
    "transactions",
    "approve",
    "decline",
    "dashboard",
    "charge_worker",
    "email_worker",
)


def function_routers() -> list[APIRouter]:
    return [importlib.import_module(f"functions.{name}.app").router for name in FUNCTIONS]


def build_local_app() -> FastAPI:
    """The routes alone: jobs stay in the outbox until something publishes them (tests drive them)."""
    return create_app(*function_routers(), health_router, title="AgentPay")


@asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    """What QStash and EventBridge do in production: the job dispatcher and the sweep's schedule."""
    from devtools.dispatcher import LocalDispatcher
    from shared.jobs import outbox as jobs
    from shared.payments import sweep

    settings = get_settings()
    dispatcher = LocalDispatcher(settings, duplicate_deliveries=settings.duplicate_deliveries).start()
    jobs.install_local_dispatcher(dispatcher)
    stop = threading.Event()
    schedule = threading.Thread(target=sweep.run_forever, args=(settings, stop), name="agentpay-sweep", daemon=True)
    schedule.start()
    try:
        async with close_clients_on_shutdown(app):
            yield
    finally:
        stop.set()
        jobs.install_local_dispatcher(None)
        dispatcher.stop()
        schedule.join(timeout=5)


def build_server_app() -> FastAPI:
    """The local server: every route, plus the job dispatcher and the sweep running beside them."""
    app = build_local_app()
    app.router.lifespan_context = _background
    return app
