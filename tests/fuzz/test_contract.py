"""Every operation of openapi.json against a real server: no 5xx, and every answer is one the contract documents."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fuzz.conftest import REPORTS, fuzz_examples
from tests.fuzz.harness import Target, format_summary, operation_labels, run_operation


@pytest.mark.parametrize("label", operation_labels())
def test_contract(label: str, fuzz_schema: Any, fuzz_target: Target) -> None:
    report = run_operation(fuzz_schema, fuzz_target, label, examples=fuzz_examples())
    REPORTS.append(report)
    assert report.examples > 0
    if report.findings:
        pytest.fail(format_summary([report]), pytrace=False)
