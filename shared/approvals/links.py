"""The routes behind the approval email's links: GET shows what is decided, POST decides (HTML, or JSON on request)."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from shared.approvals import decisions as approvals
from shared.approvals import pages as approval_pages
from shared.approvals import tokens
from shared.approvals.decisions import Action
from shared.config import get_settings
from shared.errors import AgentPayError, AlreadyDecided, LinkExpired, ValidationFailed
from shared.http import schema
from shared.http.app import error_response, request_id_of
from shared.payments.transactions import transaction_view
from shared.platform import db
from shared.rendering import format_money

_PAST = {"approve": "approved", "decline": "declined"}


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _error_page(error: AgentPayError) -> HTMLResponse:
    if isinstance(error, LinkExpired):
        title, message = "This link has expired", "The approval window has passed; the payment was not made."
    elif isinstance(error, AlreadyDecided):
        title, message = "Already decided", error.message
    else:
        title, message = "This link is not valid", "It may have been copied incompletely. Nothing was changed."
    return approval_pages.page_response(
        approval_pages.render_result_page(title=title, message=message, tone="error"), error.http_status
    )


def _details(row: dict[str, Any]) -> dict[str, str]:
    return {
        "Amount": format_money(int(row["amount_cents"]), row["currency"]),
        "Merchant": row["merchant"],
        "Status": row["status"].replace("_", " "),
    }


def make_router(action: Action) -> APIRouter:
    """The GET and POST routes of one action's link: /v1/approve/{token} or /v1/decline/{token}."""
    router = APIRouter(tags=["approval links"])
    path = f"/v1/{action}/{{token}}"

    answers: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "an HTML page, or the transaction with Accept: application/json",
            "content": {"text/html": {}, "application/json": {"schema": {"$ref": "#/components/schemas/Transaction"}}},
        },
        **schema.errors(400, 401, 404, 409, 410, 422),
    }

    @router.get(
        path, summary=f"Show what the {action} link decides (changes nothing)", response_model=None, responses=answers
    )
    def show(token: str, request: Request) -> Response:
        settings = get_settings()
        try:
            claims = tokens.read_token(token, action=action, secret=settings.require("approval_jwt_secret"))
            with db.connection() as conn:
                row = approvals.load_for_decision(conn, claims.transaction_id)
        except AgentPayError as error:
            return error_response(error, request) if wants_json(request) else _error_page(error)
        if wants_json(request):
            return JSONResponse(transaction_view(row))
        if row["status"] != "pending":
            return approval_pages.page_response(
                approval_pages.render_result_page(
                    title="Already decided",
                    message=f"This payment is {row['status'].replace('_', ' ')}; there is nothing left to decide.",
                    tone="neutral",
                    details=_details(row),
                )
            )
        return approval_pages.page_response(
            approval_pages.render_confirm_page(
                action=action,
                agent_name=row["agent_name"],
                amount_cents=int(row["amount_cents"]),
                currency=row["currency"],
                merchant=row["merchant"],
                purpose=row["purpose"],
                context=row["context"] or {},
                expires_at=row["approval_expires_at"],
                timezone=row["timezone"],
                post_url=str(request.url.path),
            )
        )

    @router.post(path, summary=f"{action.capitalize()} the pending transaction", response_model=None, responses=answers)
    async def decide(token: str, request: Request) -> Response:
        try:
            reason = await _reason(request) if action == "decline" else None
            result = await run_in_threadpool(_decide, token, action, reason, request_id_of(request))
        except AgentPayError as error:
            return error_response(error, request) if wants_json(request) else _error_page(error)
        row = result.transaction
        if wants_json(request):
            return JSONResponse(transaction_view(row))
        if result.changed:
            title = f"Payment {_PAST[action]}"
            message = (
                "The payment is approved and is being charged now."
                if action == "approve"
                else "The payment was declined; the agent will be told."
            )
        else:
            title, message = f"Already {_PAST[action]}", "This decision was already made; nothing changed."
        tone: Literal["success", "neutral"] = "success" if action == "approve" else "neutral"
        return approval_pages.page_response(
            approval_pages.render_result_page(title=title, message=message, tone=tone, details=_details(row))
        )

    return router


def _decide(token: str, action: Action, reason: str | None, request_id: str) -> approvals.DecisionResult:
    settings = get_settings()
    claims = tokens.read_token(token, action=action, secret=settings.require("approval_jwt_secret"))
    return approvals.decide(
        transaction_id=claims.transaction_id,
        action=action,
        actor="admin",
        via="email_link",
        request_id=request_id,
        reason=reason,
    )


async def _reason(request: Request) -> str | None:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise ValidationFailed([{"field": "body", "message": "is not valid JSON"}]) from exc
        reason = body.get("reason") if isinstance(body, dict) else None
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("reason")
        reason = value if isinstance(value, str) else None
    else:
        reason = None
    if reason is not None and len(reason) > 1000:
        raise ValidationFailed([{"field": "reason", "message": "must be at most 1000 characters"}])
    return reason.strip() or None if reason else None
