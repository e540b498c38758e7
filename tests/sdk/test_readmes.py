"""The SDK READMEs' code blocks, run literally against the real local server, so the quick-starts cannot rot.

Each block gets a fresh agent whose policy makes every documented outcome happen: small amounts auto-approved,
the "wait for approval" amount pending (an admin thread clicks the email's link), the huge one declined, and
ads.example.com blocked (as the repository README's example policy does).
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import agentpay_spend
import httpx
import pytest

from tests.conftest import REPO, ServerProcess
from tests.sdk.conftest import TS_SDK, Approver, policy, put_policy

PY_README = REPO / "sdk" / "python" / "README.md"
TS_README = TS_SDK / "README.md"
PY_BLOCKS = re.findall(r"^```python\n(.*?)^```", PY_README.read_text(encoding="utf-8"), flags=re.M | re.S)
TS_BLOCKS = re.findall(r"^```js\n(.*?)^```", TS_README.read_text(encoding="utf-8"), flags=re.M | re.S)

BLOCKED = (
    r"^the policy refuses this merchant: ads\.example\.com\n"
    r"^Payments to ads\.example\.com are blocked by this agent's policy\.$"
)
TX_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What each block prints against the real server, in README order (None: the block checks itself with asserts).
PY_EXPECTED = [
    rf"^{TX_ID} approved auto_approved$",
    r"^paid: pi_\w+$",
    rf"^over budget: per_transaction_limit_exceeded - .+\n^declined transaction: {TX_ID}$",
    BLOCKED,
    None,
    r"^True (approved|completed)$",
    r"^transaction\.completed 7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10 completed$",
]
TS_EXPECTED = [
    rf"^{TX_ID} approved auto_approved$",
    rf"^{TX_ID} approved auto_approved$",  # the same in CommonJS
    rf"^per_transaction_limit_exceeded 10000 null 250000 {TX_ID}$",
    BLOCKED,
    r"^paid: pi_\w+$",
    None,  # the webhook receiver: driven by a real payment with a callback_url below
]


def test_the_readmes_have_the_blocks_this_test_knows() -> None:
    assert len(PY_BLOCKS) == len(PY_EXPECTED)
    assert len(TS_BLOCKS) == len(TS_EXPECTED)


@pytest.mark.parametrize("index", range(len(PY_BLOCKS)), ids=[f"block{i}" for i in range(len(PY_BLOCKS))])
def test_python_readme_block_runs_against_the_real_server(
    index: int,
    sdk_server: ServerProcess,
    new_agent: Any,
    admin_http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    limits = {"daily_limit": 100_000, "per_transaction_limit": 10_000, "approval_threshold": 1000}
    agent = new_agent(**limits)
    put_policy(admin_http, agent, policy(limits=limits, block=["ads.example.com"]))
    monkeypatch.setenv("AGENTPAY_API_KEY", agent.api_key)
    monkeypatch.setenv("AGENTPAY_BASE_URL", sdk_server.base_url)

    with Approver(agent.id):
        exec(compile(PY_BLOCKS[index], str(PY_README), "exec"), {"__name__": "__readme__"})

    out = capsys.readouterr().out
    expected = PY_EXPECTED[index]
    assert expected is None or re.search(expected, out, re.M), out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _js_file(tmp_path: Path, index: int, sdk: Path) -> Path:
    """The block as a file importing the built SDK: .mjs and the ES module build, or .cjs and the CommonJS one."""
    block = TS_BLOCKS[index]
    if 'require("agentpay-spend")' in block:
        path = tmp_path / f"block{index}.cjs"
        path.write_text(block.replace('require("agentpay-spend")', f'require("{sdk / "dist" / "cjs" / "index.js"}")'))
    else:
        path = tmp_path / f"block{index}.mjs"
        path.write_text(
            block.replace('from "agentpay-spend"', f'from "{(sdk / "dist" / "esm" / "index.js").as_uri()}"')
        )
    return path


@pytest.mark.parametrize("index", range(len(TS_BLOCKS)), ids=[f"block{i}" for i in range(len(TS_BLOCKS))])
def test_typescript_readme_block_runs_against_the_real_server(
    index: int, ts_sdk: Path, sdk_server: ServerProcess, new_agent: Any, admin_http: httpx.Client, tmp_path: Path
) -> None:
    limits = {"daily_limit": 100_000, "per_transaction_limit": 10_000, "approval_threshold": 2000}
    agent = new_agent(**limits)
    put_policy(admin_http, agent, policy(limits=limits, block=["ads.example.com"]))
    env = {"AGENTPAY_API_KEY": agent.api_key, "AGENTPAY_BASE_URL": sdk_server.base_url}
    script = _js_file(tmp_path, index, ts_sdk)
    node_env = {**_base_env(), **env}

    if TS_EXPECTED[index] is not None:
        with Approver(agent.id):
            result = subprocess.run(["node", str(script)], env=node_env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert re.search(TS_EXPECTED[index], result.stdout, re.M), result.stdout
        return

    # The webhook receiver: a real payment with callback_url = the receiver; the server signs and delivers.
    port = _free_port()
    receiver = subprocess.Popen(
        ["node", str(script)], env={**node_env, "PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, receiver)
        with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=sdk_server.base_url) as client:
            tx = client.pay.request(
                amount=300,
                purpose="Webhook quick-start",
                merchant="hooks.example",
                callback_url=f"http://127.0.0.1:{port}/",
            )
            client.pay.wait_for_approval(tx.id, timeout=60, poll_interval=0.2)
        lines = _lines_of(receiver)
        deadline = time.monotonic() + 60
        while f"transaction.completed {tx.id} completed" not in lines:
            assert time.monotonic() < deadline, f"no webhook for {tx.id}; the receiver printed {lines}"
            time.sleep(0.05)
        assert lines.count(f"transaction.completed {tx.id} completed") == 1, "deduped on the event id"
    finally:
        receiver.kill()
        receiver.wait()


def _lines_of(process: subprocess.Popen[bytes]) -> list[str]:
    """The process's stdout lines, collected by a thread as they come."""
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode().strip())

    threading.Thread(target=read, daemon=True).start()
    return lines


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTPAY_")}


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "receiver exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the webhook receiver did not listen")
