"""The TypeScript SDK's integration tests (`node --test`) against a real local server, every optional test enabled."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess
from tests.sdk.conftest import FlakyProxy, outbox_dir, transaction_rows


def node_test(ts_sdk: Path, test_file: str, env: dict[str, str]) -> dict[str, int]:
    """Runs one `node --test` file; returns the TAP summary counts after asserting the run passed."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=tap", test_file],
        cwd=ts_sdk,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    counts = {
        name: int(n)
        for name, n in re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", result.stdout, re.M)
    }
    assert result.returncode == 0 and counts.get("fail") == counts.get("cancelled") == 0, result.stdout + result.stderr
    return counts


def test_typescript_integration_suite_passes_with_every_test_enabled(
    ts_sdk: Path, sdk_server: ServerProcess, new_agent: Any, flaky_proxy: FlakyProxy
) -> None:
    agent = new_agent()  # daily 5000, per transaction 2000, approval threshold 1000
    daily = new_agent(daily_limit=300, per_transaction_limit=200, approval_threshold=200)
    rate_limited = new_agent(max_requests_per_minute=2)
    policed = new_agent()  # the test replaces its policy through the dashboard API with the admin key
    retry_key = f"ts-retry-{uuid.uuid4().hex}"

    counts = node_test(
        ts_sdk,
        "test/integration.test.js",
        {
            "AGENTPAY_BASE_URL": sdk_server.base_url,
            "AGENTPAY_API_KEY": agent.api_key,
            "AGENTPAY_TEST_SMALL_AMOUNT": "100",
            "AGENTPAY_TEST_LARGE_AMOUNT": "2001",
            "AGENTPAY_TEST_PENDING_AMOUNT": "1500",
            "AGENTPAY_OUTBOX_DIR": str(outbox_dir()),
            "AGENTPAY_TEST_DAILY_LIMIT_API_KEY": daily.api_key,
            "AGENTPAY_TEST_DAILY_AMOUNT": "200",
            "AGENTPAY_TEST_RATE_LIMITED_API_KEY": rate_limited.api_key,
            "AGENTPAY_TEST_RATE_LIMIT": "2",
            "AGENTPAY_TEST_ADMIN_KEY": policed.org.admin_key,
            "AGENTPAY_TEST_POLICY_AGENT_ID": policed.id,
            "AGENTPAY_TEST_POLICY_API_KEY": policed.api_key,
            "AGENTPAY_TEST_FLAKY_BASE_URL": flaky_proxy.base_url,
            "AGENTPAY_TEST_RETRY_KEY": retry_key,
            "AGENTPAY_TEST_WAIT_MS": "60000",
        },
    )

    assert counts.get("skipped") == 0 and counts.get("pass", 0) >= 11, counts
    assert flaky_proxy.payment_requests == [503, 503, 200]
    assert len(transaction_rows(agent.id, retry_key)) == 1, "the retries made exactly one transaction"
