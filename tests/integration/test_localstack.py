"""The embedded stack starts real servers, keeps their data across restarts and leaves no process behind."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import psycopg
import pytest
import redis

from shared.localstack import LocalServices, LocalStack, LocalStackBusy

REPO_ROOT = Path(__file__).resolve().parents[2]
STRIPE_KEY = "sk_test_localstack"
SERVER_NAMES = ("postgres", "valkey-server", "localstripe")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def stack(home: Path) -> Iterator[LocalStack]:
    local = LocalStack(home)
    try:
        yield local
    finally:
        local.stop()


def redis_port(services: LocalServices) -> int:
    port = urlsplit(services.redis_url).port
    assert port is not None
    return port


def stripe_port(services: LocalServices) -> int:
    port = urlsplit(services.stripe_api_base).port
    assert port is not None
    return port


def servers_of(home: Path, ports: list[int]) -> list[str]:
    """Live postgres, valkey-server or localstripe processes whose command line names this home or a port."""
    markers = [str(home), *(f":{port}" for port in ports), *(f"--port {port}" for port in ports)]
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        command = " ".join(process.info["cmdline"] or [])
        if any(name in command for name in SERVER_NAMES) and any(marker in command for marker in markers):
            found.append(f"{process.pid}: {command}")
    return found


def list_customers(services: LocalServices) -> list[dict[str, object]]:
    response = httpx.get(f"{services.stripe_api_base}/v1/customers", headers={"Authorization": f"Bearer {STRIPE_KEY}"})
    response.raise_for_status()
    data: list[dict[str, object]] = response.json()["data"]
    return data


def start_cli(home: Path, log: Path) -> tuple[subprocess.Popen[str], LocalServices]:
    """Run `python -m shared.localstack <home>` and read the URLs it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.localstack", str(home)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        process.wait()
        pytest.fail(f"no URLs printed; log:\n{log.read_text()}")
    return process, LocalServices(**json.loads(line))


def test_started_services_answer(stack: LocalStack) -> None:
    services = stack.start()

    with psycopg.connect(services.database_url) as conn:
        assert conn.execute("select current_database(), 1").fetchone() == ("agentpay", 1)
    assert redis.Redis.from_url(services.redis_url).ping()
    assert list_customers(services) == []
    assert stack.start() is services  # idempotent


def test_data_survives_stop_and_start(home: Path) -> None:
    with LocalStack(home) as first:
        services = first.start()
        with psycopg.connect(services.database_url) as conn:
            conn.execute("create table notes (body text)")
            conn.execute("insert into notes values ('kept')")
        redis.Redis.from_url(services.redis_url).set("budget:agent-1", "1234")
        httpx.post(
            f"{services.stripe_api_base}/v1/customers",
            auth=(STRIPE_KEY, ""),
            data={"email": "admin@example.com"},
        ).raise_for_status()

    with LocalStack(home) as second:
        again = second.start()
        assert again == services  # same socket, same remembered ports
        with psycopg.connect(again.database_url) as conn:
            assert conn.execute("select body from notes").fetchall() == [("kept",)]
        assert redis.Redis.from_url(again.redis_url).get("budget:agent-1") == b"1234"
        assert [c["email"] for c in list_customers(again)] == ["admin@example.com"]


def test_stripe_changes_reach_the_state_file_while_running(stack: LocalStack, home: Path) -> None:
    """localstripe's writes are batched, not dropped: a burst of changes is on disk shortly after, with no stop."""
    import pickle
    import time

    from shared.localstack import STRIPE_STATE_WRITE_DELAY

    services = stack.start()
    emails = [f"burst-{i}@example.com" for i in range(40)]
    with httpx.Client(base_url=services.stripe_api_base, auth=(STRIPE_KEY, "")) as client:
        for email in emails:
            client.post("/v1/customers", data={"email": email}).raise_for_status()
    state = home / "stripe" / "localstripe.pickle"
    deadline = time.monotonic() + STRIPE_STATE_WRITE_DELAY + 10
    saved: set[object] = set()
    while time.monotonic() < deadline:
        if state.exists():
            store = pickle.loads(state.read_bytes())
            saved = {getattr(obj, "email", None) for key, obj in store.items() if key.startswith("customer:")}
            if saved >= set(emails):
                break
        time.sleep(0.1)
    assert saved >= set(emails)


def test_stripe_payment_intents_list_by_customer_and_creation_time(stack: LocalStack) -> None:
    """As Stripe does (the charge worker's search for an unrecorded intent depends on it): only the customer's
    intents, within the `created` bounds, newest first; an unknown bound is a 400."""
    import time

    services = stack.start()
    with httpx.Client(base_url=services.stripe_api_base, auth=(STRIPE_KEY, "")) as client:
        customers = [client.post("/v1/customers", data={"email": f"c{i}@example.com"}).json()["id"] for i in (1, 2)]
        made = {
            customer: [
                client.post(
                    "/v1/payment_intents", data={"amount": amount, "currency": "usd", "customer": customer}
                ).json()["id"]
                for amount in (100, 200, 300)
            ]
            for customer in customers
        }

        def listed(**params: object) -> Any:
            return client.get("/v1/payment_intents", params={"limit": 100, **params})

        now = int(time.time())
        mine = listed(customer=customers[0], **{"created[gte]": now - 60}).json()["data"]
        assert {i["id"] for i in mine} == set(made[customers[0]])
        assert [i["created"] for i in mine] == sorted((i["created"] for i in mine), reverse=True)
        assert listed(customer=customers[0], **{"created[gt]": now + 60}).json()["data"] == []
        assert len(listed().json()["data"]) == 6
        assert listed(**{"created[soon]": now}).status_code == 400


def test_redis_refuses_while_stopped_and_keeps_its_data(stack: LocalStack) -> None:
    services = stack.start()
    redis.Redis.from_url(services.redis_url).set("hold:tx-1", "500")

    stack.stop_redis()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(services.redis_url, socket_connect_timeout=1).ping()

    stack.start_redis()
    assert redis.Redis.from_url(services.redis_url).get("hold:tx-1") == b"500"


def test_postgres_refuses_while_stopped_and_keeps_its_data(stack: LocalStack) -> None:
    services = stack.start()
    with psycopg.connect(services.database_url) as conn:
        conn.execute("create table kept (n int)")
        conn.execute("insert into kept values (7)")

    stack.stop_postgres()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(services.database_url, connect_timeout=2)

    stack.start_postgres()
    with psycopg.connect(services.database_url) as conn:
        assert conn.execute("select n from kept").fetchall() == [(7,)]


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signalled_cli_stops_every_server(home: Path, tmp_path: Path, sig: int, exit_code: int) -> None:
    process, services = start_cli(home, tmp_path / "cli.log")
    ports = [redis_port(services), stripe_port(services)]
    assert redis.Redis.from_url(services.redis_url).ping()
    assert servers_of(home, ports)  # the check below would notice them

    process.send_signal(sig)

    assert process.wait(timeout=20) == exit_code
    assert servers_of(home, ports) == []


def test_start_takes_over_from_a_crashed_owner(home: Path, tmp_path: Path) -> None:
    process, services = start_cli(home, tmp_path / "cli.log")
    redis.Redis.from_url(services.redis_url).set("survivor", "yes")
    process.kill()  # no chance to stop its servers
    process.wait()
    ports = [redis_port(services), stripe_port(services)]
    assert servers_of(home, ports)

    with LocalStack(home) as stack:
        again = stack.start()
        assert again == services
        assert redis.Redis.from_url(again.redis_url).get("survivor") == b"yes"
        with psycopg.connect(again.database_url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert list_customers(again) == []
    assert servers_of(home, ports) == []


def test_a_second_owner_of_a_running_home_is_refused(stack: LocalStack, home: Path) -> None:
    stack.start()
    process = subprocess.run(
        [sys.executable, "-m", "shared.localstack", str(home)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert process.returncode != 0
    assert LocalStackBusy.__name__ in process.stderr
    assert f"pid {os.getpid()}" in process.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="postgres runs as its own user only when the stack is started as root")
def test_as_root_postgres_can_reach_binaries_under_a_directory_only_root_may_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone in `mktemp -d` (mode 0700) holds .venv and so pgserver's binaries: postgres, dropped to pgserver's
    user, could not traverse to them and `make test` failed with 516 PermissionErrors (issue 15, item 6). The binaries
    themselves were already o+x, which is why the grant for their parents was skipped."""
    import stat

    from shared import localstack

    private = tmp_path / "private"
    binary = private / "clone" / ".venv" / "pginstall" / "bin" / "postgres"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"")
    binary.chmod(0o755)
    private.chmod(0o700)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr(localstack, "_postgres_bin", lambda name: binary.parent / name)

    localstack._prepare_postgres_user(home)

    for directory in binary.parents:
        if directory == Path("/"):
            break
        assert directory.stat().st_mode & stat.S_IXOTH, f"{directory} is not traversable by pgserver's user"
