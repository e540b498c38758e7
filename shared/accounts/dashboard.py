"""What an organization's admin reads: transaction and audit-log pages (keyset) and the audit log's CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from shared.errors import NotFound, ValidationFailed
from shared.payments.transactions import TRANSACTION_COLUMNS
from shared.platform import db
from shared.platform.clock import iso

STATUSES = ("pending", "approved", "declined", "completed", "timed_out")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
CSV_CHUNK_ROWS = 500


@dataclass(frozen=True)
class Page:
    """One page, newest first. `has_more` says whether rows lie beyond it in the direction that was asked for."""

    rows: list[dict[str, Any]]
    has_more: bool

    @property
    def next_cursor(self) -> str | None:
        return str(self.rows[-1]["id"]) if self.rows else None

    @property
    def first_id(self) -> str | None:
        return str(self.rows[0]["id"]) if self.rows else None


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after (older than) or before (newer than) a row the caller saw."""

    starting_after: uuid.UUID | None = None
    ending_before: uuid.UUID | None = None


# Parsing what admins send -----------------------------------------------------------------------------------------
def parse_uuid(value: str | None, field: str) -> uuid.UUID | None:
    """An optional id from a query string; a malformed one is a 422 naming the field."""
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ValidationFailed([{"field": field, "message": "must be a UUID"}]) from exc


def parse_status(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in STATUSES:
        raise ValidationFailed([{"field": "status", "message": "must be one of " + ", ".join(STATUSES)}])
    return value


def parse_limit(value: str | int | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    try:
        limit = int(value)
    except ValueError as exc:
        raise ValidationFailed(
            [{"field": "limit", "message": f"must be an integer from 1 to {MAX_PAGE_SIZE}"}]
        ) from exc
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed([{"field": "limit", "message": f"must be an integer from 1 to {MAX_PAGE_SIZE}"}])
    return limit


def parse_time_bound(value: str | None, field: str, *, timezone: str, end_of_day: bool) -> datetime | None:
    """A date (the organization's calendar day) or an ISO 8601 time; a time without offset is in the org's zone.

    `end_of_day` makes a bare date mean the start of the next day, so `created_to=2026-03-12` includes that day.
    """
    if value is None or value == "":
        return None
    zone = zoneinfo.ZoneInfo(timezone)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day + timedelta(days=1 if end_of_day else 0), datetime.min.time(), zone)
            return start
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(
            [{"field": field, "message": "must be a date (2026-03-12) or an ISO 8601 time with offset"}]
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


@dataclass(frozen=True)
class TransactionFilters:
    agent_id: uuid.UUID | None = None
    status: str | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


@dataclass(frozen=True)
class AuditFilters:
    agent_id: uuid.UUID | None = None
    transaction_id: uuid.UUID | None = None
    action: str | None = None


# Keyset pages ------------------------------------------------------------------------------------------------------
# Rows are ordered newest first by (created_at DESC, id DESC), matching the (organization_id, created_at DESC,
# id DESC) indexes. A page after row R holds rows with (created_at, id) < (R.created_at, R.id); a page before R holds
# rows with (created_at, id) > R's, read oldest first and flipped. No OFFSET: rows inserted while an admin pages are
# newer than every cursor, so they never shift or repeat a later page.


def _keyset(
    conn: db.Connection,
    *,
    table: str,
    columns: str,
    organization_id: uuid.UUID,
    where: list[str],
    params: list[Any],
    cursor: Cursor,
    limit: int,
) -> Page:
    where = ["organization_id = %s", *where]
    params = [organization_id, *params]
    order = "created_at DESC, id DESC"
    anchor_id = cursor.starting_after or cursor.ending_before
    if anchor_id is not None:
        anchor = conn.execute(
            f"SELECT created_at FROM {table} WHERE id = %s AND organization_id = %s",
            (anchor_id, organization_id),
        ).fetchone()
        if anchor is None:
            field = "starting_after" if cursor.starting_after else "ending_before"
            raise NotFound(f"No such {field} cursor in this organization.")
        if cursor.starting_after is not None:
            where.append("(created_at, id) < (%s, %s)")
        else:
            where.append("(created_at, id) > (%s, %s)")
            order = "created_at ASC, id ASC"
        params += [anchor["created_at"], anchor_id]
    rows = conn.execute(
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s",
        (*params, limit + 1),
    ).fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if cursor.ending_before is not None:
        rows.reverse()
    return Page(rows=rows, has_more=has_more)


def _require_in_org(conn: db.Connection, table: str, row_id: uuid.UUID | None, organization_id: uuid.UUID) -> None:
    """Filtering by another organization's agent or transaction is a 404, as reading it would be."""
    if row_id is None:
        return
    found = conn.execute(
        f"SELECT 1 FROM {table} WHERE id = %s AND organization_id = %s", (row_id, organization_id)
    ).fetchone()
    if found is None:
        raise NotFound(f"No such {table[:-1]}.")


def list_transactions(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    filters: TransactionFilters,
    cursor: Cursor,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page:
    """One page of the organization's transactions, newest first."""
    _require_in_org(conn, "agents", filters.agent_id, organization_id)
    where: list[str] = []
    params: list[Any] = []
    if filters.agent_id is not None:
        where.append("agent_id = %s")
        params.append(filters.agent_id)
    if filters.status is not None:
        where.append("status = %s")
        params.append(filters.status)
    if filters.created_from is not None:
        where.append("created_at >= %s")
        params.append(filters.created_from)
    if filters.created_to is not None:
        where.append("created_at < %s")
        params.append(filters.created_to)
    return _keyset(
        conn,
        table="transactions",
        columns=TRANSACTION_COLUMNS,
        organization_id=organization_id,
        where=where,
        params=params,
        cursor=cursor,
        limit=limit,
    )


def get_transaction(conn: db.Connection, *, organization_id: uuid.UUID, transaction_id: uuid.UUID) -> dict[str, Any]:
    """The organization's transaction; another organization's is NotFound, exactly like a missing one."""
    row = conn.execute(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = %s AND organization_id = %s",
        (transaction_id, organization_id),
    ).fetchone()
    if row is None:
        raise NotFound("No such transaction.")
    return row


AUDIT_COLUMNS = "id, organization_id, agent_id, transaction_id, actor, action, details, created_at"


def audit_trail(conn: db.Connection, *, organization_id: uuid.UUID, transaction_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every audit entry of one transaction, oldest first (the story of what happened to it)."""
    return conn.execute(
        f"""
        SELECT {AUDIT_COLUMNS} FROM audit_logs
        WHERE transaction_id = %s AND organization_id = %s
        ORDER BY created_at, id
        """,
        (transaction_id, organization_id),
    ).fetchall()


def list_audit_logs(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    filters: AuditFilters,
    cursor: Cursor,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page:
    """One page of the organization's audit log, newest first."""
    _require_in_org(conn, "agents", filters.agent_id, organization_id)
    _require_in_org(conn, "transactions", filters.transaction_id, organization_id)
    where: list[str] = []
    params: list[Any] = []
    if filters.agent_id is not None:
        where.append("agent_id = %s")
        params.append(filters.agent_id)
    if filters.transaction_id is not None:
        where.append("transaction_id = %s")
        params.append(filters.transaction_id)
    if filters.action:
        where.append("action = %s")
        params.append(filters.action)
    return _keyset(
        conn,
        table="audit_logs",
        columns=AUDIT_COLUMNS,
        organization_id=organization_id,
        where=where,
        params=params,
        cursor=cursor,
        limit=limit,
    )


def audit_actions(conn: db.Connection, *, organization_id: uuid.UUID) -> list[str]:
    """The actions that occur in the organization's log, for the filter's choices."""
    rows = conn.execute(
        "SELECT DISTINCT action FROM audit_logs WHERE organization_id = %s ORDER BY action", (organization_id,)
    ).fetchall()
    return [r["action"] for r in rows]


def audit_log_view(row: dict[str, Any]) -> dict[str, Any]:
    """The audit log entry as the API shows it."""
    return {
        "id": str(row["id"]),
        "object": "audit_log",
        "organization_id": str(row["organization_id"]),
        "agent_id": str(row["agent_id"]) if row["agent_id"] else None,
        "transaction_id": str(row["transaction_id"]) if row["transaction_id"] else None,
        "actor": row["actor"],
        "action": row["action"],
        "details": row["details"] or {},
        "created_at": iso(row["created_at"]),
    }


# CSV export --------------------------------------------------------------------------------------------------------
CSV_FIELDS = ("id", "created_at", "action", "actor", "agent_id", "transaction_id", "details", "organization_id")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula: text starting with = + - @ (or tab, CR) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def audit_log_csv(*, organization_id: uuid.UUID, filters: AuditFilters) -> Iterator[str]:
    """The whole filtered log as CSV text, in chunks of keyset pages: memory stays one chunk, whatever the size.

    Each chunk borrows a pooled connection only while it reads, so a slow download never holds one (a Lambda
    container's pool has a single connection). Entries written during the export are newer than every cursor and
    simply not part of it.
    """
    with db.connection() as conn:
        # Checked before the first byte: a bad filter must be an error response, not a broken download.
        _require_in_org(conn, "agents", filters.agent_id, organization_id)
        _require_in_org(conn, "transactions", filters.transaction_id, organization_id)
    return _csv_chunks(organization_id, filters)


def _csv_chunks(organization_id: uuid.UUID, filters: AuditFilters) -> Iterator[str]:
    yield _csv_line(list(CSV_FIELDS))
    cursor = Cursor()
    while True:
        with db.connection() as conn:
            page = list_audit_logs(
                conn, organization_id=organization_id, filters=filters, cursor=cursor, limit=CSV_CHUNK_ROWS
            )
        out = io.StringIO()
        writer = csv.writer(out)
        for row in page.rows:
            view = audit_log_view(row)
            view["details"] = json.dumps(view["details"], sort_keys=True, separators=(",", ":"))
            writer.writerow([csv_safe(view[name]) for name in CSV_FIELDS])
        if page.rows:
            yield out.getvalue()
        if not page.has_more or page.next_cursor is None:
            return
        cursor = Cursor(starting_after=uuid.UUID(page.next_cursor))
