"""`agentpay dev` as a newcomer runs it, and the CLI commands that create organizations and agents."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import REPO
from tests.support.signing import encode, signed_headers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE"}}
    env.update({"AGENTPAY_HOME": str(home), "AGENTPAY_PORT": str(port), "AGENTPAY_ENV": "local"})
    return env


def _servers_of(home: Path, ports: list[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
            ours = str(home) in text or any(f":{p}" in text for p in ports)
            service = ours and any(n in text for n in ("postgres", "valkey", "localstripe"))
            jobs = "devtools.job_process" in text and proc.environ().get("AGENTPAY_HOME") == str(home)
            if service or jobs:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _job_process_of(home: Path) -> psutil.Process:
    found = [p for p in _servers_of(home, []) if "devtools.job_process" in " ".join(p.cmdline())]
    assert len(found) == 1, found
    return found[0]


def _start_dev(home: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.cli", "dev", "--port", str(port)],
        cwd=REPO,
        env=_clean_env(home, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    dev_file = home / "dev.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"agentpay dev exited early:\n{process.stdout.read() if process.stdout else ''}")
        if dev_file.exists():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return process, json.loads(dev_file.read_text())
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("agentpay dev did not become ready within 60 s")


def test_dev_server_serves_prints_keys_reuses_data_and_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / ".agentpay"  # where `make run` keeps it: the README's commands read .agentpay/dev.json
    port = _free_port()
    process, dev = _start_dev(home, port)
    try:
        assert set(dev) >= {
            "base_url",
            "dashboard_url",
            "admin_key",
            "agent_key",
            "organization_id",
            "agent_id",
            "database_url",
            "redis_url",
            "stripe_api_base",
            "outbox_dir",
        }
        assert dev["base_url"] == f"http://127.0.0.1:{port}"
        body = encode({"amount": 1250, "merchant": "m", "purpose": "p", "idempotency_key": "dev-1"})
        path = "/v1/payment-request"
        response = httpx.post(
            dev["base_url"] + path, content=body, headers=signed_headers(dev["agent_key"], "POST", path, body)
        )
        assert response.status_code == 201, response.text
        ports = [int(dev["redis_url"].rsplit(":", 1)[1].split("/")[0]), int(dev["stripe_api_base"].rsplit(":", 1)[1])]
        _ctrl_c_while_the_demo_waits_for_a_click(home, port)
        _the_readme_commands_work_with_the_keys_make_run_prints(tmp_path, port)
        _the_printed_first_request_is_approved(dev)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = process.communicate(timeout=30)
    assert dev["agent_key"] in output and dev["admin_key"] in output and "/dashboard" in output
    # The demo agent's limits beside its key: with them a reader knows $25.00 is approved at once, not pending.
    assert "$500.00 a day, $200.00 per payment, approval above $50.00" in output, output
    assert "AgentPay-Signature" in output  # the signed request to copy
    assert not (home / "dev.json").exists()
    time.sleep(0.5)
    assert _servers_of(home, ports) == []

    # A second run keeps the first one's data: same demo keys, and the payment is still there.
    process, again = _start_dev(home, port)
    try:
        assert again["agent_key"] == dev["agent_key"]
        replay = httpx.post(
            again["base_url"] + path, content=body, headers=signed_headers(dev["agent_key"], "POST", path, body)
        )
        assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
    time.sleep(0.5)
    assert _servers_of(home, ports) == []


def test_the_dev_server_stops_and_says_so_when_its_job_process_dies(tmp_path: Path) -> None:
    """Without its job process, payments would be approved and never charged: the server does not go on silently."""
    home = tmp_path / "home"
    process, dev = _start_dev(home, _free_port())
    ports = [int(dev["redis_url"].rsplit(":", 1)[1].split("/")[0]), int(dev["stripe_api_base"].rsplit(":", 1)[1])]
    try:
        job_process = _job_process_of(home)
        assert job_process.nice() > psutil.Process(process.pid).nice()  # its work yields the CPU to the server's
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(job_process.pid) == os.SCHED_IDLE
        job_process.kill()
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert "the job process exited" in output, output
    assert process.returncode == 0 and not (home / "dev.json").exists()
    time.sleep(0.5)
    assert _servers_of(home, ports) == []


def _the_readme_commands_work_with_the_keys_make_run_prints(workdir: Path, port: int) -> None:
    """README.md's "First steps with the API" block, run literally (on this test's port) where `make run` runs."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## First steps with the API", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    listed, created = _json_documents(result.stdout)  # two curls print two JSON bodies back to back
    assert [a["name"] for a in listed["data"]] == ["demo-agent"], listed
    assert created["api_key"].startswith("apk_test_") and created["agent"]["name"] == "buyer", created

    # "Spend policies": the example policy, put on the demo agent as written.
    section = readme.split("## Spend policies", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    agent = json.loads(result.stdout)
    assert agent["name"] == "demo-agent" and agent["policy"]["limits"]["weekly_limit"] == 50000, agent
    assert agent["policy"]["merchants"]["allow"] == ["api.openai.com", "*.example.com"]


def _the_printed_first_request_is_approved(dev: dict[str, Any]) -> None:
    """The signed request `make run` prints to copy into a shell (openssl and curl), as printed."""
    from devtools.devserver import signed_request_snippet

    snippet = signed_request_snippet(dev["base_url"], dev["agent_key"]).replace("first-payment-1", "printed-1")
    result = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=30)
    assert result.stdout.startswith("HTTP/1.1 201"), (result.stdout, result.stderr)
    assert '"status":"approved"' in result.stdout


def _json_documents(text: str) -> list[Any]:
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.strip()):
        value, at = decoder.raw_decode(text, at)
        found.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def _ctrl_c_while_the_demo_waits_for_a_click(home: Path, port: int) -> None:
    """`agentpay demo` stopped with Ctrl-C while it waits for the approval: a sentence, not a traceback."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.cli", "demo"],
        cwd=REPO,
        env=_clean_env(home, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # the demo prints the approve link, then waits for the click
        seen.append(line)
        if "waiting for the admin" in line or "/v1/approve/" in line:
            break
    time.sleep(1.0)
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=30)
    output = "".join(seen) + rest
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "stopped" in rest and demo.returncode == 130, (demo.returncode, output)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )


def test_cli_creates_an_organization_and_an_agent_with_working_keys(services: Any, client: Any) -> None:
    org = _cli("org", "create", "--name", "CLI Org", "--admin-email", "cli@example.com", "--timezone", "Europe/Berlin")
    assert org.returncode == 0, org.stderr
    created = json.loads(org.stdout)
    assert created["admin_key"].startswith("apa_test_") and "only once" in org.stderr
    agent = _cli(
        "agent",
        "create",
        "--organization-id",
        created["organization"]["id"],
        "--name",
        "cli-agent",
        "--daily-limit",
        "5000",
        "--per-transaction-limit",
        "1000",
        "--approval-threshold",
        "500",
    )
    assert agent.returncode == 0, agent.stderr
    agent_key = json.loads(agent.stdout)["api_key"]
    listed = client.get("/v1/dashboard/agents", headers={"Authorization": f"Bearer {created['admin_key']}"})
    assert [a["name"] for a in listed.json()["data"]] == ["cli-agent"]
    path = "/v1/payment-request"
    body = encode({"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": "cli-1"})
    assert client.post(path, content=body, headers=signed_headers(agent_key, "POST", path, body)).status_code == 201


def test_cli_refuses_bad_limits_with_a_readable_message(services: Any) -> None:
    import uuid

    result = _cli(
        "agent",
        "create",
        "--organization-id",
        str(uuid.uuid4()),
        "--name",
        "x",
        "--daily-limit",
        "10",
        "--per-transaction-limit",
        "20",
        "--approval-threshold",
        "0",
    )
    assert result.returncode == 2
    assert "per_transaction_limit: must not exceed daily_limit" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_completes_both_paths_against_a_running_dev_server(tmp_path: Path) -> None:
    """`agentpay demo` as the README tells a newcomer to run it; the test plays the admin clicking Approve."""
    home = tmp_path / "home"
    port = _free_port()
    process, dev = _start_dev(home, port)
    try:
        demo = subprocess.Popen(
            [sys.executable, "-m", "devtools.cli", "demo", "--timeout", "60"],
            cwd=REPO,
            env=_clean_env(home, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line)
            if "/v1/approve/" in line:
                approve_url = line.strip()
                page = httpx.get(approve_url)
                assert page.status_code == 200 and "Approve" in page.text
                assert httpx.post(approve_url).status_code == 200
        assert demo.wait(timeout=60) == 0, "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    output = "".join(lines)
    assert output.count("completed: Stripe PaymentIntent pi_") == 2, output
