"""`agentpay dev`'s jobs beside the server: charged through the job process, never blocking the server, one on the wire
at a time (devtools/job_process.py, devtools/dispatcher.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import make_agent, make_org, signed_get, signed_post


@pytest.fixture()
def job_process(services: Any) -> Iterator[Any]:
    """The job process against the test stack, installed as this process's transport, as `agentpay dev` does."""
    from devtools.job_process import JobProcess
    from devtools.localstack import free_port
    from shared.jobs import outbox as jobs

    # No sweep during the test: in the shared test database it would re-drive other tests' approved rows.
    process = JobProcess(port=free_port(), env={**os.environ, "SWEEP_INTERVAL_SECONDS": "3600"}).start()
    try:
        process.wait_ready()
        jobs.install_local_dispatcher(process)
        yield process
    finally:
        jobs.install_local_dispatcher(None)
        process.stop()


def _status(client: Any, api_key: str, transaction_id: str) -> str:
    return str(signed_get(client, api_key, f"/v1/transactions/{transaction_id}").json()["status"])


def test_an_approved_payment_is_charged_by_the_job_process(client: Any, job_process: Any) -> None:
    agent = make_agent(client, make_org(client))
    paid = signed_post(
        client,
        agent.api_key,
        "/v1/payment-request",
        {"amount": 500, "merchant": "m.example.com", "purpose": "p", "idempotency_key": uuid.uuid4().hex},
    )
    assert paid.status_code == 201, paid.text
    deadline = time.monotonic() + 30
    while _status(client, agent.api_key, paid.json()["id"]) != "completed":
        assert time.monotonic() < deadline, "the charge never completed"
        time.sleep(0.1)
    job_process.stop()
    assert job_process.returncode == 0  # the closed pipe ended it, in order


def test_a_job_process_that_stops_reading_never_blocks_the_server(services: Any, job_process: Any) -> None:
    from shared.jobs import outbox as jobs

    os.kill(job_process._process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        # Far more than the pipe holds: each publish either goes into the pipe or fails at once (the job would wait
        # in the outbox for the sweep), and none of them waits for the job process.
        refused = 0
        for _ in range(20_000):
            job = jobs.OutboxJob(id=uuid.uuid4(), type="charge", payload={"transaction_id": "0"}, dedup_id="x")
            try:
                job_process.send(job)
            except BlockingIOError:
                refused += 1
        assert refused > 0
        assert time.monotonic() - started < 10
        jobs.publish([jobs.OutboxJob(id=uuid.uuid4(), type="charge", payload={}, dedup_id="y")])  # logs, no raise
    finally:
        os.kill(job_process._process.pid, signal.SIGKILL)  # what it holds is thousands of made-up jobs


class _Worker(BaseHTTPRequestHandler):
    """A worker that takes 50 ms per delivery and counts how many it serves at once; `fail` answers 503 forever."""

    lock = threading.Lock()
    now = peak = served = 0
    fail: str = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.peak = max(cls.peak, cls.now)
        time.sleep(0.05)
        with cls.lock:
            cls.now -= 1
            cls.served += 1
        status = 503 if cls.fail and cls.fail.encode() in body else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("max_in_flight", [1, None])
def test_the_dispatcher_keeps_at_most_max_in_flight_deliveries_on_the_wire(
    services: Any, max_in_flight: int | None
) -> None:
    from devtools.dispatcher import LocalDispatcher
    from shared.config import get_settings
    from shared.jobs import outbox as jobs

    _Worker.now = _Worker.peak = _Worker.served = 0
    _Worker.fail = "always-503"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings = get_settings().model_copy(update={"charge_worker_url": url})
    backoffs: list[float] = []

    def sleep(seconds: float) -> None:  # a failing job waits 0.3 s between attempts, outside the bound
        backoffs.append(seconds)
        time.sleep(0.3)

    dispatcher = LocalDispatcher(settings, threads=4, max_in_flight=max_in_flight, sleep=sleep).start()
    try:
        dispatcher.send(jobs.OutboxJob(id=uuid.uuid4(), type="charge", payload={"k": "always-503"}, dedup_id="f"))
        for i in range(8):
            dispatcher.send(jobs.OutboxJob(id=uuid.uuid4(), type="charge", payload={"n": i}, dedup_id=f"j{i}"))
        deadline = time.monotonic() + 10
        while _Worker.served < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Eight good jobs and the failing one's first attempt: delivered while the failing one waits to retry.
        assert _Worker.served >= 9 and len(backoffs) < 3
        if max_in_flight == 1:
            assert _Worker.peak == 1
        else:
            assert _Worker.peak > 1  # the bound above is the dispatcher's doing, not the test's
    finally:
        dispatcher.stop()
        server.shutdown()
