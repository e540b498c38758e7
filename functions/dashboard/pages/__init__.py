"""The web dashboard at /dashboard: server-rendered pages over the same shared functions as the dashboard API."""

from __future__ import annotations

from fastapi import APIRouter

from functions.dashboard.pages import account, agents, audit, billing, common, transactions
from functions.dashboard.pages.common import PageRoute

# The one router of the dashboard, which app.py includes. Routes are matched in this order of groups, each group's in
# its module's order. The prefix goes on each inclusion rather than on this router: FastAPI refuses to include a
# router with a route of path "" (the transaction list, at /dashboard itself) without a prefix.
router = APIRouter(route_class=PageRoute, include_in_schema=False)
for _group in (common, account, transactions, agents, audit, billing):
    router.include_router(_group.router, prefix="/dashboard")
