"""shared.platform.aio.PerLoop: each event loop gets its own client, concurrent first uses share one, failures are
retried."""

from __future__ import annotations

import asyncio

import pytest

from shared.platform.aio import PerLoop, close_loop_clients
from tests.support.loops import run_in_own_loop


class Client:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def make_per_loop(fail_first: int = 0) -> tuple[PerLoop[Client], list[Client]]:
    made: list[Client] = []
    failures = [fail_first]

    async def create() -> Client:
        await asyncio.sleep(0.01)  # slow enough for concurrent first uses to overlap
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("the service is down")
        made.append(Client(len(made)))
        return made[-1]

    async def close(client: Client) -> None:
        client.closed = True

    return PerLoop(create, close), made


def test_concurrent_first_uses_in_one_loop_share_one_client_and_another_loop_gets_its_own() -> None:
    per_loop, made = make_per_loop()

    async def ten_at_once() -> set[int]:
        clients = await asyncio.gather(*(per_loop.get() for _ in range(10)))
        return {c.number for c in clients}

    assert run_in_own_loop(ten_at_once()) == {0}
    assert run_in_own_loop(ten_at_once()) == {1}, "a client of a finished loop is never handed to another loop"
    assert len(made) == 2


def test_a_failed_creation_is_retried_by_the_next_use() -> None:
    per_loop, made = make_per_loop(fail_first=1)

    async def twice() -> Client:
        with pytest.raises(ConnectionError):
            await per_loop.get()
        return await per_loop.get()

    assert run_in_own_loop(twice()).number == 0 and len(made) == 1


def test_the_loops_clients_are_closed_at_shutdown_and_a_later_use_opens_a_new_one() -> None:
    per_loop, made = make_per_loop()

    async def use_close_use() -> tuple[Client, Client]:
        first = await per_loop.get()
        await close_loop_clients()
        return first, await per_loop.get()

    first, second = run_in_own_loop(use_close_use())
    assert first.closed and not second.closed and first is not second
