"""POST /v1/orgs and /v1/dashboard/*: organizations sign up and their admins manage agents."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared import agents, db, organizations, stripe_api
from shared.deps import AdminDep, SettingsDep
from shared.errors import SignupTokenRequired
from shared.health import router as health_router
from shared.web import create_app, request_id_of

router = APIRouter()


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    admin_email: EmailStr
    timezone: str = Field(default="UTC", min_length=1, max_length=64)


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_limit: int = Field(ge=0, le=agents.MAX_DAILY_LIMIT_CENTS)
    per_transaction_limit: int = Field(ge=0, le=agents.MAX_DAILY_LIMIT_CENTS)
    approval_threshold: int = Field(ge=0, le=agents.MAX_DAILY_LIMIT_CENTS)
    max_requests_per_minute: int = Field(default=agents.DEFAULT_MAX_REQUESTS_PER_MINUTE, ge=1, le=10_000)

    def to_limits(self) -> agents.Limits:
        return agents.Limits(
            daily_limit_cents=self.daily_limit,
            per_tx_limit_cents=self.per_transaction_limit,
            approval_threshold_cents=self.approval_threshold,
            max_requests_per_minute=self.max_requests_per_minute,
        ).validate()


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    limits: LimitsIn


@router.post("/v1/orgs", status_code=201, tags=["organizations"], summary="Sign up an organization")
def create_organization(
    body: SignupIn,
    settings: SettingsDep,
    agentpay_signup_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    if not settings.is_local and not _signup_token_ok(agentpay_signup_token, settings.signup_token):
        raise SignupTokenRequired()
    created = organizations.sign_up(
        stripe_api.get_client(),
        name=body.name,
        admin_email=str(body.admin_email),
        timezone=body.timezone,
        key_mode=settings.key_mode,
        attach_test_card=settings.is_local,
    )
    return {
        "organization": organizations.organization_view(created.organization),
        "admin_key": created.admin_key.plaintext,
    }


@router.post("/v1/dashboard/agents", status_code=201, tags=["dashboard"], summary="Create an agent")
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


@router.get("/v1/dashboard/agents", tags=["dashboard"], summary="List the organization's agents with today's spend")
def list_agents(admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        data = agents.list_agent_views(conn, organization_id=admin.organization_id, timezone=admin.timezone)
    return {"object": "list", "data": data}


@router.put("/v1/dashboard/agents/{agent_id}/limits", tags=["dashboard"], summary="Change an agent's limits")
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


@router.post("/v1/dashboard/agents/{agent_id}/unblock", tags=["dashboard"], summary="Lift the circuit breaker's block")
def unblock_agent(agent_id: str, request: Request, admin: AdminDep) -> dict[str, Any]:
    with db.connection() as conn:
        return agents.lift_block(
            conn,
            organization_id=admin.organization_id,
            agent_id=agents.parse_id(agent_id),
            timezone=admin.timezone,
            request_id=request_id_of(request),
        )


def _signup_token_ok(sent: str | None, expected: str | None) -> bool:
    import hmac

    return bool(sent and expected and hmac.compare_digest(sent.encode(), expected.encode()))


app = create_app(router, health_router, title="AgentPay dashboard")
handler = Mangum(app, lifespan="off")
