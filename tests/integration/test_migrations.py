"""The schema and its migration runner, against the suite's real embedded PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from devtools.migrate import (
    MIGRATIONS_DIR,
    BadMigrationFile,
    ChecksumMismatch,
    MigrationFailed,
    apply_migrations,
    pending_migrations,
    read_migrations,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_MIGRATIONS = [m.name for m in read_migrations()]


# Fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture
def database_url(services: Any) -> str:
    """A fresh, empty database of its own for each test, on the suite's PostgreSQL."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, query = services.database_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fully migrated database."""
    apply_migrations(database_url)
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def agent(conn: psycopg.Connection) -> dict[str, Any]:
    return _make_agent(conn)


def _make_agent(conn: psycopg.Connection, organization_id: uuid.UUID | None = None) -> dict[str, Any]:
    if organization_id is None:
        row = conn.execute(
            "INSERT INTO organizations (name, admin_email, admin_key_hash, admin_key_prefix)"
            " VALUES ('Acme', 'admin@acme.test', %s, 'apa_test_x') RETURNING id",
            (uuid.uuid4().hex,),
        ).fetchone()
        assert row is not None
        organization_id = row[0]
    row = conn.execute(
        "INSERT INTO agents (organization_id, name, api_key_hash, key_prefix)"
        " VALUES (%s, 'buyer', %s, 'apk_test_x') RETURNING id",
        (organization_id, uuid.uuid4().hex),
    ).fetchone()
    assert row is not None
    return {"organization_id": organization_id, "agent_id": row[0]}


def _insert_transaction(conn: psycopg.Connection, agent: dict[str, Any], **overrides: Any) -> uuid.UUID:
    values: dict[str, Any] = {
        "agent_id": agent["agent_id"],
        "organization_id": agent["organization_id"],
        "amount_cents": 1250,
        "merchant": "OpenAI",
        "purpose": "API credits",
        "status": "approved",
        "decision_reason": "auto_approved",
        "idempotency_key": uuid.uuid4().hex,
        "request_hash": "h",
        "budget_day": date(2025, 1, 2),
    } | overrides
    if isinstance(values.get("context"), dict | list | str):
        values["context"] = Jsonb(values["context"])
    query = sql.SQL("INSERT INTO transactions ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(sql.Placeholder() * len(values))
    )
    row = conn.execute(query, list(values.values())).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


# The runner -------------------------------------------------------------------------------------------------
def test_a_fresh_database_gets_every_migration_and_a_second_run_applies_nothing(database_url: str) -> None:
    assert ALL_MIGRATIONS[0] == "0001_initial"
    assert pending_migrations(database_url) == ALL_MIGRATIONS

    assert apply_migrations(database_url) == ALL_MIGRATIONS
    assert apply_migrations(database_url) == []
    assert pending_migrations(database_url) == []

    with psycopg.connect(database_url) as c:
        recorded = c.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()
    assert [name for (name,) in recorded] == ALL_MIGRATIONS


def test_a_sqlalchemy_style_url_is_accepted(database_url: str) -> None:
    assert apply_migrations(database_url.replace("postgresql://", "postgresql+psycopg://", 1)) == ALL_MIGRATIONS


def _race(database_url: str, directory: Path, processes: int) -> list[list[str]]:
    """Start `processes` interpreters that all call apply_migrations at the same instant; their results."""
    start_at = time.time() + 1.5  # past every interpreter's start-up, so the calls really overlap
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from devtools.migrate import apply_migrations\n"
        "url, directory, start_at = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])\n"
        "time.sleep(max(0.0, start_at - time.time()))\n"
        "print(json.dumps(apply_migrations(url, directory)))\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url, str(directory), str(start_at)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_concurrent_runs_on_a_fresh_database_all_succeed_and_apply_each_migration_once(
    database_url: str,
) -> None:
    results = _race(database_url, MIGRATIONS_DIR, processes=4)

    applied = [name for result in results for name in result]
    assert sorted(applied) == ALL_MIGRATIONS
    assert pending_migrations(database_url) == []


def test_concurrent_runs_wait_for_a_slow_migration_and_run_each_body_once(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_runs.sql").write_text("CREATE TABLE runs (migration text NOT NULL);\n")
    (tmp_path / "0002_slow.sql").write_text("SELECT pg_sleep(1);\nINSERT INTO runs VALUES ('0002');\n")
    (tmp_path / "0003_after.sql").write_text("INSERT INTO runs VALUES ('0003');\n")

    results = _race(database_url, tmp_path, processes=3)

    assert sorted(name for result in results for name in result) == ["0001_runs", "0002_slow", "0003_after"]
    with psycopg.connect(database_url) as c:
        assert c.execute("SELECT migration FROM runs ORDER BY migration").fetchall() == [("0002",), ("0003",)]


def test_a_failing_migration_leaves_nothing_behind(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);\n")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int);\nSELECT 1 / 0;\n")

    with pytest.raises(MigrationFailed) as failure:
        apply_migrations(database_url, tmp_path)

    assert failure.value.name == "0002_bad"
    assert isinstance(failure.value.__cause__, errors.DivisionByZero)
    assert pending_migrations(database_url, tmp_path) == ["0002_bad"]
    with psycopg.connect(database_url) as c:
        tables = c.execute("SELECT to_regclass('good') IS NOT NULL, to_regclass('half') IS NOT NULL").fetchone()
    assert tables == (True, False)


def test_an_applied_migration_that_was_edited_is_refused(database_url: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_table.sql"
    migration.write_text("CREATE TABLE t (id int);\n")
    apply_migrations(database_url, tmp_path)

    migration.write_text("CREATE TABLE t (id bigint);\n")

    with pytest.raises(ChecksumMismatch):
        apply_migrations(database_url, tmp_path)
    with pytest.raises(ChecksumMismatch):
        pending_migrations(database_url, tmp_path)


def test_crlf_line_endings_do_not_count_as_an_edit(database_url: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_table.sql"
    migration.write_bytes(b"CREATE TABLE t (id int);\n")
    apply_migrations(database_url, tmp_path)

    migration.write_bytes(b"CREATE TABLE t (id int);\r\n")

    assert apply_migrations(database_url, tmp_path) == []


@pytest.mark.parametrize("files", [["initial.sql"], ["0001_a.sql", "1_b.sql"]])
def test_misnamed_or_duplicate_files_are_refused(tmp_path: Path, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(BadMigrationFile):
        read_migrations(tmp_path)


# audit_logs is append-only ----------------------------------------------------------------------------------
def test_audit_logs_accept_inserts_and_refuse_update_delete_and_truncate(
    conn: psycopg.Connection, agent: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO audit_logs (organization_id, agent_id, actor, action, details)"
        " VALUES (%s, %s, %s, 'payment.requested', %s)",
        (agent["organization_id"], agent["agent_id"], f"agent:{agent['agent_id']}", Jsonb({"amount": 1250})),
    )

    for statement in (
        "UPDATE audit_logs SET action = 'nothing.happened'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
        "TRUNCATE organizations CASCADE",
    ):
        with pytest.raises(errors.InsufficientPrivilege, match="audit_logs is append-only"):
            conn.execute(statement)

    assert conn.execute("SELECT action FROM audit_logs").fetchall() == [("payment.requested",)]


# CHECK and UNIQUE constraints -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"amount_cents": -100},
        {"amount_cents": 0},
        {"amount_cents": 100_000_001},
        {"status": "refunded"},
        {"decision_reason": "felt_like_it"},
        {"currency": "eur"},
        {"merchant": ""},
        {"idempotency_key": ""},
        {"context": ["not", "an", "object"]},
        {"status": "completed", "stripe_charge_id": None},
        {"status": "pending", "decision_reason": "approval_required", "approval_expires_at": None},
        {"status": "approved", "decision_reason": "daily_limit_exceeded"},
    ],
    ids=lambda overrides: ",".join(f"{k}={v}" for k, v in overrides.items()),
)
def test_transactions_refuse_invalid_rows(
    conn: psycopg.Connection, agent: dict[str, Any], overrides: dict[str, Any]
) -> None:
    with pytest.raises(errors.CheckViolation):
        _insert_transaction(conn, agent, **overrides)


def test_transactions_accept_each_valid_state(conn: psycopg.Connection, agent: dict[str, Any]) -> None:
    expires = datetime.now(UTC) + timedelta(hours=24)
    _insert_transaction(conn, agent, status="pending", decision_reason="approval_required", approval_expires_at=expires)
    _insert_transaction(conn, agent, status="completed", stripe_charge_id="pi_123", context={"task": "x"})
    _insert_transaction(conn, agent, status="declined", decision_reason="daily_limit_exceeded")
    _insert_transaction(conn, agent, status="timed_out", decision_reason="approval_timed_out")


def test_an_idempotency_key_is_unique_per_agent_not_globally(conn: psycopg.Connection, agent: dict[str, Any]) -> None:
    _insert_transaction(conn, agent, idempotency_key="k-1")
    with pytest.raises(errors.UniqueViolation):
        _insert_transaction(conn, agent, idempotency_key="k-1")

    other_agent = _make_agent(conn, agent["organization_id"])
    _insert_transaction(conn, other_agent, idempotency_key="k-1")


def test_a_transaction_cannot_name_an_agent_of_another_organization(
    conn: psycopg.Connection, agent: dict[str, Any]
) -> None:
    stranger = _make_agent(conn)
    with pytest.raises(errors.ForeignKeyViolation):
        _insert_transaction(conn, agent, organization_id=stranger["organization_id"])


@pytest.mark.parametrize(
    ("daily", "per_tx", "threshold"),
    [
        (10_000, 5_000, 6_000),  # threshold above the per-transaction limit
        (10_000, 20_000, 1_000),  # per-transaction limit above the daily limit
        (10_000, 20_000, 30_000),  # threshold > per_tx > daily
        (10_000, 5_000, -1),  # negative threshold
        (100_000_000_001, 5_000, 1_000),  # a daily limit whose sums could reach 2^53
    ],
)
def test_budget_limits_refuse_disordered_or_huge_limits(
    conn: psycopg.Connection, agent: dict[str, Any], daily: int, per_tx: int, threshold: int
) -> None:
    with pytest.raises(errors.CheckViolation):
        conn.execute(
            "INSERT INTO budget_limits"
            " (agent_id, daily_limit_cents, per_tx_limit_cents, approval_threshold_cents)"
            " VALUES (%s, %s, %s, %s)",
            (agent["agent_id"], daily, per_tx, threshold),
        )


def test_budget_limits_accept_equal_limits_and_default_the_rate(
    conn: psycopg.Connection, agent: dict[str, Any]
) -> None:
    row = conn.execute(
        "INSERT INTO budget_limits"
        " (agent_id, daily_limit_cents, per_tx_limit_cents, approval_threshold_cents)"
        " VALUES (%s, 5000, 5000, 5000) RETURNING max_requests_per_minute",
        (agent["agent_id"],),
    ).fetchone()
    assert row == (20,)


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@at.test", "spa ce@acme.test"])
def test_organizations_refuse_an_admin_email_that_is_not_one(conn: psycopg.Connection, email: str) -> None:
    with pytest.raises(errors.CheckViolation):
        conn.execute(
            "INSERT INTO organizations (name, admin_email, admin_key_hash, admin_key_prefix)"
            " VALUES ('Acme', %s, 'hash', 'apa_test_x')",
            (email,),
        )


def _insert_web_session(conn: psycopg.Connection, organization_id: uuid.UUID, token_hash: str) -> None:
    conn.execute(
        "INSERT INTO web_sessions (organization_id, token_hash, admin_key_hash, created_at, expires_at)"
        " VALUES (%s, %s, 'hash', now(), now() + interval '12 hours')",
        (organization_id, token_hash),
    )


def test_web_sessions_hold_one_row_per_token_hash_and_never_a_token(
    conn: psycopg.Connection, agent: dict[str, Any]
) -> None:
    digest = "ab" * 32
    _insert_web_session(conn, agent["organization_id"], digest)
    with pytest.raises(errors.UniqueViolation):
        _insert_web_session(conn, agent["organization_id"], digest)
    # Only a lower-case hex SHA-256 fits: a raw cookie token (base64url) cannot be stored by mistake.
    for not_a_digest in ("AB" * 32, "ab" * 31, "x" * 43, "dGhpcyBpcyBhIHRva2VuIG9mIDMyIGJ5dGVzIGV4YWN0bHk"):
        with pytest.raises(errors.CheckViolation):
            _insert_web_session(conn, agent["organization_id"], not_a_digest)


# Query plans ------------------------------------------------------------------------------------------------
def _plan_nodes(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()
    assert row is not None
    nodes, todo = [], [row[0][0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


@pytest.fixture
def busy_organization(conn: psycopg.Connection, agent: dict[str, Any]) -> dict[str, Any]:
    """Two organizations with 2,000 transactions and audit entries each, fresh statistics, no seq scans."""
    other = _make_agent(conn)
    for owner in (agent, other):
        conn.execute(
            # Mostly completed, one in five declined, a few pending, as on a real dashboard.
            "INSERT INTO transactions (agent_id, organization_id, amount_cents, merchant, purpose, status,"
            " decision_reason, stripe_charge_id, approval_expires_at, idempotency_key, request_hash,"
            " budget_day, created_at)"
            " SELECT %(agent)s, %(org)s, 100 + i, 'm', 'p', status,"
            " CASE status WHEN 'declined' THEN 'daily_limit_exceeded' WHEN 'pending' THEN 'approval_required'"
            " ELSE 'auto_approved' END,"
            " 'pi_' || gen_random_uuid(), now() + interval '1 day', 'k-' || i, 'h',"
            " date '2025-01-01' + i / 100, now() - i * interval '1 minute'"
            " FROM generate_series(1, 2000) AS i,"
            " LATERAL (SELECT CASE WHEN i %% 5 = 0 THEN 'declined' WHEN i %% 49 = 0 THEN 'pending'"
            " ELSE 'completed' END AS status) AS s",
            {"agent": owner["agent_id"], "org": owner["organization_id"]},
        )
        conn.execute(
            "INSERT INTO audit_logs (organization_id, agent_id, actor, action)"
            " SELECT %(org)s, %(agent)s, 'system', 'payment.requested' FROM generate_series(1, 2000)",
            {"agent": owner["agent_id"], "org": owner["organization_id"]},
        )
    conn.execute("ANALYZE")
    conn.execute("SET enable_seqscan = off")
    return agent


PAGE_QUERIES = {
    "first page": (
        "SELECT * FROM transactions WHERE organization_id = %s ORDER BY created_at DESC, id DESC LIMIT 26",
        "transactions_org_created_idx",
    ),
    "next page": (
        "SELECT * FROM transactions WHERE organization_id = %s AND (created_at, id) < (%s, %s)"
        " ORDER BY created_at DESC, id DESC LIMIT 26",
        "transactions_org_created_idx",
    ),
    "agent filter": (
        "SELECT * FROM transactions WHERE organization_id = %s AND agent_id = %s"
        " ORDER BY created_at DESC, id DESC LIMIT 26",
        "transactions_org_agent_created_idx",
    ),
    "status filter, next page": (
        "SELECT * FROM transactions WHERE organization_id = %s AND status = 'declined'"
        " AND (created_at, id) < (%s, %s) ORDER BY created_at DESC, id DESC LIMIT 26",
        "transactions_org_status_created_idx",
    ),
    "audit log page": (
        "SELECT * FROM audit_logs WHERE organization_id = %s AND (created_at, id) < (%s, %s)"
        " ORDER BY created_at DESC, id DESC LIMIT 26",
        "audit_logs_org_created_idx",
    ),
}


@pytest.mark.parametrize("page", PAGE_QUERIES)
def test_dashboard_pages_read_their_index_in_order_without_sorting(
    conn: psycopg.Connection, busy_organization: dict[str, Any], page: str
) -> None:
    query, index = PAGE_QUERIES[page]
    cursor = (datetime.now(UTC) - timedelta(minutes=500), uuid.uuid4())
    params: tuple[Any, ...] = (busy_organization["organization_id"],)
    if "agent_id" in query:
        params += (busy_organization["agent_id"],)
    if "(created_at, id) <" in query:
        params += cursor

    nodes = _plan_nodes(conn, query, params)

    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")], nodes
    assert index in {n.get("Index Name") for n in nodes}, nodes


def test_rebuilding_a_day_counter_reads_only_the_partial_index(
    conn: psycopg.Connection, busy_organization: dict[str, Any]
) -> None:
    conn.execute("VACUUM transactions")  # the visibility map lets an index-only scan skip the heap
    nodes = _plan_nodes(
        conn,
        "SELECT coalesce(sum(amount_cents), 0) FROM transactions"
        " WHERE agent_id = %s AND budget_day = %s AND status IN ('pending', 'approved', 'completed')",
        (busy_organization["agent_id"], date(2025, 1, 5)),
    )
    scans = [n for n in nodes if n.get("Index Name") == "transactions_agent_day_held_idx"]
    assert scans and scans[0]["Node Type"] == "Index Only Scan", nodes


def test_the_expiry_sweep_uses_the_pending_partial_index(
    conn: psycopg.Connection, busy_organization: dict[str, Any]
) -> None:
    nodes = _plan_nodes(
        conn,
        "SELECT id FROM transactions WHERE status = 'pending' AND approval_expires_at < now()"
        " ORDER BY approval_expires_at LIMIT 100",
        (),
    )
    assert "transactions_pending_expiry_idx" in {n.get("Index Name") for n in nodes}, nodes


def test_an_organization_the_previous_release_inserts_stays_able_to_spend(conn: psycopg.Connection) -> None:
    """During a deploy a container of the release before 0009 still signs organizations up, without the column: they
    must not end up unverified (no one would ever send them a verification link). New code states NULL itself."""
    old_release = conn.execute(
        "INSERT INTO organizations (name, admin_email, admin_key_hash, admin_key_prefix)"
        " VALUES ('Acme', 'admin@acme.test', %s, 'apa_test_x') RETURNING email_verified_at",
        (uuid.uuid4().hex,),
    ).fetchone()
    new_release = conn.execute(
        "INSERT INTO organizations (name, admin_email, admin_key_hash, admin_key_prefix, email_verified_at)"
        " VALUES ('Acme', 'admin@acme.test', %s, 'apa_test_y', NULL) RETURNING email_verified_at",
        (uuid.uuid4().hex,),
    ).fetchone()
    assert old_release is not None and old_release[0] is not None
    assert new_release is not None and new_release[0] is None
