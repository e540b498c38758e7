"""What each function loads when Lambda imports its handler: only what every request of that function needs.

A heavy library a function uses rarely or never (Stripe's SDK, Jinja, boto3, Sentry, Resend, the Redis client the
settings did not select) is imported where it is used, so it costs the requests that need it, not every cold start.
Checked by module name in a fresh interpreter with the function's deployed environment (deploy/template.py): no
timing here; bench/cold_start.py measures. About 10 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploy import package
from deploy.template import DeployedFunction, deployed_functions
from shared.platform import collector

# Never loaded at import by any function in the deployed configuration: boto3 only with AGENTPAY_SECRETS_ARN,
# sentry_sdk only with SENTRY_DSN, jinja2 on the first render, one Redis client on the first command (the deployed
# settings select Upstash, so redis-py never), qstash on the first job published or verified, and nothing local.
NEVER = {"boto3", "botocore", "sentry_sdk", "jinja2", "redis", "upstash_redis", "qstash", "devtools", "uvicorn"}
# What else each function must leave out, and (after "needs") what it loads because every request needs it.
NOT_NEEDED = {
    "payment_request": {"stripe", "resend", "requests", "jwt", "httpx"},
    "transactions": {"stripe", "resend", "requests", "jwt", "httpx"},
    "approve": {"stripe", "resend", "requests"},
    "decline": {"stripe", "resend", "requests"},
    "charge_worker": {"resend"},
    "email_worker": {"stripe", "resend", "requests"},  # Resend only once an email is sent
    "expire_approvals": {"fastapi", "starlette", "mangum", "stripe", "resend", "requests", "jwt", "httpx"},
    # Stripe only on the billing pages and at sign-up; PyJWT only to read a verification link (approval links are the
    # approve and decline functions').
    "dashboard": {"stripe", "resend", "requests", "httpx", "jwt"},
}
NEEDS = {
    "payment_request": {"fastapi", "psycopg", "psycopg_pool"},
    "approve": {"jwt"},
    "decline": {"jwt"},
    "charge_worker": {"stripe"},
    "email_worker": {"jwt", "httpx"},
    "expire_approvals": {"psycopg"},
}

_LOADED = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


def _loaded(function: DeployedFunction, **environment: str) -> set[str]:
    """Top-level packages in sys.modules after importing the function's handler module in a fresh interpreter."""
    ran = subprocess.run(
        [sys.executable, "-c", _LOADED, function.module],
        env={**function.environment, **environment},
        cwd=package.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return {name.split(".")[0] for name in json.loads(ran.stdout.splitlines()[-1])}


FUNCTIONS = {f.name: f for f in deployed_functions(package.ARTIFACT)}


def test_every_deployed_function_is_listed() -> None:
    assert set(FUNCTIONS) == set(NOT_NEEDED)


@pytest.mark.parametrize("name", sorted(NOT_NEEDED))
def test_a_cold_start_loads_only_what_every_request_needs(name: str) -> None:
    loaded = _loaded(FUNCTIONS[name])
    assert sorted(loaded & (NEVER | NOT_NEEDED[name])) == []
    assert sorted(NEEDS.get(name, set()) - loaded) == []  # the check sees what is there


_COLLECTIONS = """
import gc, importlib, json, sys
gc.collect()
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
importlib.import_module(sys.argv[1])
print(json.dumps({"collections": collections, "thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("name", sorted(NOT_NEEDED))
def test_the_collector_waits_out_a_cold_start_then_runs_at_the_request_pace(name: str) -> None:
    # Everything a cold start builds is kept: walking it while the handler is imported would free nothing (about
    # 20 ms at the request path's thresholds). Once imported, it is frozen and the collector runs as tuned.
    ran = subprocess.run(
        [sys.executable, "-c", _COLLECTIONS, FUNCTIONS[name].module],
        env=FUNCTIONS[name].environment,
        cwd=package.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    state = json.loads(ran.stdout.splitlines()[-1])
    assert state["collections"] == []
    assert tuple(state["thresholds"]) == collector.GC_THRESHOLDS
    assert state["frozen"] > 10_000


def test_sentry_loads_when_it_is_configured() -> None:
    loaded = _loaded(FUNCTIONS["payment_request"], SENTRY_DSN="https://public@o0.ingest.sentry.invalid/1")
    assert "sentry_sdk" in loaded
