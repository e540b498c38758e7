"""POST /v1/orgs and /v1/dashboard/*: organizations sign up and their admins manage agents."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from mangum import Mangum
from pydantic import AwareDatetime, ConfigDict, EmailStr, Field, StrictInt

from functions.dashboard import pages
from shared.accounts import agents, dashboard, organizations
from shared.approvals import decisions as approvals
from shared.approvals import pages as approval_pages
from shared.errors import AgentPayError, LinkExpired, SignupTokenRequired
from shared.http import auth, schema, throttle
from shared.http.app import RequestModel, create_app, request_id_of
from shared.http.deps import AdminDep, SettingsDep, client_address
from shared.http.health import router as health_router
from shared.payments import transactions
from shared.platform import db
from shared.policy import admin as policy_admin
from shared.policy import simulate as simulation
from shared.policy.model import (
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    MAX_DAILY_LIMIT_CENTS,
    MAX_REQUESTS_PER_MINUTE,
    Limits,
    ceiling_from_wire,
    ceiling_wire,
    policy_from_wire,
    policy_wire,
)

router = APIRouter()


class SignupIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    admin_email: EmailStr
    timezone: str = Field(default="UTC", min_length=1, max_length=64)


class LimitsIn(RequestModel):
    # Strict, as payment amounts are: "1000", 1000.0 and true are refused, never read as a number of cents.
    model_config = ConfigDict(extra="forbid")

    daily_limit: StrictInt = Field(ge=0, le=MAX_DAILY_LIMIT_CENTS)
    per_transaction_limit: StrictInt = Field(ge=0, le=MAX_DAILY_LIMIT_CENTS)
    approval_threshold: StrictInt = Field(ge=0, le=MAX_DAILY_LIMIT_CENTS)
    max_requests_per_minute: StrictInt = Field(
        default=DEFAULT_MAX_REQUESTS_PER_MINUTE, ge=1, le=MAX_REQUESTS_PER_MINUTE
    )

    def to_limits(self) -> Limits:
        return Limits(
            daily_limit_cents=self.daily_limit,
            per_tx_limit_cents=self.per_transaction_limit,
            approval_threshold_cents=self.approval_threshold,
            max_requests_per_minute=self.max_requests_per_minute,
        )


class AgentIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    limits: LimitsIn


@router.post(
    "/v1/orgs",
    status_code=201,
    tags=["organizations"],
    summary="Sign up an organization",
    response_model=None,
    responses={
        **schema.ok(schema.SignupResult, "the organization and its admin key, shown once", 201),
        **schema.errors(403, 413, 422, 429, 503),
    },
)
def create_organization(
    body: SignupIn,
    request: Request,
    settings: SettingsDep,
    agentpay_signup_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    # Counted before the token is checked: guessing the token is throttled too.
    throttle.check_signup(address=client_address(request), settings=settings)
    if not settings.is_local and not _signup_token_ok(agentpay_signup_token, settings.signup_token):
        raise SignupTokenRequired()
    # Here, not at the top: signing up is rare, and Stripe's SDK would cost every dashboard cold start about 35 ms.
    from shared.vendors import stripe as stripe_api

    created = organizations.sign_up(
        stripe_api.get_client(),
        name=body.name,
        admin_email=str(body.admin_email),
        timezone=body.timezone,
        key_mode=settings.key_mode,
        attach_test_card=settings.is_local,
        email_verified=settings.is_local,
    )
    return {
        "organization": organizations.organization_view(created.organization),
        "admin_key": created.admin_key.plaintext,
    }


_VERIFY_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "an HTML page", "content": {"text/html": {}}},
    **schema.errors(400, 410),
}


@router.get(
    "/v1/orgs/verify-email/{token}",
    tags=["organizations"],
    summary="The email verification link: a page with one button (changes nothing; mail scanners prefetch links)",
    response_model=None,
    responses=_VERIFY_ANSWERS,
)
def show_email_verification(token: str, request: Request, settings: SettingsDep) -> HTMLResponse:
    try:
        verification = organizations.read_verification_token(token, secret=settings.require("approval_jwt_secret"))
        with db.connection() as conn:
            org = organizations.organization_to_verify(conn, verification)
    except AgentPayError as error:
        return _verification_failed(error)
    if org["email_verified_at"] is not None:
        return _verified_page(org, "Already verified")
    return approval_pages.page_response(
        approval_pages.render_verify_email_page(
            organization_name=org["name"], admin_email=org["admin_email"], post_url=str(request.url.path)
        )
    )


@router.post(
    "/v1/orgs/verify-email/{token}",
    tags=["organizations"],
    summary="Verify the organization's admin email: from now on its agents may spend",
    response_model=None,
    responses=_VERIFY_ANSWERS,
)
def verify_email(token: str, settings: SettingsDep) -> HTMLResponse:
    try:
        verification = organizations.read_verification_token(token, secret=settings.require("approval_jwt_secret"))
        with db.connection() as conn:
            org = organizations.verify_email(conn, verification)
    except AgentPayError as error:
        return _verification_failed(error)
    # This container's cached agents learn it at once; other containers within auth.AUTH_CACHE_SECONDS.
    auth.agent_cache.clear()
    return _verified_page(org, "Email verified")


def _verified_page(org: dict[str, Any], title: str) -> HTMLResponse:
    message = f"{org['admin_email']} is verified. The organization's agents can now spend within their limits."
    return approval_pages.page_response(approval_pages.render_result_page(title=title, message=message, tone="success"))


def _verification_failed(error: AgentPayError) -> HTMLResponse:
    title = "This link has expired" if isinstance(error, LinkExpired) else "This link is not valid"
    page = approval_pages.render_result_page(title=title, message=error.message, tone="error")
    return approval_pages.page_response(page, error.http_status)


@router.post(
    "/v1/dashboard/agents",
    status_code=201,
    tags=["dashboard"],
    summary="Create an agent",
    response_model=None,
    responses={
        **schema.ok(schema.AgentWithKey, "the agent and its key, shown once", 201),
        **schema.errors(401, 413, 422, 503),
    },
)
def create_agent(body: AgentIn, admin: AdminDep, settings: SettingsDep) -> dict[str, Any]:
    with db.connection() as conn:
        created = agents.create_agent(
            conn,
            organization_id=admin.organization_id,
            name=body.name,
            limits=body.limits.to_limits(),
            key_mode=settings.key_mode,
        )
    return {"agent": agents.agent_view(created.agent), "api_key": created.api_key.plaintext}


@router.get(
    "/v1/dashboard/agents",
    tags=["dashboard"],
    summary="List the organization's agents with today's spend",
    response_model=None,
    responses={
        **schema.ok(schema.AgentList),
        **schema.errors(401, 503),
    },
)
def list_agents(admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        data = agents.list_agent_views(conn, organization_id=admin.organization_id, timezone=admin.timezone)
    return {"object": "list", "data": data}


@router.put(
    "/v1/dashboard/agents/{agent_id}/limits",
    tags=["dashboard"],
    summary="Change an agent's limits",
    response_model=None,
    responses={
        **schema.ok(schema.Agent, "the agent; the limits apply from the next request"),
        **schema.errors(401, 404, 413, 422, 503),
    },
)
def update_limits(agent_id: str, body: LimitsIn, request: Request, admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        return agents.change_limits(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            limits=body.to_limits(),
            timezone=admin.timezone,
            request_id=request_id_of(request),
        )


_POLICY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Policy"}}},
    }
}
PolicyBody = Annotated[dict[str, Any], Body(description="the policy object (API.md, Policies)")]


@router.get(
    "/v1/dashboard/agents/{agent_id}/policy",
    tags=["policies"],
    summary="An agent's policy",
    response_model=None,
    responses={**schema.ok(schema.Policy, "the policy, as PUT takes it"), **schema.errors(401, 404, 503)},
)
def get_agent_policy(agent_id: str, admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        policy = policy_admin.get_policy(
            conn, organization_id=admin.organization_id, agent_id=agents.parse_id(agent_id)
        )
    return policy_wire(policy)


@router.put(
    "/v1/dashboard/agents/{agent_id}/policy",
    tags=["policies"],
    summary="Replace an agent's whole policy",
    response_model=None,
    openapi_extra=_POLICY_BODY,
    responses={
        **schema.ok(schema.Agent, "the agent with its policy; it applies from the next request"),
        **schema.errors(401, 404, 413, 422, 503),
    },
)
def put_agent_policy(agent_id: str, body: PolicyBody, request: Request, admin: AdminDep) -> dict[str, Any]:
    policy = policy_from_wire(body)
    agent = agents.parse_id(agent_id)
    with db.connection() as conn:
        policy_admin.replace_policy(
            conn,
            organization_id=admin.organization_id,
            agent_id=agent,
            policy=policy,
            actor="admin",
            request_id=request_id_of(request),
        )
        row = agents.get_agent(conn, organization_id=admin.organization_id, agent_id=agent)
    auth.forget_agent(row["api_key_hash"])
    return agents.agent_view(row, spend_today_cents=agents.spend_today(admin.organization_id, agent, admin.timezone))


@router.put(
    "/v1/dashboard/agents/{agent_id}/policy/shadow",
    tags=["policies"],
    summary="Set a draft policy whose verdicts are recorded beside the real ones",
    response_model=None,
    openapi_extra=_POLICY_BODY,
    responses={**schema.ok(schema.Policy, "the draft, as stored"), **schema.errors(401, 404, 413, 422, 503)},
)
def put_shadow_policy(agent_id: str, body: PolicyBody, request: Request, admin: AdminDep) -> dict[str, Any]:
    shadow = policy_from_wire(body)
    with db.connection() as conn:
        policy_admin.set_shadow(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            shadow=shadow,
            actor="admin",
            request_id=request_id_of(request),
        )
    return policy_wire(shadow)


@router.delete(
    "/v1/dashboard/agents/{agent_id}/policy/shadow",
    tags=["policies"],
    summary="Remove the draft policy",
    status_code=204,
    response_model=None,
    responses={204: {"description": "removed (or there was none)"}, **schema.errors(401, 404, 503)},
)
def delete_shadow_policy(agent_id: str, request: Request, admin: AdminDep) -> Response:
    with db.connection() as conn:
        policy_admin.set_shadow(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            shadow=None,
            actor="admin",
            request_id=request_id_of(request),
        )
    return Response(status_code=204)


class SimulationIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] = Field(description="the draft policy (API.md, Policies)")
    from_: AwareDatetime = Field(alias="from", description="replay the requests created from this time")
    to: AwareDatetime = Field(description="to this time (excluded), at most 366 days after from")


@router.post(
    "/v1/dashboard/agents/{agent_id}/policy/simulate",
    tags=["policies"],
    summary="Replay the agent's past requests against a draft policy",
    response_model=None,
    responses={**schema.ok(schema.Simulation), **schema.errors(401, 404, 413, 422, 503)},
)
def simulate_policy(agent_id: str, body: SimulationIn, admin: AdminDep) -> dict[str, Any]:
    draft = policy_from_wire(body.policy)
    agent = agents.parse_id(agent_id)
    with db.connection() as conn:
        policy_admin.get_policy(conn, organization_id=admin.organization_id, agent_id=agent)  # NotFound if not ours
        return simulation.simulate(
            conn,
            organization_id=admin.organization_id,
            agent_id=agent,
            policy=draft,
            ceiling=policy_admin.get_ceiling(conn, organization_id=admin.organization_id),
            start=body.from_,
            end=body.to,
        )


@router.get(
    "/v1/dashboard/organization/policy",
    tags=["policies"],
    summary="The organization's ceiling over all its agents",
    response_model=None,
    responses={**schema.ok(schema.OrganizationPolicy), **schema.errors(401, 503)},
)
def get_organization_policy(admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        return ceiling_wire(policy_admin.get_ceiling(conn, organization_id=admin.organization_id))


@router.put(
    "/v1/dashboard/organization/policy",
    tags=["policies"],
    summary="Replace the organization's ceiling",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrganizationPolicy"}}},
        }
    },
    responses={
        **schema.ok(schema.OrganizationPolicy, "the ceiling; it applies from the next request of every agent"),
        **schema.errors(401, 413, 422, 503),
    },
)
def put_organization_policy(body: PolicyBody, request: Request, admin: AdminDep) -> dict[str, Any]:
    ceiling = ceiling_from_wire(body)
    with db.connection() as conn:
        policy_admin.replace_ceiling(
            conn,
            organization_id=admin.organization_id,
            ceiling=ceiling,
            actor="admin",
            request_id=request_id_of(request),
        )
    return ceiling_wire(ceiling)


@router.post(
    "/v1/dashboard/agents/{agent_id}/unblock",
    tags=["dashboard"],
    summary="Lift the circuit breaker's block",
    response_model=None,
    responses={
        **schema.ok(schema.Agent),
        **schema.errors(401, 404, 503),
    },
)
def unblock_agent(agent_id: str, request: Request, admin: AdminDep) -> dict[str, Any]:
    return _agent_action(agents.lift_block, agent_id, request, admin)


@router.post(
    "/v1/dashboard/agents/{agent_id}/disable",
    tags=["dashboard"],
    summary="Disable an agent",
    response_model=None,
    responses={
        **schema.ok(schema.Agent),
        **schema.errors(401, 404, 503),
    },
)
def disable_agent(agent_id: str, request: Request, admin: AdminDep) -> dict[str, Any]:
    return _agent_action(agents.disable_agent, agent_id, request, admin)


@router.post(
    "/v1/dashboard/agents/{agent_id}/enable",
    tags=["dashboard"],
    summary="Enable a disabled agent",
    response_model=None,
    responses={
        **schema.ok(schema.Agent),
        **schema.errors(401, 404, 503),
    },
)
def enable_agent(agent_id: str, request: Request, admin: AdminDep) -> dict[str, Any]:
    return _agent_action(agents.enable_agent, agent_id, request, admin)


@router.post(
    "/v1/dashboard/agents/{agent_id}/rotate-key",
    tags=["dashboard"],
    summary="Replace an agent's key",
    response_model=None,
    responses={
        **schema.ok(schema.AgentWithKey, "the agent and its new key; the old key stops at once"),
        **schema.errors(401, 404, 503),
    },
)
def rotate_agent_key(agent_id: str, request: Request, admin: AdminDep, settings: SettingsDep) -> dict[str, Any]:
    with db.connection() as conn:
        rotated = agents.rotate_key(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            key_mode=settings.key_mode,
            request_id=request_id_of(request),
        )
    view = agents.agent_view(
        rotated.agent, spend_today_cents=agents.spend_today(admin.organization_id, rotated.agent["id"], admin.timezone)
    )
    return {"agent": view, "api_key": rotated.api_key.plaintext}


@router.get(
    "/v1/dashboard/transactions",
    tags=["dashboard"],
    summary="List the organization's transactions",
    response_model=None,
    responses={
        **schema.ok(schema.TransactionList, "newest first; keyset pagination by starting_after"),
        **schema.errors(401, 404, 422, 503),
    },
)
def list_transactions(
    admin: AdminDep,
    agent_id: str | None = None,
    status: str | None = None,
    created_from: str | None = None,
    created_to: str | None = None,
    limit: Annotated[str | None, Query(description="1 to 100, default 25")] = None,
    starting_after: Annotated[str | None, Query(description="id of the last row of the previous page")] = None,
) -> dict[str, Any]:
    filters = dashboard.TransactionFilters(
        agent_id=dashboard.parse_uuid(agent_id, "agent_id"),
        status=dashboard.parse_status(status),
        created_from=dashboard.parse_time_bound(
            created_from, "created_from", timezone=admin.timezone, end_of_day=False
        ),
        created_to=dashboard.parse_time_bound(created_to, "created_to", timezone=admin.timezone, end_of_day=True),
    )
    cursor = dashboard.Cursor(starting_after=dashboard.parse_uuid(starting_after, "starting_after"))
    page_size = dashboard.parse_limit(limit)
    with db.connection() as conn:
        page = dashboard.list_transactions(
            conn, organization_id=admin.organization_id, filters=filters, cursor=cursor, limit=page_size
        )
    return _list([transactions.dashboard_view(row) for row in page.rows], page)


@router.get(
    "/v1/dashboard/transactions/{transaction_id}",
    tags=["dashboard"],
    summary="One transaction and its audit",
    response_model=None,
    responses={
        **schema.ok(schema.TransactionWithAudit),
        **schema.errors(401, 404, 503),
    },
)
def get_transaction(transaction_id: str, admin: AdminDep) -> dict[str, Any]:
    tx_id = transactions.parse_id(transaction_id)
    with db.connection() as conn:
        row = dashboard.get_transaction(conn, organization_id=admin.organization_id, transaction_id=tx_id)
        trail = dashboard.audit_trail(conn, organization_id=admin.organization_id, transaction_id=tx_id)
    return {**transactions.dashboard_view(row), "audit_trail": [dashboard.audit_log_view(r) for r in trail]}


class DecisionIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


_DECISION_ANSWERS: dict[int | str, dict[str, Any]] = {
    **schema.ok(schema.Transaction, "the transaction after the decision; the same decision again changes nothing"),
    **schema.errors(401, 404, 409, 410, 413, 422, 503),
}


@router.post(
    "/v1/dashboard/transactions/{transaction_id}/approve",
    tags=["dashboard"],
    summary="Approve a pending transaction (same rules as the email link)",
    response_model=None,
    responses=_DECISION_ANSWERS,
)
def approve_transaction(transaction_id: str, request: Request, admin: AdminDep) -> dict[str, Any]:
    return _decide(transaction_id, "approve", request, admin, reason=None)


@router.post(
    "/v1/dashboard/transactions/{transaction_id}/decline",
    tags=["dashboard"],
    summary="Decline a pending transaction, with an optional reason (same rules as the email link)",
    response_model=None,
    responses=_DECISION_ANSWERS,
)
def decline_transaction(
    transaction_id: str, request: Request, admin: AdminDep, body: DecisionIn | None = None
) -> dict[str, Any]:
    return _decide(transaction_id, "decline", request, admin, reason=body.reason if body else None)


def _decide(
    transaction_id: str, action: Literal["approve", "decline"], request: Request, admin: Any, *, reason: str | None
) -> dict[str, Any]:
    result = approvals.decide(
        transaction_id=transactions.parse_id(transaction_id),
        action=action,
        actor="admin",
        via="dashboard",
        request_id=request_id_of(request),
        reason=reason,
        organization_id=admin.organization_id,
    )
    return transactions.dashboard_view(result.transaction)


@router.get(
    "/v1/dashboard/audit-logs",
    tags=["dashboard"],
    summary="The organization's audit log, newest first; ?format=csv streams all of it as CSV",
    response_model=None,
    responses={
        **schema.ok(schema.AuditLogList, "JSON, or with format=csv a streamed text/csv download"),
        **schema.errors(401, 404, 422, 503),
    },
)
def list_audit_logs(
    admin: AdminDep,
    agent_id: str | None = None,
    transaction_id: str | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[str | None, Query(description="1 to 100, default 25")] = None,
    starting_after: str | None = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> dict[str, Any] | StreamingResponse:
    filters = dashboard.AuditFilters(
        agent_id=dashboard.parse_uuid(agent_id, "agent_id"),
        transaction_id=dashboard.parse_uuid(transaction_id, "transaction_id"),
        action=action or None,
    )
    if format == "csv":
        return csv_download(dashboard.audit_log_csv(organization_id=admin.organization_id, filters=filters))
    cursor = dashboard.Cursor(starting_after=dashboard.parse_uuid(starting_after, "starting_after"))
    page_size = dashboard.parse_limit(limit)
    with db.connection() as conn:
        page = dashboard.list_audit_logs(
            conn, organization_id=admin.organization_id, filters=filters, cursor=cursor, limit=page_size
        )
    return _list([dashboard.audit_log_view(row) for row in page.rows], page)


def csv_download(chunks: Any) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"', "Cache-Control": "no-store"},
    )


def _list(data: list[dict[str, Any]], page: dashboard.Page) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": page.has_more,
        "next_cursor": page.next_cursor if page.has_more else None,
    }


def _agent_action(action: Any, agent_id: str, request: Request, admin: Any) -> dict[str, Any]:
    """Unblock, disable or enable one of the admin's agents; the agent object after it."""
    with db.connection() as conn:
        result: dict[str, Any] = action(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            timezone=admin.timezone,
            request_id=request_id_of(request),
        )
    return result


def _signup_token_ok(sent: str | None, expected: str | None) -> bool:
    import hmac

    return bool(sent and expected and hmac.compare_digest(sent.encode(), expected.encode()))


# The API's routes, then the web dashboard's page groups (devtools.local_app serves the same ROUTERS).
ROUTERS = (router, *pages.ROUTERS)

app = create_app(*ROUTERS, health_router, title="AgentPay dashboard")
handler = Mangum(app, lifespan="off")
