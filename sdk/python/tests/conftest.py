"""Fixtures: a fake AgentPay on a real local port, clients pointed at it, and retries without waiting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_agentpay import FakeAgentPay

import agentpay_spend
from agentpay_spend import _http

API_KEY = "apk_test_" + "ab" * 32
TESTDATA = Path(__file__).resolve().parents[2] / "testdata"


def load_vectors(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((TESTDATA / name).read_text(encoding="utf-8"))
    return cases


@pytest.fixture
def fake() -> Iterator[FakeAgentPay]:
    server = FakeAgentPay(API_KEY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    """Replace the backoff with no wait, recording (attempt, retry_after) for each retry."""
    calls: list[tuple[int, float | None]] = []

    def no_wait(attempt: int, retry_after: float | None = None) -> float:
        calls.append((attempt, retry_after))
        return 0.0

    monkeypatch.setattr(_http, "_backoff_delay", no_wait)
    return calls


@pytest.fixture
def client(fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]) -> Iterator[agentpay_spend.AgentPay]:
    with agentpay_spend.AgentPay(API_KEY, fake.url) as c:
        yield c
