"""The web dashboard at /dashboard: server-rendered pages over the same shared functions as the dashboard API.

The dashboard's modules (these and functions/dashboard/app.py) leave out `from __future__ import annotations`: with
it FastAPI evaluates every route's string annotations when the routes are built, about 8 ms of the function's cold
start (make bench, import_ratio)."""

from functions.dashboard.pages import account, agents, audit, billing, common, policies, settings, transactions

# The dashboard's page groups, in the order their routes are matched (each group's in its module's order). app.py
# hands them to create_app beside the API's router; each carries the /dashboard prefix itself (common.page_router).
ROUTERS = tuple(group.router for group in (common, account, transactions, agents, policies, settings, audit, billing))
