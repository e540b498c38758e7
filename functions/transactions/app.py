"""GET /v1/transactions/{id}: an agent polls its own transaction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from mangum import Mangum

from shared.http import schema
from shared.http.app import create_app
from shared.http.deps import AgentDep
from shared.http.health import router as health_router
from shared.payments import transactions
from shared.platform import db

router = APIRouter(tags=["agent"])


@router.get(
    "/v1/transactions/{transaction_id}",
    summary="Retrieve one of the calling agent's transactions",
    response_model=None,
    responses={**schema.ok(schema.Transaction), **schema.errors(401, 403, 404, 503)},
)
def retrieve_transaction(transaction_id: str, agent: AgentDep) -> dict[str, Any]:
    tx_id = transactions.parse_id(transaction_id)
    with db.connection() as conn:
        row = transactions.get_for_agent(conn, agent_id=agent.id, transaction_id=tx_id)
    return transactions.transaction_view(row)


app = create_app(router, health_router, title="AgentPay transactions")
handler = Mangum(app, lifespan="off")
