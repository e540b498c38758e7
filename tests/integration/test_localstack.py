"""The embedded stack starts real servers, keeps their data across restarts and leaves no process behind."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import psycopg
import pytest
import redis

from devtools.localstack import LocalServices, LocalStack, LocalStackBusy

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
    """Run `python -m devtools.localstack <home>` and read the URLs it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.localstack", str(home)],
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


def test_stripe_changes_survive_a_kill_once_the_write_delay_has_passed(home: Path) -> None:
    """localstripe's writes are batched, not dropped: killed outright (no chance to flush) once the write delay has
    passed, it comes back with every object, each in its last state."""
    import time

    from devtools.localstack import STRIPE_STATE_WRITE_DELAY

    with stripe_only(home) as (stack, client):
        for i in range(40):
            client.post("/v1/customers", data={"email": f"burst-{i}@example.com"}).raise_for_status()
        _, intent = charge(client, metadata={"transaction_id": "tx-before-kill"})
        client.post(f"/v1/payment_intents/{intent}", data={"metadata[note]": "edited"}).raise_for_status()
        before = every_object(client)
        time.sleep(STRIPE_STATE_WRITE_DELAY + 2.0)
        pid = stack.stripe_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    with stripe_only(home) as (_, client):
        after = every_object(client)
    assert len(after["customers"]) == 41
    assert after == before
    (kept,) = after["payment_intents"]
    assert (kept["status"], kept["metadata"]["note"]) == ("succeeded", "edited")


def test_a_home_with_the_stripe_store_pickled_whole_keeps_its_objects(home: Path) -> None:
    """Homes made before the SQLite state hold localstripe's store as one pickle: the first start imports it."""
    import pickle

    from devtools.localstripe_store import StoreFile

    with stripe_only(home) as (_, client):
        charge(client, metadata={"transaction_id": "tx-legacy"})
        before = every_object(client)
    state = home / "stripe" / "localstripe.sqlite"
    saved = StoreFile(state)
    legacy = {key: obj for key, _, obj in saved.read()}
    saved.close()
    for path in state.parent.glob("localstripe.sqlite*"):
        path.unlink()
    (home / "stripe" / "localstripe.pickle").write_bytes(pickle.dumps(legacy))

    for _ in range(2):  # imported, then read back from the new state
        with stripe_only(home) as (_, client):
            assert every_object(client) == before
    assert not (home / "stripe" / "localstripe.pickle").exists()


def charge(client: httpx.Client, *, metadata: dict[str, str], card: str = "pm_card_visa") -> tuple[str, str]:
    """A customer with a saved card, charged once as the charge worker does: (customer id, PaymentIntent id)."""
    customer = client.post("/v1/customers", data={"email": "charged@example.com"}).json()["id"]
    method = client.post(f"/v1/payment_methods/{card}/attach", data={"customer": customer}).json()["id"]
    intent = create_intent(client, customer, method, metadata)
    client.post(f"/v1/payment_intents/{intent}/confirm").raise_for_status()
    return customer, intent


def create_intent(client: httpx.Client, customer: str | None, method: str | None, metadata: dict[str, str]) -> str:
    data = {"amount": 500, "currency": "usd", **{f"metadata[{k}]": v for k, v in metadata.items()}}
    data |= {"customer": customer} if customer else {}
    data |= {"payment_method": method} if method else {}
    response = client.post("/v1/payment_intents", data=data)
    response.raise_for_status()
    intent_id: str = response.json()["id"]
    return intent_id


@contextmanager
def stripe_only(home: Path) -> Iterator[tuple[LocalStack, httpx.Client]]:
    """A stack of localstripe alone on this home, and a client of it."""
    with (
        LocalStack(home, with_postgres=False, with_redis=False) as stack,
        httpx.Client(base_url=stack.start().stripe_api_base, auth=(STRIPE_KEY, "")) as client,
    ):
        yield stack, client


def every_object(client: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """What localstripe holds of what AgentPay makes (its payment methods show inside the intents and charges)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for kind in ("customers", "payment_intents", "charges"):
        response = client.get(f"/v1/{kind}", params={"limit": 100})
        response.raise_for_status()
        found[kind] = response.json()["data"]
    return found


def test_stripe_payment_intent_lists_answer_what_a_scan_of_every_intent_answers(home: Path) -> None:
    """Lists read an index (devtools/localstripe_store.py), not a scan of the store. They must answer what the scan
    answered: the intents of a customer and within `created` bounds, newest first (equal `created` in the order they
    were made), page after page with starting_after; after intents changed (confirmed, cancelled, metadata edited),
    and after a restart that reloads the store."""
    import time

    with stripe_only(home) as (_, client):
        customers, methods = [], []
        for i in range(3):
            customers.append(client.post("/v1/customers", data={"email": f"c{i}@example.com"}).json()["id"])
            methods.append(
                client.post("/v1/payment_methods/pm_card_visa/attach", data={"customer": customers[-1]}).json()["id"]
            )
        made: list[str] = []  # in the order they were made
        for second in range(3):  # intents over three seconds of `created`, several in each
            for n, who in enumerate((0, 1, 0, 2, 1, None)):
                customer = customers[who] if who is not None else None
                method = methods[who] if who is not None else None
                made.append(create_intent(client, customer, method, {"transaction_id": f"tx-{second}-{n}"}))
            time.sleep(1.05 - time.time() % 1)
        for intent in made[::3]:
            client.post(f"/v1/payment_intents/{intent}/confirm").raise_for_status()
        client.post(f"/v1/payment_intents/{made[1]}/cancel").raise_for_status()
        client.post(f"/v1/payment_intents/{made[4]}", data={"metadata[transaction_id]": "tx-edited"}).raise_for_status()
        created = sorted({intent_of(client, i)["created"] for i in made})
        assert len(created) >= 3

        queries: list[dict[str, Any]] = [
            {},
            *({"customer": c} for c in customers),
            {"customer": "cus_nobody"},
            {"created[gte]": created[1]},
            {"created[gt]": created[1]},
            {"created[lt]": created[1]},
            {"created[lte]": created[1]},
            {"created": created[1]},
            {"customer": customers[0], "created[gte]": created[1]},
            {"customer": customers[1], "created[gt]": created[0], "created[lt]": created[-1]},
            {"customer": customers[0], "created[gt]": created[-1]},
        ]
        expected = [scan(client, made, query) for query in queries]
        assert any(len(e) > 4 for e in expected) and [] in expected
        for query, answer in zip(queries, expected, strict=True):
            for limit in (1, 2, 100):
                assert walk(client, query, limit) == answer, (query, limit)

    with stripe_only(home) as (_, client):
        assert [scan(client, made, query) for query in queries] == expected
        for query, answer in zip(queries, expected, strict=True):
            assert walk(client, query, 2) == answer, query
        # and it keeps up with intents made after the restart
        made.append(create_intent(client, customers[0], methods[0], {"transaction_id": "tx-after-restart"}))
        client.post(f"/v1/payment_intents/{made[-1]}/confirm").raise_for_status()
        for query in queries:
            assert walk(client, query, 2) == scan(client, made, query), query


def intent_of(client: httpx.Client, intent_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/payment_intents/{intent_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def scan(client: httpx.Client, made: list[str], query: dict[str, Any]) -> list[dict[str, Any]]:
    """What the list should answer, from every intent read one by one: filtered, then newest first (a stable sort,
    so equal `created` keep the order in which the intents were made)."""
    bounds = {
        "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__,
    }  # fmt: skip
    tests = [(bounds[k[8:-1]], v) for k, v in query.items() if k.startswith("created[")]
    tests += [(int.__eq__, query["created"])] if "created" in query else []
    every = [intent_of(client, i) for i in made]
    kept = [
        i
        for i in every
        if query.get("customer", i["customer"]) == i["customer"] and all(t(i["created"], v) for t, v in tests)
    ]
    return sorted(kept, key=lambda i: i["created"], reverse=True)


def walk(client: httpx.Client, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Every page of the list, as stripe-python's auto-paging does."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        response = client.get(
            "/v1/payment_intents", params={**query, "limit": limit, **({"starting_after": after} if after else {})}
        )
        response.raise_for_status()
        page = response.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


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
        [sys.executable, "-m", "devtools.localstack", str(home)],
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

    from devtools import localstack

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
