"""Background jobs: written to an outbox with the change that causes them, published to QStash or the local
dispatcher, and verified by the workers with QStash's signature."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from shared.config import Settings, get_settings
from shared.errors import InvalidJobSignature
from shared.platform import db

log = logging.getLogger("agentpay.jobs")

JOB_PATHS = {"charge": "/v1/jobs/charge", "email": "/v1/jobs/email", "webhook": "/v1/jobs/webhook"}
FAILURE_PATH = "/v1/jobs/failed"
QSTASH_RETRIES = 5
LOCAL_ATTEMPTS = 6  # first delivery plus five retries, like QSTASH_RETRIES


@dataclass(frozen=True)
class Job:
    """One unit of background work; `dedup_id` names its cause, so enqueuing it twice keeps one."""

    type: str
    payload: dict[str, Any]
    dedup_id: str


@dataclass(frozen=True)
class OutboxJob:
    """A job as stored in the outbox, ready to publish."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    dedup_id: str


def charge_job(transaction_id: uuid.UUID | str, *, attempt: int = 0) -> Job:
    suffix = f"-{attempt}" if attempt else ""
    return Job("charge", {"transaction_id": str(transaction_id)}, f"charge-{transaction_id}{suffix}")


def approval_email_job(transaction_id: uuid.UUID | str) -> Job:
    return Job("email", {"kind": "approval", "transaction_id": str(transaction_id)}, f"email-approval-{transaction_id}")


def block_alert_job(agent_id: uuid.UUID | str, blocked_at: str) -> Job:
    return Job(
        "email",
        {"kind": "block_alert", "agent_id": str(agent_id), "blocked_at": blocked_at},
        f"email-block-{agent_id}-{blocked_at}",
    )


def email_verification_job(organization_id: uuid.UUID | str, *, resend: str | None = None) -> Job:
    """The sign-up's verification email, or a resend (`resend` names it: one per name, and its own email)."""
    suffix = f"-{resend}" if resend else ""
    return Job(
        "email",
        {
            "kind": "email_verification",
            "organization_id": str(organization_id),
            "send": f"verify-{organization_id}{suffix}",  # the email's own idempotency key
        },
        f"email-verify-{organization_id}{suffix}",
    )


def webhook_job(event_id: str) -> Job:
    return Job("webhook", {"event_id": event_id}, f"webhook-{event_id}")


# The outbox ---------------------------------------------------------------------------------------------------
def enqueue(conn: db.Connection, job: Job) -> OutboxJob | None:
    """Write the job in the caller's database transaction. None if a job with that dedup id exists already."""
    row = conn.execute(
        """
        INSERT INTO job_outbox (job_type, dedup_id, payload) VALUES (%s, %s, %s)
        ON CONFLICT (dedup_id) DO NOTHING
        RETURNING id, job_type, dedup_id, payload
        """,
        (job.type, job.dedup_id, Jsonb(job.payload)),
    ).fetchone()
    return _outbox_job(row) if row else None


def _outbox_job(row: dict[str, Any]) -> OutboxJob:
    return OutboxJob(id=row["id"], type=row["job_type"], payload=row["payload"], dedup_id=row["dedup_id"])


def outbox_job(row: dict[str, Any]) -> OutboxJob:
    return _outbox_job(row)


def mark_published(job_id: uuid.UUID) -> None:
    with db.connection() as conn:
        conn.execute("UPDATE job_outbox SET published_at = now() WHERE id = %s AND published_at IS NULL", (job_id,))


def note_publish_failure(job_id: uuid.UUID, error: str) -> None:
    with db.connection() as conn:
        conn.execute(
            "UPDATE job_outbox SET publish_attempts = publish_attempts + 1, last_error = %s WHERE id = %s",
            (error[:500], job_id),
        )


def unpublished(*, older_than_seconds: float, limit: int = 200) -> list[OutboxJob]:
    with db.connection() as conn:
        rows = conn.execute(
            """
            SELECT id, job_type, dedup_id, payload FROM job_outbox
            WHERE published_at IS NULL AND created_at < now() - make_interval(secs => %s)
            ORDER BY created_at LIMIT %s
            """,
            (older_than_seconds, limit),
        ).fetchall()
    return [_outbox_job(r) for r in rows]


def record_dead_letter(job_type: str, payload: dict[str, Any], error: str) -> None:
    transaction_id = payload.get("transaction_id")
    try:
        tx = uuid.UUID(str(transaction_id)) if transaction_id else None
    except ValueError:
        tx = None
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO job_dead_letters (job_type, transaction_id, payload, error) VALUES (%s, %s, %s, %s)",
            (job_type, tx, Jsonb(payload), error[:2000]),
        )
    log.error("job gave up", extra={"fields": {"job_type": job_type, "error": error[:200]}})


# Publishing ---------------------------------------------------------------------------------------------------
class Transport(Protocol):
    def send(self, job: OutboxJob) -> None:
        """Hand the job over; raise if it could not be. Marks it published once taken."""
        ...


def publish(jobs: list[OutboxJob | None]) -> None:
    """Publish jobs after their transaction committed. Never raises: what fails stays in the outbox for the sweep."""
    transport = get_transport()
    for job in jobs:
        if job is None:
            continue
        if transport is None:
            continue  # no dispatcher in this process (a test); the sweep or a test drives the outbox
        try:
            transport.send(job)
        except Exception as exc:
            log.warning("publishing a job failed", extra={"fields": {"job_id": str(job.id), "error": str(exc)}})
            try:
                note_publish_failure(job.id, str(exc))
            except Exception:
                log.warning("could not record the publish failure", exc_info=True)


def worker_url(settings: Settings, job_type: str) -> str:
    """Where a job of this type is delivered: the worker's function URL in production, the local server here."""
    base = {"charge": settings.charge_worker_url, "email": settings.email_worker_url}.get(job_type)
    if job_type == "webhook":
        base = settings.email_worker_url
    return (base or settings.base_url).rstrip("/") + JOB_PATHS[job_type]


class QStashTransport:
    """Publishes to Upstash QStash, which delivers at least once with retries and calls back on final failure."""

    def __init__(self, settings: Settings) -> None:
        from qstash import QStash

        kwargs: dict[str, Any] = {}
        if settings.qstash_url:
            kwargs["base_url"] = settings.qstash_url
        self.client = QStash(settings.require("qstash_token"), **kwargs)
        self.settings = settings

    def send(self, job: OutboxJob) -> None:
        failure_callback = (self.settings.email_worker_url or self.settings.base_url).rstrip("/") + FAILURE_PATH
        self.client.message.publish_json(
            url=worker_url(self.settings, job.type),
            body=job.payload,
            deduplication_id=job.dedup_id,
            retries=QSTASH_RETRIES,
            failure_callback=failure_callback,
        )
        mark_published(job.id)


# Upstash-format signatures ------------------------------------------------------------------------------------
def sign_like_qstash(*, url: str, body: bytes, signing_key: str, now: float | None = None) -> str:
    """The Upstash-Signature QStash would send: an HS256 JWT over the URL and the body's SHA-256."""
    import jwt  # only the local dispatcher and the tests sign: a deployed function never loads this for it

    issued = int(time.time() if now is None else now)
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued,
        "nbf": issued,
        "exp": issued + 300,
        "jti": "jwt_" + uuid.uuid4().hex,
        "body": digest,
    }
    return jwt.encode(claims, signing_key, algorithm="HS256")


def verify_job_signature(*, signature: str | None, body: bytes, url: str, settings: Settings) -> None:
    """Accept only a request QStash (or the local dispatcher) signed, with the current or the next key."""
    from qstash import Receiver
    from qstash.errors import SignatureError

    if not signature:
        raise InvalidJobSignature("Upstash-Signature header is missing.")
    receiver = Receiver(
        current_signing_key=settings.require("qstash_current_signing_key"),
        next_signing_key=settings.require("qstash_next_signing_key"),
    )
    try:
        receiver.verify(signature=signature, body=body.decode("utf-8", errors="strict"), url=url, clock_tolerance=5)
    except (SignatureError, UnicodeDecodeError, KeyError) as exc:
        raise InvalidJobSignature() from exc


# Where jobs go without QStash: the local server installs devtools' dispatcher here, tests theirs or none.
_local_dispatcher: Transport | None = None


def install_local_dispatcher(dispatcher: Transport | None) -> None:
    """The local server installs its dispatcher; tests may install theirs or none."""
    global _local_dispatcher
    _local_dispatcher = dispatcher
    get_transport.cache_clear()


@functools.cache
def get_transport() -> Transport | None:
    settings = get_settings()
    if settings.qstash_token:
        return QStashTransport(settings)
    return _local_dispatcher
