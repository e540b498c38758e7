"""Every Python block in the README runs, as written, against the fake AgentPay."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import API_KEY
from fake_agentpay import FakeAgentPay

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(
    source: str, fake: FakeAgentPay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTPAY_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTPAY_BASE_URL", fake.url)
    exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out or "assert" in source
    assert all(r.signature_ok for r in fake.requests)
