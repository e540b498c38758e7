"""Background jobs: written to an outbox with the change that causes them, published to QStash or the local
dispatcher, and verified by the workers with QStash's signature."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
from psycopg.types.json import Jsonb

from shared import db
from shared.config import Settings, get_settings
from shared.errors import InvalidJobSignature

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


# The local dispatcher -----------------------------------------------------------------------------------------
def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to 0.2 s, then 0.4, 0.8, ... capped at 10 s."""
    return random.uniform(0, min(10.0, 0.2 * 2 ** (attempt - 1)))


class LocalDispatcher:
    """Delivers jobs to the worker routes over real HTTP with a QStash-format signature, retrying with backoff.

    It stands in for QStash on a laptop and in CI: at-least-once delivery, retries, a dead letter on final failure.
    `duplicate_deliveries` > 1 delivers every job that many times in parallel (fault injection).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = 4,
        duplicate_deliveries: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.duplicate_deliveries = duplicate_deliveries
        self.sleep = sleep
        self._queue: queue.Queue[OutboxJob | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"agentpay-dispatch-{i}", daemon=True) for i in range(threads)
        ]
        self._client = httpx.Client(timeout=30.0)
        self._stopped = threading.Event()
        # Jobs queued or being delivered. A job is marked published only once delivered, so while the dispatcher is
        # behind (a Stripe outage holds its threads in retries) the sweep publishes the same jobs again every pass;
        # queueing each copy would grow the queue faster than it drains and starve the newer jobs.
        self._held: set[uuid.UUID] = set()
        self._held_lock = threading.Lock()

    def start(self) -> LocalDispatcher:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)
        self._client.close()

    def send(self, job: OutboxJob) -> None:
        with self._held_lock:
            if job.id in self._held:
                return  # still queued or being delivered: this is the sweep publishing it again, not a new job
            self._held.add(job.id)
        self._queue.put(job)

    def queued_copies(self, job_id: uuid.UUID) -> int:
        """How many times a job waits in the queue for a delivery thread (0 or 1)."""
        with self._queue.mutex:
            return sum(1 for job in self._queue.queue if job is not None and job.id == job_id)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stopped.is_set():
                return
            try:
                self._deliver_all(job)
            finally:
                with self._held_lock:
                    self._held.discard(job.id)

    def _deliver_all(self, job: OutboxJob) -> None:
        try:
            if self.duplicate_deliveries > 1:
                threads = [threading.Thread(target=self.deliver, args=(job,)) for _ in range(self.duplicate_deliveries)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            else:
                self.deliver(job)
        except Exception:
            log.exception("dispatcher failed on a job")

    def deliver(self, job: OutboxJob) -> bool:
        """POST the job until a worker answers 2xx or the attempts run out (then a dead letter)."""
        url = worker_url(self.settings, job.type)
        body = json.dumps(job.payload, separators=(",", ":")).encode()
        last_error = ""
        for attempt in range(1, LOCAL_ATTEMPTS + 1):
            if self._stopped.is_set():
                return False
            signature = sign_like_qstash(
                url=url, body=body, signing_key=self.settings.require("qstash_current_signing_key")
            )
            try:
                response = self._client.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Upstash-Signature": signature,
                        "Upstash-Message-Id": f"msg_{job.id}",
                        "Upstash-Retried": str(attempt - 1),
                    },
                )
                if response.is_success:
                    mark_published(job.id)
                    return True
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # the database was down while marking: deliver again later
                last_error = f"{type(exc).__name__}: {exc}"
            self.sleep(backoff_seconds(attempt))
        try:
            record_dead_letter(job.type, job.payload, last_error)
            mark_published(job.id)
        except Exception:
            log.exception("could not record a dead letter; the sweep will publish the job again")
        return False


_local_dispatcher: LocalDispatcher | None = None


def install_local_dispatcher(dispatcher: LocalDispatcher | None) -> None:
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
