"""A real Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real server process."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess, _free_port

CHROMIUM = os.environ.get("AGENTPAY_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / ".agentpay" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    # Package scope: Playwright's sync API keeps an event loop running while it is open, which would break
    # later tests that run their own loop (Mangum's handler), so it closes when the browser tests are done.
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install it: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); browser tests skipped outside CI")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def server(services: Any) -> Iterator[ServerProcess]:
    process = ServerProcess(_free_port())
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class ConsoleErrors:
    """Console errors and page errors of one browser context; a page we expect to answer 4xx may say so."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected_statuses: set[int] = set()

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        # Chromium logs every 4xx document as "Failed to load resource"; those we provoke on purpose are fine.
        if any(f"status of {status}" in text for status in self.expected_statuses):
            return
        self.errors.append(text)


@pytest.fixture()
def console() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture()
def new_page(chromium: Any, console: ConsoleErrors) -> Iterator[Any]:
    """A factory of pages, each in its own context (its own cookies), all watched for console errors."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = chromium.new_context(**{"viewport": {"width": 1280, "height": 860}, **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5_000)
        console.attach(page)
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.errors == [], console.errors
