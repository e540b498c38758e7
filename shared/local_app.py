"""Every function's router in one FastAPI app, for the local server (`agentpay dev`) and the tests."""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI

from shared.health import router as health_router
from shared.web import create_app

# The functions of ARCHITECTURE.md that serve HTTP, in the order their routes are matched.
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
    routers = []
    for name in FUNCTIONS:
        try:
            module = importlib.import_module(f"functions.{name}.app")
        except ModuleNotFoundError as exc:
            if exc.name == f"functions.{name}.app":
                continue  # that function is not built yet
            raise
        routers.append(module.router)
    return routers


def build_local_app() -> FastAPI:
    return create_app(*function_routers(), health_router, title="AgentPay")
