"""POST /v1/jobs/email and /v1/jobs/webhook: emails to admins and decision webhooks to agents (QStash-signed)."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from typing import Any, Literal

from fastapi import APIRouter
from mangum import Mangum
from pydantic import ConfigDict

from shared.http import schema
from shared.http.app import RequestModel, create_app, parse_body
from shared.http.deps import SettingsDep, SignedJobBody
from shared.http.health import router as health_router
from shared.jobs import outbox as jobs
from shared.notify import messages as notifications
from shared.notify import webhooks
from shared.notify.destinations import CallbackPolicy

router = APIRouter(tags=["jobs"])


class EmailJobIn(RequestModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["approval", "block_alert", "email_verification"]
    transaction_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    blocked_at: str | None = None
    organization_id: uuid.UUID | None = None
    send: str | None = None  # the verification email's idempotency key: one per sign-up or resend


class QStashFailureIn(RequestModel):
    """QStash's failure callback: what it tried, and the last answer it got."""

    model_config = ConfigDict(extra="allow")

    url: str = ""
    status: int | None = None
    sourceBody: str | None = None  # noqa: N815 - QStash's field name


class WebhookJobIn(RequestModel):
    model_config = ConfigDict(extra="ignore")

    event_id: str


@router.post(
    "/v1/jobs/email",
    summary="Send an approval request, a circuit-breaker alert or an email verification link (QStash-signed)",
    response_model=None,
    responses={**schema.ok(schema.JobResult), **schema.errors(401, 409, 503)},
)
def run_email_job(body: SignedJobBody, settings: SettingsDep) -> dict[str, Any]:
    job = parse_body(EmailJobIn, body)
    if job.kind == "approval" and job.transaction_id is not None:
        sent = notifications.send_approval_request(settings, job.transaction_id)
    elif job.kind == "block_alert" and job.agent_id is not None and job.blocked_at is not None:
        sent = notifications.send_block_alert(settings, job.agent_id, job.blocked_at)
    elif job.kind == "email_verification" and job.organization_id is not None and job.send:
        sent = notifications.send_email_verification(settings, job.organization_id, send=job.send)
    else:
        sent = None
    return {"sent": sent}


@router.post(
    "/v1/jobs/webhook",
    summary="Deliver a decision webhook to the agent's callback_url (QStash-signed)",
    response_model=None,
    responses={**schema.ok(schema.JobResult), **schema.errors(401, 409, 503)},
)
def run_webhook_job(body: SignedJobBody, settings: SettingsDep) -> dict[str, Any]:
    job = parse_body(WebhookJobIn, body)
    try:
        status = webhooks.deliver(job.event_id, policy=CallbackPolicy.for_settings(settings))
    except webhooks.WebhookRefused as refused:
        jobs.record_dead_letter("webhook", {"event_id": job.event_id}, refused.message)
        return {"refused": refused.message}  # acknowledged: retrying would not change the answer
    return {"receiver_status": status}


@router.post(
    "/v1/jobs/failed",
    summary="QStash's failure callback: keep the job as a dead letter (QStash-signed)",
    response_model=None,
    responses={**schema.ok(schema.JobResult), **schema.errors(401, 409, 503)},
)
def record_failed_job(body: SignedJobBody) -> dict[str, Any]:
    callback = parse_body(QStashFailureIn, body).model_dump()
    source_url = str(callback.get("url", ""))
    job_type = next((name for name, path in jobs.JOB_PATHS.items() if source_url.endswith(path)), "unknown")
    payload: dict[str, Any] = {"callback": callback}
    source = callback.get("sourceBody")
    if isinstance(source, str):
        with contextlib.suppress(ValueError):
            payload.update(json.loads(base64.b64decode(source)))
    jobs.record_dead_letter(job_type, payload, f"QStash gave up: HTTP {callback.get('status')}")
    return {"recorded": True}


app = create_app(router, health_router, title="AgentPay email and webhook worker")
handler = Mangum(app, lifespan="off")
