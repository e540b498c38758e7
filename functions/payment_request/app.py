"""POST /v1/payment-request: an agent asks to spend; AgentPay decides within its budget."""

from __future__ import annotations

import functools
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from pydantic import ConfigDict, Field, StrictInt, field_validator
from pydantic import ValidationError as PydanticValidationError

from shared.config import get_settings
from shared.errors import BudgetExceededError, OrganizationNotVerified, UnsupportedCurrency, ValidationFailed
from shared.http import schema
from shared.http.app import RequestModel, create_app, request_id_of, validation_error_from
from shared.http.deps import current_agent
from shared.http.health import router as health_router
from shared.notify.destinations import CallbackPolicy, check_url
from shared.payments import requests as payments
from shared.payments.transactions import transaction_view
from shared.platform import display_text
from shared.policy.model import normalize_merchant

router = APIRouter(tags=["agent"])

MAX_CONTEXT_BYTES = 16 * 1024
# The SDKs refuse a non-integer amount with the same sentence before sending it (tests/sdk checks they agree).
AMOUNT_IN_CENTS = "amount is an integer number of cents: 500 means $5.00"


class PaymentRequestIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(ge=1, le=100_000_000, description="Integer cents, 1 to 100000000.")
    currency: str = Field(default="usd", max_length=16)
    merchant: str = Field(
        min_length=1,
        max_length=255,
        description="No control, format (invisible or bidirectional) or separator characters: Unicode Cc, Cf, Zl, Zp.",
    )
    purpose: str = Field(min_length=1, max_length=2000)
    context: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    callback_url: str | None = Field(default=None, max_length=2048)

    @field_validator("amount", mode="before")
    @classmethod
    def _integer_cents(cls, value: Any) -> Any:
        # 5.0 is refused like 5.5: someone who sends it may mean $5, and 5 cents would pay a hundredth of that.
        if type(value) is not int:
            raise ValueError(AMOUNT_IN_CENTS)
        return value

    @field_validator("merchant", "purpose", "idempotency_key")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("merchant")
    @classmethod
    def _no_hidden_characters(cls, value: str) -> str:
        # The approver reads this name to decide whom to pay: "evil\u202emoc.elgoog" would read as evilgoogle.com.
        found = display_text.first_refused(value)
        if found is not None:
            raise ValueError(f"must not contain invisible, bidirectional or control characters ({found})")
        return value

    @field_validator("context")
    @classmethod
    def _context_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":")).encode()) > MAX_CONTEXT_BYTES:
            raise ValueError("must be at most 16 KiB when serialized")
        return value


def _callback_url(url: str | None, *, local: bool) -> str | None:
    """The callback URL as sent, if it may be called: checked as written, no DNS lookup (delivery checks that)."""
    if url is None:
        return None
    policy = CallbackPolicy.for_settings(get_settings()) if local else CallbackPolicy()
    check_url(url, policy)  # raises CallbackUrlRefused: a 422 on callback_url, before anything is written
    return url


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


def _json_body(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI would hand it to a model: parsed when it is JSON (or untyped), the bytes otherwise."""
    if not raw:
        return None
    media = (content_type or "application/json").partition(";")[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    if maintype != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationFailed([{"field": "body", "message": "JSON decode error"}]) from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed([{"field": "body", "message": "is not valid JSON in UTF-8"}]) from exc
    except ValueError as exc:  # Python converts integers of at most 4300 digits
        raise ValidationFailed([{"field": "body", "message": "has a number longer than 4300 digits"}]) from exc


def _payment_request_in(data: Any) -> PaymentRequestIn:
    if data is None:
        raise ValidationFailed([{"field": "body", "message": "Field required"}])
    try:
        return PaymentRequestIn.model_validate(data)
    except PydanticValidationError as exc:
        raise validation_error_from(exc.errors()) from exc


# The hottest route reads its own body and headers: as FastAPI parameters (a body model, a header, two layers of
# dependencies) they cost about an eighth of the server's CPU per request (0.09 ms in-process). What FastAPI would
# have inferred for the schema is declared here instead: openapi.json documents the same operation.
_OPENAPI = {
    "parameters": [
        {
            "in": "header",
            "name": "idempotency-key",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Idempotency-Key"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PaymentRequestIn"}}},
    },
}
schema.register_request_model(PaymentRequestIn)


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
    openapi_extra=_OPENAPI,
)
async def create_payment_request(request: Request) -> JSONResponse:
    # In FastAPI's order: a body that is not JSON is refused first, then the caller is authenticated, then the body
    # is validated (from here on a refused request is audited too: ARCHITECTURE.md, I3).
    data = _json_body(await request.body(), request.headers.get("content-type"))
    agent = await current_agent(request)
    request.state.on_rejected = functools.partial(payments.record_rejection, agent)
    if not agent.organization_verified:
        raise OrganizationNotVerified(
            "This organization's admin email is not verified yet; no payment is approved until the admin opens the"
            f" link AgentPay sent to {display_text.masked_email(agent.admin_email)}."
        )
    body = _payment_request_in(data)
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
        idempotency_key=_idempotency_key(body.idempotency_key, request.headers.get("idempotency-key")),
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
        merchant = normalize_merchant(body.merchant)
        error = BudgetExceededError.for_decision(outcome.decision, amount_cents=body.amount, merchant=merchant)
        return JSONResponse({**view, **error.body(request_id_of(request))}, status_code=402)
    return JSONResponse(view, status_code=201 if view["status"] == "approved" else 202)


app = create_app(router, health_router, title="AgentPay payment requests")
handler = Mangum(app, lifespan="off")
