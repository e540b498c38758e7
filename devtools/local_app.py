"""Every function's router in one FastAPI app, for the local server (`agentpay dev`) and the tests."""

from __future__ import annotations

import importlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI

from shared.config import Settings, get_settings
from shared.http.app import close_clients_on_shutdown, create_app
from shared.http.health import router as health_router

if TYPE_CHECKING:
    from devtools.dispatcher import LocalDispatcher

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
    """Each function's routers, as its app has them: `ROUTERS` where a function has several, else its `router`."""
    routers: list[APIRouter] = []
    for name in FUNCTIONS:
        module = importlib.import_module(f"functions.{name}.app")
        routers.extend(getattr(module, "ROUTERS", (module.router,)))
    return routers


def build_local_app() -> FastAPI:
    """The routes alone: jobs stay in the outbox until something publishes them (tests drive them)."""
    return create_app(*function_routers(), health_router, title="AgentPay")


@contextmanager
def jobs_running(settings: Settings, *, max_in_flight: int | None = None) -> Iterator[LocalDispatcher]:
    """What QStash and EventBridge do in production, in threads of this process until the block ends: the job
    dispatcher (at most `max_in_flight` deliveries at once, if given) and the sweep's schedule."""
    from devtools.dispatcher import LocalDispatcher
    from shared.jobs import outbox as jobs
    from shared.payments import sweep

    dispatcher = LocalDispatcher(
        settings, duplicate_deliveries=settings.duplicate_deliveries, max_in_flight=max_in_flight
    ).start()
    jobs.install_local_dispatcher(dispatcher)
    stop = threading.Event()
    schedule = threading.Thread(target=sweep.run_forever, args=(settings, stop), name="agentpay-sweep", daemon=True)
    schedule.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        jobs.install_local_dispatcher(None)
        dispatcher.stop()
        schedule.join(timeout=5)


@asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    with jobs_running(get_settings()):
        async with close_clients_on_shutdown(app):
            yield


def build_server_app() -> FastAPI:
    """Every route, with the job dispatcher and the sweep in the same process: one process that does it all, for the
    tests, the chaos run and the benchmark's job path. (`agentpay dev` runs its jobs in a process of their own,
    devtools/job_process.py.)"""
    app = build_local_app()
    app.router.lifespan_context = _background
    return app
