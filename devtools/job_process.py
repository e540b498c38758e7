"""`agentpay dev`'s job process: the dispatcher, the worker routes it delivers to and the sweep, beside the server.

In production the job workers are functions of their own and QStash delivers to them, so nothing a charge or an email
costs lands on the process that answers payment requests. Run in the server's process, every approved payment's
charge (a signed delivery over HTTP, two Stripe calls, four database round trips) took the event loop's GIL for
several times what the payment request itself costs, and one client sending payments one after another saw each
request wait behind the previous one's charge. So `agentpay dev` runs them here, in a child process at a lower CPU
priority, and hands it every published job through a pipe: a write of a few hundred bytes on the server's side.

    python -m devtools.job_process --port PORT --jobs-fd FD    (started by JobProcess, not by hand)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from shared.jobs.outbox import OutboxJob

log = logging.getLogger("agentpay.dev")

# The job process's priority: the lowest nice value for it and its session, and the idle policy where there is one, so
# its work runs on what the server and the services leave of the cores. 1000 payment requests one at a time, every
# approved one charged behind them, against the benchmark's server measured just before (runs in rotation): p50
# x1.64-2.38 at +10 in the server's own session; in a session of its own x1.25-1.49 at +10, x1.01-2.37 at +19, and
# x0.98-1.50 with the idle policy too.
NICENESS = 19
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
PIPE_BYTES = 1024 * 1024


class JobProcess:
    """The server's side of the job process: starts it, and is the jobs.Transport that hands it each job."""

    def __init__(self, *, port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None
        self._lock = threading.Lock()
        self.stopping = False

    def start(self) -> JobProcess:
        read_end, write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "devtools.job_process", "--port", str(self.port), "--jobs-fd", str(read_end)],
                env=self._env,
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                # A session of its own: a Ctrl-C in the terminal reaches only the server, which stops it in order
                # (before the database it writes to), and its lower priority counts against every other session's.
                start_new_session=True,
            )
        finally:
            os.close(read_end)
        # Never block the server: a job process that falls this far behind (or hangs) makes publishing fail instead,
        # and the job waits in the outbox for the sweep. A line is at most PIPE_BUF bytes, so it is written whole.
        os.set_blocking(write_end, False)
        with contextlib.suppress(OSError, AttributeError):  # Linux lets a pipe hold more: a backlog of ~6,000 jobs
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._pipe = write_end
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"the job process exited with {self.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.05)
        raise RuntimeError(f"the job process did not answer on port {self.port} within {timeout:.0f}s")

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        """Until the process exits; its exit status."""
        assert self._process is not None
        return self._process.wait()

    def send(self, job: OutboxJob) -> None:
        """One line of JSON down the pipe, in microseconds. A full pipe (BlockingIOError) or a job process that died
        (BrokenPipeError) fails the publish: the job stays in the outbox for the sweep."""
        line = json.dumps(
            {"id": str(job.id), "type": job.type, "payload": job.payload, "dedup_id": job.dedup_id},
            separators=(",", ":"),
        ).encode()
        if len(line) >= select.PIPE_BUF:
            raise ValueError(f"a job of {len(line)} bytes does not fit in one write to the job process")
        with self._lock:
            if self._pipe is None:
                raise BrokenPipeError("the job process is stopped")
            os.write(self._pipe, line + b"\n")

    def stop(self) -> None:
        """Close the pipe (the job process drains what it is delivering and exits), then wait for it."""
        self.stopping = True
        with self._lock:
            if self._pipe is not None:
                os.close(self._pipe)
                self._pipe = None
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The job process itself ---------------------------------------------------------------------------------------
def _read_jobs(jobs_fd: int, dispatcher: Any, on_end: Any) -> None:
    """Every job the server publishes, to the dispatcher; the pipe's end (the server stopped or died) ends the
    process."""
    try:
        with os.fdopen(jobs_fd, "rb") as pipe:
            for line in pipe:
                try:
                    fields = json.loads(line)
                    job = OutboxJob(
                        id=uuid.UUID(fields["id"]),
                        type=fields["type"],
                        payload=fields["payload"],
                        dedup_id=fields["dedup_id"],
                    )
                except (ValueError, KeyError, TypeError):
                    log.exception("the job process could not read a job; the sweep publishes it again")
                    continue
                dispatcher.send(job)
    finally:
        on_end()


def serve(*, port: int, jobs_fd: int) -> int:
    """The worker routes on 127.0.0.1:port, the dispatcher delivering to them, the sweep, until the pipe closes."""
    import uvicorn

    from devtools.localstack import lower_priority
    from shared.http.app import close_clients_on_shutdown, create_app
    from shared.platform.logs import configure_logging

    # Before the function modules are imported: each builds its own app, which would set up logging at INFO.
    configure_logging(logging.WARNING)
    lower_priority(NICENESS, idle=True)  # before any thread starts: threads take the policy of their creator

    from devtools.devserver import uvicorn_config
    from devtools.local_app import jobs_running
    from functions.charge_worker.app import router as charge_router
    from functions.email_worker.app import router as email_router
    from shared.config import get_settings
    from shared.http.health import router as health_router

    # The dispatcher signs each delivery for, and sends it to, the worker URLs: this process's own routes (unless the
    # environment points the workers somewhere on purpose). Links in emails keep the server's address (AGENTPAY_PORT).
    own = f"http://127.0.0.1:{port}"
    os.environ.setdefault("CHARGE_WORKER_URL", own)
    os.environ.setdefault("EMAIL_WORKER_URL", own)
    get_settings.cache_clear()
    settings = get_settings()

    app = create_app(charge_router, email_router, health_router, title="AgentPay job workers (local)")
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port))

    def end() -> None:
        server.should_exit = True

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        # One delivery on the wire at a time: a charge keeps this process, localstripe and a database backend busy in
        # turn, so one at a time takes about one core however long the backlog, and the server keeps the other.
        # Duplicate deliveries (fault injection) keep theirs side by side.
        in_flight = 1 if settings.duplicate_deliveries <= 1 else None
        with jobs_running(settings, max_in_flight=in_flight) as dispatcher:
            reader = threading.Thread(target=_read_jobs, args=(jobs_fd, dispatcher, end), name="agentpay-jobs-pipe")
            reader.daemon = True
            reader.start()
            async with close_clients_on_shutdown(app):
                yield

    app.router.lifespan_context = lifespan
    # Ctrl-C reaches the server's process group, not this one: the server stops this process by closing the pipe.
    server.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs-fd", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(port=args.port, jobs_fd=args.jobs_fd)


if __name__ == "__main__":
    sys.exit(main())
