"""The dashboard's audit log: the filtered, paged log and its CSV download."""

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, StreamingResponse

from functions.dashboard.pages.common import SignedInDep, agent_names, cursor_of, page_router, pager, render
from shared.accounts import dashboard
from shared.platform import db
from shared.rendering import local_time

router = page_router()


def _audit_filters(request: Request) -> tuple[dashboard.AuditFilters, dict[str, str]]:
    keep = {k: request.query_params.get(k, "") for k in ("agent_id", "action")}
    filters = dashboard.AuditFilters(
        agent_id=dashboard.parse_uuid(keep["agent_id"], "agent_id"), action=keep["action"][:100] or None
    )
    return filters, keep


@router.get("/audit")
def audit_page(request: Request, who: SignedInDep) -> HTMLResponse:
    filters, keep = _audit_filters(request)
    cursor = cursor_of(request)
    with db.connection() as conn:
        names = agent_names(conn, who.organization_id)
        actions = dashboard.audit_actions(conn, organization_id=who.organization_id)
        page = dashboard.list_audit_logs(
            conn, organization_id=who.organization_id, filters=filters, cursor=cursor, limit=50
        )
    rows = [
        {
            **dashboard.audit_log_view(r),
            "when": local_time(r["created_at"], who.timezone),
            "agent_name": names.get(str(r["agent_id"]), "") if r["agent_id"] else "",
        }
        for r in page.rows
    ]
    return render(
        "audit.html",
        signed_in=who,
        active="audit",
        rows=rows,
        agents=names,
        actions=actions,
        filters=keep,
        pager=pager(request, page, cursor, keep),
        csv_url="/dashboard/audit-log.csv"
        + ("?" + urlencode({k: v for k, v in keep.items() if v}) if any(keep.values()) else ""),
    )


@router.get("/audit-log.csv")
def audit_csv(request: Request, who: SignedInDep) -> StreamingResponse:
    filters, _ = _audit_filters(request)
    return StreamingResponse(
        dashboard.audit_log_csv(organization_id=who.organization_id, filters=filters),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )
