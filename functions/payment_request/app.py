"""POST /v1/payment-request: an agent asks to spend; AgentPay decides within its budget."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import ConfigDict, Field, StrictInt, field_validator

from shared import api_schema as schema
from shared import payments
from shared.auth import AgentIdentity
from shared.config import get_settings
from shared.deps import AgentDep
from shared.errors import BudgetExceededError, UnsupportedCurrency, ValidationFailed
from shared.health import router as health_router
from shared.transactions import transaction_view
from shared.web import RequestModel, create_app, request_id_of

router = APIRouter(tags=["agent"])

MAX_CONTEXT_BYTES = 16 * 1024
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class PaymentRequestIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(ge=1, le=100_000_000, description="Integer cents, 1 to 100000000.")
    currency: str = Field(default="usd", max_length=16)
    merchant: str = Field(min_length=1, max_length=255)
    purpose: str = Field(min_length=1, max_length=2000)
    context: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    callback_url: str | None = Field(default=None, max_length=2048)

    @field_validator("merchant", "purpose", "idempotency_key")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("context")
    @classmethod
    def _context_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":")).encode()) > MAX_CONTEXT_BYTES:
            raise ValueError("must be at most 16 KiB when serialized")
        return value


def _callback_url(url: str | None, *, local: bool) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:
        raise ValidationFailed([{"field": "callback_url", "message": "is not a valid URL"}]) from exc
    if parts.scheme == "https" and hostname:
        return url
    if local and parts.scheme == "http" and hostname in _LOCAL_HOSTS:
        return url
    rule = "an https URL" + (" (or http on localhost in local mode)" if local else "")
    raise ValidationFailed([{"field": "callback_url", "message": f"must be {rule}"}])


def _idempotency_key(from_body: str | None, from_header: str | None) -> str:
    if from_body is not None and from_header is not None and from_body != from_header:
        raise ValidationFailed(
            [
                {
                    "field": "idempotency_key",
                    "message": "differs from the Idempotency-Key header; send one or make them equal",
                }
            ]
        )
    key = from_body if from_body is not None else from_header
    if key is None or not key.strip():
        raise ValidationFailed(
            [
                {
                    "field": "idempotency_key",
                    "message": "is required (in the body or the Idempotency-Key header)",
                }
            ]
        )
    if len(key) > 255:
        raise ValidationFailed([{"field": "idempotency_key", "message": "must be at most 255 characters"}])
    return key


async def audited_agent(request: Request, agent: AgentDep) -> AgentIdentity:
    """The calling agent; from here on a refused request is audited too (ARCHITECTURE.md, I3)."""
    request.state.on_rejected = functools.partial(payments.record_rejection, agent)
    return agent


@router.post(
    "/v1/payment-request",
    status_code=201,
    summary="Ask to spend: approved (201), pending approval (202), declined (402) or replayed (200)",
    response_model=None,
    responses={
        **schema.ok(schema.Transaction, "approved; a charge job is queued", 201),
        **schema.ok(schema.Transaction, "pending; the admin is emailed and approval_expires_at is set", 202),
        200: {
            "model": schema.Transaction,
            "description": "the same key and parameters again: the transaction as it is now",
            "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
        },
        **schema.ok(schema.DeclinedTransaction, "declined: the transaction with `error` added", 402),
        **schema.errors(401, 403, 409, 413, 422, 429, 503),
    },
)
async def create_payment_request(
    body: PaymentRequestIn,
    request: Request,
    agent: Annotated[AgentIdentity, Depends(audited_agent)],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    # The settings are read here rather than as a dependency: it saves FastAPI work on every request.
    settings = get_settings()
    currency = body.currency.lower()
    if currency != "usd":
        raise UnsupportedCurrency(f"Currency '{body.currency}' is not supported; only 'usd' is.")
    payment = payments.PaymentRequest(
        amount_cents=body.amount,
        currency=currency,
        merchant=body.merchant,
        purpose=body.purpose,
        context=body.context or {},
        idempotency_key=_idempotency_key(body.idempotency_key, idempotency_key),
        callback_url=_callback_url(body.callback_url, local=settings.is_local),
    )
    outcome = await payments.request_payment(
        agent,
        payment,
        request_id=request_id_of(request),
        approval_ttl_seconds=settings.approval_ttl_seconds,
    )
    view = transaction_view(outcome.transaction)
    if outcome.replayed:
        return JSONResponse(view, status_code=200, headers={"Idempotent-Replayed": "true"})
    if view["status"] == "declined":
        error = BudgetExceededError.for_decision(outcome.decision, amount_cents=body.amount)
        return JSONResponse({**view, **error.body(request_id_of(request))}, status_code=402)
    return JSONResponse(view, status_code=201 if view["status"] == "approved" else 202)


app = create_app(router, health_router, title="AgentPay payment requests")
handler = Mangum(app, lifespan="off")
