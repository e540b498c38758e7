"""The agent-framework examples compile, and their AgentPay part works against the real server.

The frameworks (openai-agents, langchain) are not dependencies: each example applies its framework's tool wrapper
inside `build_tools()`, so the plain functions import without it. When a framework is installed, its tools are
built too (no model is called).
"""

from __future__ import annotations

import importlib.util
import json
import py_compile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO, Agent, ServerProcess

EXAMPLES = REPO / "examples"
FRAMEWORKS = {"openai_agents_payment": "agents", "langchain_payment": "langchain_core"}


def load(name: str) -> ModuleType:
    """A fresh copy of the example module (its cached client reads the environment the test set)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}_{uuid.uuid4().hex}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_compiles(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_every_example_is_covered() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(FRAMEWORKS)


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_the_agentpay_part_pays_against_the_real_server(
    name: str, sdk_server: ServerProcess, new_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent: Agent = new_agent()  # daily 5000, per transaction 2000, approval threshold 1000
    monkeypatch.setenv("AGENTPAY_API_KEY", agent.api_key)
    monkeypatch.setenv("AGENTPAY_BASE_URL", sdk_server.base_url)
    example = load(name)
    purpose = f"Example {name} {uuid.uuid4().hex}"

    paid = json.loads(example.request_payment(amount_cents=125, purpose=purpose, merchant="examples.test"))
    assert (paid["status"], paid["amount_cents"]) == ("approved", 125)
    again = json.loads(example.request_payment(amount_cents=125, purpose=purpose, merchant="examples.test"))
    assert again["transaction_id"] == paid["transaction_id"], "the same call is the same payment"
    assert json.loads(example.payment_status(paid["transaction_id"]))["transaction_id"] == paid["transaction_id"]

    declined = json.loads(example.request_payment(amount_cents=2500, purpose=purpose, merchant="examples.test"))
    assert declined["error"]["code"] == "per_transaction_limit_exceeded"
    assert declined["retry_with_same_idempotency_key"] is False and declined["idempotency_key"]

    pending = json.loads(
        example.request_payment(amount_cents=1500, purpose=purpose, merchant="examples.test", idempotency_key="o-1")
    )
    assert (pending["status"], pending["idempotency_key"]) == ("pending", "o-1")
    example.client().close()


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_an_outage_tells_the_model_to_retry_with_the_same_key(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPAY_API_KEY", "apk_test_" + "0" * 64)
    monkeypatch.setenv("AGENTPAY_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    example = load(name)
    monkeypatch.setattr("agentpay_spend._http._backoff_delay", lambda attempt, retry_after=None: 0.0)

    failed = json.loads(example.request_payment(amount_cents=100, purpose="x", merchant="m"))
    assert failed["retry_with_same_idempotency_key"] is True
    assert failed["idempotency_key"].startswith("ap_")


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_the_framework_tools_build_when_the_framework_is_installed(name: str) -> None:
    if importlib.util.find_spec(FRAMEWORKS[name]) is None:
        pytest.skip(f"{FRAMEWORKS[name]} is not installed (not a dependency); the AgentPay part is tested above")
    tools = load(name).build_tools()
    assert [tool.name for tool in tools] == ["request_payment", "payment_status"]
    assert "idempotency_key" in tools[0].description
