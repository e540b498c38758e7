"""The HTTP contract as OpenAPI: response models, documented errors and headers, and the exported openapi.json."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="ISO 8601 with offset")]
Status = Literal["pending", "approved", "declined", "completed", "timed_out"]
Reason = Literal[
    "auto_approved",
    "approval_required",
    "approved_by_admin",
    "per_transaction_limit_exceeded",
    "daily_limit_exceeded",
    "declined_by_admin",
    "charge_failed",
    "approval_timed_out",
]


# Objects ------------------------------------------------------------------------------------------------------
class Documented(BaseModel):
    """Base of the models below, which only describe answers. Each is built on first use (a route answering with it,
    or the OpenAPI document): a function builds the few its routes name, not all of them (about 1 ms each)."""

    model_config = ConfigDict(defer_build=True)


class ValidationErrorItem(Documented):
    field: str
    message: str


class ErrorObject(Documented):
    type: Literal[
        "authentication",
        "budget",
        "permission",
        "not_found",
        "conflict",
        "gone",
        "invalid_request",
        "rate_limit",
        "unavailable",
        "api_error",
    ]
    code: str = Field(examples=["daily_limit_exceeded"])
    message: str
    request_id: str = Field(examples=["req_8f2c0e1b9a7d4c6e8f2c0e1b9a7d4c6e"])
    errors: list[ValidationErrorItem] | None = Field(default=None, description="validation_error only")
    limit: int | None = Field(default=None, description="budget errors: the limit in cents")
    spent: int | None = Field(default=None, description="daily_limit_exceeded: cents already held or spent today")
    requested: int | None = Field(default=None, description="budget errors: the requested amount in cents")


class ErrorBody(Documented):
    """Every error has this one shape."""

    error: ErrorObject


class Transaction(Documented):
    id: Uuid
    object: Literal["transaction"]
    organization_id: Uuid
    agent_id: Uuid
    amount: int = Field(description="cents", ge=1, le=100_000_000)
    currency: Literal["usd"]
    merchant: str
    purpose: str
    context: dict[str, Any]
    status: Status
    decision_reason: Reason
    idempotency_key: str
    stripe_charge_id: str | None
    approval_expires_at: DateTime | None
    created_at: DateTime
    completed_at: DateTime | None


class DeclinedTransaction(Transaction):
    """A 402: the declined transaction with the budget error added."""

    error: ErrorObject


class TransactionList(Documented):
    object: Literal["list"]
    data: list[Transaction]
    has_more: bool
    next_cursor: str | None


class AuditEntry(Documented):
    id: Uuid
    object: Literal["audit_log"]
    organization_id: Uuid
    agent_id: str | None
    transaction_id: str | None
    actor: str
    action: str
    details: dict[str, Any]
    created_at: DateTime


class TransactionWithAudit(Transaction):
    audit_trail: list[AuditEntry]


class AuditLogList(Documented):
    object: Literal["list"]
    data: list[AuditEntry]
    has_more: bool
    next_cursor: str | None


class AgentLimits(Documented):
    daily_limit: int
    per_transaction_limit: int
    approval_threshold: int
    max_requests_per_minute: int


class Agent(Documented):
    id: Uuid
    object: Literal["agent"]
    name: str
    is_active: bool
    blocked_at: DateTime | None
    blocked_reason: str | None
    key_prefix: str
    limits: AgentLimits
    spend_today: int = Field(description="cents held or spent today (approved, completed and pending)")
    remaining_today: int
    created_at: DateTime


class AgentList(Documented):
    object: Literal["list"]
    data: list[Agent]


class AgentWithKey(Documented):
    agent: Agent
    api_key: str = Field(pattern=r"^apk_(test|live)_[0-9a-f]{64}$", description="shown once, never again")


class Organization(Documented):
    id: Uuid
    object: Literal["organization"]
    name: str
    admin_email: str
    timezone: str
    admin_key_prefix: str
    has_payment_method: bool
    email_verified_at: DateTime | None = Field(
        description="null until the admin email is verified (outside local mode); until then no payment is approved"
    )
    created_at: DateTime


class SignupResult(Documented):
    organization: Organization
    admin_key: str = Field(pattern=r"^apa_(test|live)_[0-9a-f]{64}$", description="shown once, never again")


class Health(Documented):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class JobResult(Documented):
    model_config = ConfigDict(extra="allow")


# Documented answers -------------------------------------------------------------------------------------------
ERROR_DESCRIPTIONS = {
    400: "invalid_token: the approval link is malformed or made for the other action",
    401: "authentication: missing_api_key, invalid_api_key, invalid_signature, timestamp_out_of_range",
    402: "budget: per_transaction_limit_exceeded, daily_limit_exceeded",
    403: ("permission: agent_disabled, agent_blocked, organization_not_verified (signup_token_required for sign-up)"),
    404: "not_found (also for objects of another agent or organization)",
    409: "conflict: idempotency_key_reused, request_in_progress, already_decided",
    410: "gone: link_expired",
    413: "invalid_request: payload_too_large (over 64 KiB)",
    422: "invalid_request: validation_error (with errors: [{field, message}]), unsupported_currency",
    429: (
        "rate_limit: rate_limited (the circuit breaker blocked the agent: no Retry-After, an admin must unblock it;"
        " or too many failed authentications or sign-ups from this address or for this key: Retry-After says when)"
    ),
    431: "invalid_request: headers_too_large (the request's headers are over 16 KiB in all)",
    503: "unavailable: budget_unavailable and other dependency outages; nothing was approved",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of the error statuses a route can answer, in the API's one error shape."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        answers[status] = entry
    return answers


def ok(model: type[BaseModel], description: str = "OK", status: int = 200) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": description}}


AGENT_ERRORS = (401, 403, 413, 422, 503)
ADMIN_ERRORS = (401, 404, 413, 422, 503)


# The document -------------------------------------------------------------------------------------------------
_AGENT_SIGNED_PATHS = ("/v1/payment-request", "/v1/transactions/{transaction_id}")
_SIGNATURE_PARAMETERS = [
    {
        "name": "AgentPay-Timestamp",
        "in": "header",
        "required": True,
        "description": "unix seconds; rejected if more than 300 s from the server's clock",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "AgentPay-Signature",
        "in": "header",
        "required": True,
        "description": (
            'v1=<hex HMAC-SHA256, key = hex sha256(api_key), message = "{timestamp}.{METHOD}.{path}.{raw_body}">'
        ),
        "schema": {"type": "string", "pattern": "^v1=[0-9a-f]{64}$"},
    },
]
_REQUEST_ID = {"X-Request-Id": {"description": "the request's id, also in error bodies", "schema": {"type": "string"}}}
# Operations whose 200 is, on request (`?format=csv`), a CSV download instead of JSON.
_CSV_EXPORTS = {("/v1/dashboard/audit-logs", "get")}
_CSV = {"schema": {"type": "string", "description": "CSV with a header row"}}
# Pages for people (the approval links): every answer is HTML, or JSON when the request accepts application/json.
_HTML_PAGES = {"/v1/approve/{token}", "/v1/decline/{token}", "/v1/orgs/verify-email/{token}"}
_HTML = {"schema": {"type": "string"}}


_REQUEST_MODELS: list[type[BaseModel]] = []


def register_request_model(model: type[BaseModel]) -> None:
    """A body model a route reads itself (so FastAPI does not see it): its schema still goes in the components."""
    if model not in _REQUEST_MODELS:
        _REQUEST_MODELS.append(model)


def build(app: Any) -> dict[str, Any]:
    """The app's OpenAPI document with what FastAPI cannot infer: auth, signature headers, our error shape."""
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(
        title="AgentPay API",
        version="1.0.0",
        summary="Budgets and human approval for AI agents' payments",
        description='Money is integer cents. Every error has one shape: {"error": {type, code, message, request_id}}.',
        routes=app.routes,
    )
    components = spec.setdefault("components", {})
    components["securitySchemes"] = {
        "agentKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "apk_test_... / apk_live_... (signed requests)",
        },
        "adminKey": {"type": "http", "scheme": "bearer", "description": "apa_test_... / apa_live_..."},
        "qstashSignature": {"type": "apiKey", "in": "header", "name": "Upstash-Signature"},
    }
    schemas = components.setdefault("schemas", {})
    for model in _REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            if (path, method) in _CSV_EXPORTS:
                responses["200"].setdefault("content", {})["text/csv"] = _CSV
            if path in _HTML_PAGES:
                for answer in responses.values():
                    answer.setdefault("content", {})["text/html"] = _HTML
            for answer in responses.values():
                content = answer.get("content", {}).get("application/json", {})
                if content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                    answer["description"] = ERROR_DESCRIPTIONS[422]
                    content["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
                answer.setdefault("headers", {}).update(_REQUEST_ID)
            if path in _AGENT_SIGNED_PATHS:
                operation["security"] = [{"agentKey": []}]
                operation.setdefault("parameters", []).extend(_SIGNATURE_PARAMETERS)
            elif path.startswith("/v1/dashboard/"):
                operation["security"] = [{"adminKey": []}]
            elif path.startswith("/v1/jobs/"):
                operation["security"] = [{"qstashSignature": []}]
            else:
                operation["security"] = []
            # What any route can answer before it runs (shared.http.app), and what a key's failures can (throttle).
            keyed = any(name in ("agentKey", "adminKey") for scheme in operation["security"] for name in scheme)
            for status in (431, 429) if keyed else (431,):
                responses.setdefault(str(status), _error_answer(status))
    return spec


def _error_answer(status: int) -> dict[str, Any]:
    """An error answer as FastAPI renders the entries of `errors()`, for answers the document adds itself."""
    headers = {**(_RETRY_AFTER if status in (429, 503) else {}), **_REQUEST_ID}
    return {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        "description": ERROR_DESCRIPTIONS[status],
        "headers": headers,
    }


def render(app: Any) -> str:
    return json.dumps(build(app), indent=2, sort_keys=True) + "\n"
