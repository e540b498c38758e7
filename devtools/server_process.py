"""Local servers in child processes: an app factory under uvicorn with `agentpay dev`'s options, or `agentpay dev`.

The benchmark, `make bench-compare` and `make security-probe` start theirs with these. Each child runs in a session of
its own, so a Ctrl-C in the terminal reaches only the parent, which stops the child in order.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from devtools.devserver import HTTP_PROTOCOL, uvicorn_command
from devtools.localstack import LocalServices, free_port

REPO = Path(__file__).resolve().parents[1]

# Variables that point a server at real services or at production behaviour: a local server started here gets none
# of them from the environment it was started in.
_REAL_SERVICE_VARIABLES = frozenset(
    {
        "AGENTPAY_PORT",
        "AGENTPAY_SECRETS_ARN",
        "AWS_LAMBDA_FUNCTION_NAME",
        "CHARGE_WORKER_URL",
        "DATABASE_URL",
        "EMAIL_WORKER_URL",
        "PUBLIC_BASE_URL",
        "QSTASH_TOKEN",
        "REDIS_URL",
        "RESEND_API_KEY",
        "SENTRY_DSN",
        "STRIPE_API_BASE",
        "STRIPE_SECRET_KEY",
        "UPSTASH_REDIS_REST_TOKEN",
        "UPSTASH_REDIS_REST_URL",
    }
)


def local_env(home: Path, services: LocalServices | None = None, *, tree: Path = REPO) -> dict[str, str]:
    """This process's environment for a local server of `tree` with its home in `home`: against `services` when
    given, otherwise against the embedded services `agentpay dev` starts there itself."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _REAL_SERVICE_VARIABLES}
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)
    env.update({"AGENTPAY_ENV": "local", "AGENTPAY_HOME": str(home), "PYTHONPATH": path})
    if services is not None:
        env.update(
            {
                "DATABASE_URL": services.database_url,
                "REDIS_URL": services.redis_url,
                "STRIPE_API_BASE": services.stripe_api_base,
            }
        )
    return env


def _answers(port: int, path: str = "/healthz") -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class _ChildServer:
    """A child process in its own session whose output goes to a log file; stopped with `stop_signal`."""

    stop_signal = signal.SIGTERM

    def __init__(self, command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _ready(self) -> bool:
        return _answers(self.port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log_path}")
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the server did not become ready in {timeout:.0f}s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The child and its own children (uvicorn's workers, `agentpay dev`'s job process and services)."""
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        return [self.process.pid]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
        return total

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                family = self.pids()  # taken while they are still its descendants
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is ours
                for pid in family[1:]:  # what it started in groups or sessions of their own
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                self.process.wait(5)
        # Workers of a supervisor that died uncleanly share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


class AppServer(_ChildServer):
    """An app factory of a checkout (`tree`) under uvicorn with `agentpay dev`'s options, on a free loopback port."""

    def __init__(
        self,
        factory: str,
        *,
        env: dict[str, str],
        log_path: Path,
        workers: int = 1,
        tree: Path = REPO,
        http: str = HTTP_PROTOCOL,
    ) -> None:
        self.workers = workers
        port = free_port()
        command = uvicorn_command(factory, port=port, workers=workers, http=http)
        super().__init__(command, env={**env, "AGENTPAY_PORT": str(port)}, log_path=log_path, cwd=tree, port=port)


class DevServer(_ChildServer):
    """`agentpay dev` on a free loopback port with its home in `home`, exactly as `make run` starts it (its own
    embedded services unless `env` points it at others); stopped like a Ctrl-C in its terminal."""

    stop_signal = signal.SIGINT

    def __init__(self, home: Path, *, env: dict[str, str], log_path: Path, tree: Path = REPO) -> None:
        self.home = home
        port = free_port()
        command = [sys.executable, "-m", "devtools.cli", "dev", "--port", str(port)]
        super().__init__(command, env=env, log_path=log_path, cwd=tree, port=port)

    def _ready(self) -> bool:
        return (self.home / "dev.json").exists() and _answers(self.port)

    @property
    def dev(self) -> dict[str, Any]:
        """What it wrote to dev.json: its URLs and the demo organization's keys."""
        data: dict[str, Any] = json.loads((self.home / "dev.json").read_text())
        return data

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
