"""Plays QStash for in-process tests: delivers what the outbox holds to the worker routes, signed as QStash signs."""

from __future__ import annotations

import json
from typing import Any

from shared.config import get_settings
from shared.jobs import outbox as jobs


def signed_job_headers(url: str, body: bytes, *, key: str | None = None) -> dict[str, str]:
    signing_key = key or get_settings().require("qstash_current_signing_key")
    return {
        "Content-Type": "application/json",
        "Upstash-Signature": jobs.sign_like_qstash(url=url, body=body, signing_key=signing_key),
    }


def post_job(client: Any, job_type: str, payload: dict[str, Any], *, base_url: str = "http://testserver") -> Any:
    path = jobs.JOB_PATHS[job_type]
    body = json.dumps(payload, separators=(",", ":")).encode()
    return client.post(path, content=body, headers=signed_job_headers(base_url + path, body))


def deliver_pending(client: Any, transaction_id: str, *, rounds: int = 5) -> list[Any]:
    """Deliver a transaction's unpublished jobs (and the jobs those cause), like QStash would, until none is left."""
    from shared.platform import db

    responses = []
    for _ in range(rounds):
        with db.connection() as conn:
            rows = conn.execute(
                """
                SELECT id, job_type, dedup_id, payload FROM job_outbox
                WHERE published_at IS NULL
                  AND (payload->>'transaction_id' = %(tx)s
                       OR payload->>'event_id' IN (SELECT id FROM webhook_events WHERE transaction_id::text = %(tx)s))
                ORDER BY created_at
                """,
                {"tx": str(transaction_id)},
            ).fetchall()
        if not rows:
            break
        for row in rows:
            response = post_job(client, row["job_type"], row["payload"])
            responses.append(response)
            if response.status_code < 300:
                jobs.mark_published(row["id"])
    return responses
