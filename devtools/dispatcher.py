"""The local stand-in for QStash: delivers outbox jobs to the worker routes over real HTTP, signed as QStash signs,
retrying with backoff, a dead letter on final failure."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable

import httpx

from shared.config import Settings
from shared.jobs.outbox import (
    LOCAL_ATTEMPTS,
    OutboxJob,
    mark_published,
    record_dead_letter,
    sign_like_qstash,
    worker_url,
)

log = logging.getLogger("agentpay.jobs")


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to 0.2 s, then 0.4, 0.8, ... capped at 10 s."""
    return random.uniform(0, min(10.0, 0.2 * 2 ** (attempt - 1)))


class LocalDispatcher:
    """Delivers jobs to the worker routes over real HTTP with a QStash-format signature, retrying with backoff.

    It stands in for QStash on a laptop and in CI: at-least-once delivery, retries, a dead letter on final failure.
    `duplicate_deliveries` > 1 delivers every job that many times in parallel (fault injection). `max_in_flight`
    bounds the deliveries on the wire at once (a retry's backoff does not count, so one failing job does not hold
    the others up); None leaves it to the number of threads.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = 4,
        duplicate_deliveries: int = 1,
        max_in_flight: int | None = None,
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
        self._in_flight = threading.BoundedSemaphore(max_in_flight) if max_in_flight else contextlib.nullcontext()
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
                with self._in_flight:
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
