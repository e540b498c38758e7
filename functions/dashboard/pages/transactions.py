"""The dashboard's transaction pages: the filtered list, one transaction with its audit trail and its draft policy's
verdict, approve and decline."""

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from functions.dashboard.pages.common import (
    FormDep,
    SignedInDep,
    agent_names,
    cursor_of,
    notice_of,
    page_router,
    pager,
    render,
    see_other,
)
from shared.accounts import dashboard
from shared.approvals import decisions as approvals
from shared.errors import NotFound, ValidationFailed
from shared.http.app import request_id_of
from shared.platform import db
from shared.policy.outcomes import APPROVAL_REASONS, BUDGET_DECLINES, DecisionReason, Status
from shared.rendering import local_time

router = page_router()


def first_decision(row: dict[str, Any]) -> tuple[str, str | None]:
    """The status and reason the request was answered with, which the draft's verdict stands beside. People may have
    decided since (the row then says approved_by_admin): it went to them, for a reason the row no longer names."""
    reason = row["decision_reason"]
    if reason in BUDGET_DECLINES:
        return Status.DECLINED, reason
    if row["approval_expires_at"] is not None:
        return Status.PENDING, reason if reason in APPROVAL_REASONS else None
    return Status.APPROVED, DecisionReason.AUTO_APPROVED


def shadow_differs(row: dict[str, Any]) -> bool:
    """Whether the draft recorded beside this decision would have decided otherwise."""
    shadow = row.get("shadow")
    if not shadow:
        return False
    status, reason = first_decision(row)
    return shadow["status"] != status or (reason is not None and shadow["decision_reason"] != reason)


@router.get("")
def transactions_page(request: Request, who: SignedInDep) -> HTMLResponse:
    query = request.query_params
    keep = {k: query.get(k, "") for k in ("agent_id", "status", "created_from", "created_to")}
    errors: dict[str, str] = {}
    filters = dashboard.TransactionFilters()
    try:
        filters = dashboard.TransactionFilters(
            agent_id=dashboard.parse_uuid(keep["agent_id"], "agent_id"),
            status=dashboard.parse_status(keep["status"]),
            created_from=dashboard.parse_time_bound(
                keep["created_from"], "created_from", timezone=who.timezone, end_of_day=False
            ),
            created_to=dashboard.parse_time_bound(
                keep["created_to"], "created_to", timezone=who.timezone, end_of_day=True
            ),
        )
    except ValidationFailed as exc:
        errors = {e["field"]: e["message"] for e in exc.errors}
    cursor = cursor_of(request)
    with db.connection() as conn:
        names = agent_names(conn, who.organization_id)
        if filters.agent_id is not None and str(filters.agent_id) not in names:
            raise NotFound()
        page = dashboard.list_transactions(
            conn, organization_id=who.organization_id, filters=filters, cursor=cursor, limit=25
        )
    rows = [
        {
            **row,
            "agent_name": names.get(str(row["agent_id"]), "?"),
            "when": local_time(row["created_at"], who.timezone),
            "shadow_differs": shadow_differs(row),
        }
        for row in page.rows
    ]
    return render(
        "transactions.html",
        signed_in=who,
        active="transactions",
        rows=rows,
        agents=names,
        filters=keep,
        errors=errors,
        pager=pager(request, page, cursor, keep),
        notice=notice_of(request),
    )


@router.get("/transactions/{transaction_id}")
def transaction_page(transaction_id: str, request: Request, who: SignedInDep) -> HTMLResponse:
    from shared.payments import transactions

    tx_id = transactions.parse_id(transaction_id)
    with db.connection() as conn:
        row = dashboard.get_transaction(conn, organization_id=who.organization_id, transaction_id=tx_id)
        trail = dashboard.audit_trail(conn, organization_id=who.organization_id, transaction_id=tx_id)
        names = agent_names(conn, who.organization_id)
    tx = transactions.transaction_view(row)
    return render(
        "transaction.html",
        signed_in=who,
        active="transactions",
        tx=tx,
        shadow=row["shadow"],
        shadow_differs=shadow_differs(row),
        agent_name=names.get(tx["agent_id"], "?"),
        when=local_time(row["created_at"], who.timezone),
        expires=local_time(row["approval_expires_at"], who.timezone),
        completed=local_time(row["completed_at"], who.timezone),
        trail=[{**dashboard.audit_log_view(r), "when": local_time(r["created_at"], who.timezone)} for r in trail],
        notice=notice_of(request),
    )


@router.post("/transactions/{transaction_id}/{action}")
def decide_transaction(transaction_id: str, action: str, request: Request, who: SignedInDep, form: FormDep) -> Response:
    """Approve or decline a pending payment from the dashboard, by the same rules as the email links."""
    from shared.payments import transactions

    if action not in ("approve", "decline"):
        raise NotFound("No such action.")
    tx_id = transactions.parse_id(transaction_id)
    approvals.decide(
        transaction_id=tx_id,
        action="approve" if action == "approve" else "decline",
        actor="admin",
        via="dashboard",
        request_id=request_id_of(request),
        reason=form.get("reason") or None,
        organization_id=who.organization_id,
    )
    notice = "approved" if action == "approve" else "declined"
    back = form.get("back", "")
    if back != "list":
        return see_other(f"/dashboard/transactions/{tx_id}", notice=notice)
    return see_other("/dashboard", notice=notice)
