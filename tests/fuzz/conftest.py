"""The fuzzing target: one real server process for the module, an organization, agents and transactions in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerProcess, _free_port
from tests.fuzz.harness import OperationReport, Target, format_summary, load_schema, prepare_target

# `make test` runs a small deterministic sample (per operation and generation mode); `make fuzz` sets 500.
DEFAULT_EXAMPLES = 15
REPORTS: list[OperationReport] = []


def fuzz_examples() -> int:
    return int(os.environ.get("AGENTPAY_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


@pytest.fixture(scope="module")
def fuzz_server(services: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(_free_port())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fuzz_target(fuzz_server: ServerProcess) -> Target:
    return prepare_target(fuzz_server.base_url)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_target: Target) -> Any:
    return load_schema(fuzz_target)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The whole table for `make fuzz` (or -v); one line in `make test`, whose failures carry their own report."""
    if not REPORTS:
        return
    if "AGENTPAY_FUZZ_EXAMPLES" in os.environ or terminalreporter.config.getoption("verbose") > 0:
        for line in format_summary(REPORTS).splitlines():
            terminalreporter.write_line(line)
        return
    inputs = sum(report.examples for report in REPORTS)
    failures = sum(len(report.findings) for report in REPORTS)
    terminalreporter.write_line(
        f"contract fuzzing: {len(REPORTS)} operations, {inputs} inputs, {failures} distinct failures"
    )
