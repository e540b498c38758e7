"""POST /v1/jobs/charge: QStash delivers a charge job; the approved transaction is charged once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from mangum import Mangum
from pydantic import ConfigDict

from shared.http import schema
from shared.http.app import RequestModel, create_app, parse_body, request_id_of
from shared.http.deps import SettingsDep, SignedJobBody
from shared.http.health import router as health_router
from shared.payments import charges
from shared.vendors import stripe as stripe_api

router = APIRouter(tags=["jobs"])


class ChargeJobIn(RequestModel):
    model_config = ConfigDict(extra="ignore")

    transaction_id: uuid.UUID


@router.post(
    "/v1/jobs/charge",
    summary="Charge an approved transaction (QStash-signed)",
    response_model=None,
    responses={**schema.ok(schema.JobResult), **schema.errors(401, 409, 503)},
)
def run_charge_job(body: SignedJobBody, request: Request, settings: SettingsDep) -> dict[str, Any]:
    job = parse_body(ChargeJobIn, body)
    result = charges.charge_transaction(
        stripe_api.get_client(), job.transaction_id, settings=settings, request_id=request_id_of(request)
    )
    return {"outcome": result.outcome}


app = create_app(router, health_router, title="AgentPay charge worker")
handler = Mangum(app, lifespan="off")
