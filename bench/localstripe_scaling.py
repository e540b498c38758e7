#!/usr/bin/env python3
"""localstripe's cost per operation at 50 and at 5,000 PaymentIntents, measured side by side in one run.

Two localstripe servers of our own (`devtools.localstack`, localstripe only) are filled as the charge worker fills
Stripe (an unconfirmed PaymentIntent with our metadata, then confirmed off-session), one with `--small` intents and
one with `--large`. Then every call the product and the chaos harness make is timed on both, in turns A B B A so
the machine's drifting speed hits both alike. For each call: the median answer time, and the CPU the localstripe
process spent per call (psutil), a mutation's batched store write included. The figure to read is the ratio
large / small: about 1 means the call does not grow with the store. A benchmark, not a test: nothing is asserted.

    .venv/bin/python bench/localstripe_scaling.py                  # 50 vs 5,000 intents, about 2 minutes
    .venv/bin/python bench/localstripe_scaling.py --large 1000     # quicker
    .venv/bin/python bench/localstripe_scaling.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devtools.localstack import STRIPE_STATE_WRITE_DELAY, LocalStack  # noqa: E402

KEY = "sk_test_agentpay_bench"
CUSTOMERS = 6  # as many organizations as `make chaos` makes
GROW_THREADS = 4


@dataclass
class Server:
    """One localstripe with its customers and the intents made in it."""

    name: str
    base: str
    pid: int
    http: httpx.Client
    customers: list[tuple[str, str]] = field(default_factory=list)  # (customer id, payment method id)
    intents: list[str] = field(default_factory=list)  # in creation order
    transactions: dict[str, str] = field(default_factory=dict)  # metadata transaction_id -> intent id
    grown_until: int = 0  # the `created` of the last intent made by grow(): later ones are the measurements'

    def cpu(self) -> float:
        """CPU seconds the server has used: from /proc's scheduler figures (nanoseconds) where there are some."""
        try:
            return int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            times = psutil.Process(self.pid).cpu_times()
            return float(times.user + times.system)


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400 and response.status_code != 402:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def localstripe(home: Path, name: str) -> Iterator[Server]:
    stack = LocalStack(home, with_postgres=False, with_redis=False)
    services = stack.start()
    try:
        with httpx.Client(base_url=services.stripe_api_base, auth=(KEY, ""), timeout=120) as http:
            pid = next(
                p.pid
                for p in psutil.process_iter(["cmdline"])
                if "serve_localstripe" in " ".join(p.info["cmdline"] or []) and str(home) in " ".join(p.info["cmdline"])
            )
            yield Server(name, services.stripe_api_base, pid, http)
    finally:
        stack.stop()


# What the product does (shared/vendors/stripe.py, shared/accounts/billing.py, shared/payments/charges.py) ---
def set_up_customer(http: httpx.Client, n: int) -> tuple[str, str]:
    customer = _ok(http.post("/v1/customers", data={"name": f"Bench org {n}", "email": "bench@example.com"}))["id"]
    method = _ok(http.post("/v1/payment_methods/pm_card_visa/attach", data={"customer": customer}))["id"]
    _ok(http.post(f"/v1/customers/{customer}", data={"invoice_settings[default_payment_method]": method}))
    return customer, method


def create_intent(http: httpx.Client, customer: str, method: str, transaction_id: str) -> dict[str, Any]:
    return _ok(
        http.post(
            "/v1/payment_intents",
            data={
                "amount": 700,
                "currency": "usd",
                "customer": customer,
                "payment_method": method,
                "confirm": "false",
                "metadata[transaction_id]": transaction_id,
                "metadata[agent_id]": "bench-agent",
                "metadata[merchant]": "api.example.com",
            },
        )
    )


def confirm_intent(http: httpx.Client, intent_id: str) -> dict[str, Any]:
    return _ok(http.post(f"/v1/payment_intents/{intent_id}/confirm", data={"off_session": "true"}))


def grow(server: Server, target: int, say: Callable[[str], None]) -> None:
    """Charge until the server holds `target` PaymentIntents, from a few threads (as several workers would)."""
    lock = threading.Lock()
    began = time.monotonic()

    def charge_some(client: httpx.Client) -> None:
        while True:
            with lock:
                n = len(server.intents)
                if n >= target:
                    return
                server.intents.append("")  # claims slot n
            customer, method = server.customers[n % len(server.customers)]
            transaction_id = f"tx-{server.name}-{n}"
            intent = create_intent(client, customer, method, transaction_id)
            confirm_intent(client, intent["id"])
            with lock:
                server.intents[n] = intent["id"]
                server.transactions[transaction_id] = intent["id"]
                if n % 1000 == 999:
                    say(f"  {server.name}: {n + 1} intents after {time.monotonic() - began:.0f} s")

    with ExitStack() as clients:
        threads = [
            threading.Thread(
                target=charge_some, args=(clients.enter_context(httpx.Client(base_url=server.base, auth=(KEY, ""))),)
            )
            for _ in range(GROW_THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


# The calls measured --------------------------------------------------------------------------------------------
PAGE = 10  # list pages compared at a size both servers fill; the harness's full walk is read per intent listed


@dataclass(frozen=True)
class Call:
    """One kind of call: `run(i)` makes it and returns how many units it covered (intents for the walk, else 1)."""

    run: Callable[[int], int]
    mutates: bool = False
    reps: int | None = None  # None: --reps


def calls(server: Server) -> dict[str, Call]:
    http = server.http
    customer, method = server.customers[0]
    middle = server.intents[len(server.intents) // 2]
    unconfirmed: list[str] = []
    recent = {"customer": customer, "created[gte]": int(time.time()) - 300, "limit": PAGE}

    def get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return _ok(http.get(path, params=params))

    def create(i: int) -> int:
        intent = create_intent(http, customer, method, f"tx-{server.name}-measured-{len(server.intents)}-{i}")
        server.intents.append(intent["id"])
        unconfirmed.append(intent["id"])
        return 1

    def confirm(i: int) -> int:
        confirm_intent(http, unconfirmed.pop(0))
        return 1

    def cancel(i: int) -> int:  # the charge worker cancels a duplicate it created (charges._record_intent)
        _ok(http.post(f"/v1/payment_intents/{unconfirmed.pop(0)}/cancel"))
        return 1

    def one(action: Callable[[], object]) -> Callable[[int], int]:
        def run(i: int) -> int:
            action()
            return 1

        return run

    def recent_page_2(i: int) -> int:
        first = get("/v1/payment_intents", recent)["data"]
        get("/v1/payment_intents", {**recent, "starting_after": first[-1]["id"]})
        return 2

    def walk(i: int) -> int:
        # the chaos harness's _stripe_intents: every intent, 100 a page. Only the grown (confirmed) ones, so that the
        # small server's share of intents these turns made (cheaper to render, without a charge) does not count.
        seen, after = 0, None
        grown = {"limit": 100, "created[lte]": server.grown_until}
        while True:
            page = get("/v1/payment_intents", {**grown, **({"starting_after": after} if after else {})})
            seen += len(page["data"])
            if not page["has_more"]:
                return seen
            after = page["data"][-1]["id"]

    return {
        "payment_intents.create": Call(create, mutates=True),
        "payment_intents.confirm": Call(confirm, mutates=True),
        "payment_intents.create (to cancel)": Call(create, mutates=True),
        "payment_intents.cancel": Call(cancel, mutates=True),
        "payment_intents.retrieve": Call(
            lambda i: one(lambda: get(f"/v1/payment_intents/{server.intents[i * 7 % len(server.intents)]}"))(i)
        ),
        # charges._unrecorded_intent: the customer's intents of the last minutes, newest first, page after page
        f"list customer+created, {PAGE}": Call(one(lambda: get("/v1/payment_intents", recent))),
        f"list customer+created, {PAGE}, next": Call(recent_page_2),
        f"list all, {PAGE}, after the middle": Call(
            one(lambda: get("/v1/payment_intents", {"limit": PAGE, "starting_after": middle}))
        ),
        "list all by 100s, per intent listed": Call(walk, reps=1),
        "customers.retrieve": Call(one(lambda: get(f"/v1/customers/{customer}"))),
        "customers.update": Call(
            one(
                lambda: _ok(
                    http.post(f"/v1/customers/{customer}", data={"invoice_settings[default_payment_method]": method})
                )
            ),
            mutates=True,
        ),
        "payment_methods.retrieve": Call(one(lambda: get(f"/v1/payment_methods/{method}"))),
        "payment_methods.attach": Call(
            one(lambda: _ok(http.post("/v1/payment_methods/pm_card_visa/attach", data={"customer": customer}))),
            mutates=True,
        ),
    }


@dataclass
class Figures:
    wall_s: list[float] = field(default_factory=list)  # per unit
    cpu_s: list[float] = field(default_factory=list)  # localstripe CPU per unit, one figure per turn


def measure_turn(server: Server, reps: int, figures: dict[str, Figures]) -> None:
    for name, call in calls(server).items():
        entry = figures.setdefault(name, Figures())
        cpu0, units = server.cpu(), 0
        for i in range(call.reps or reps):
            t0 = time.perf_counter()
            done = call.run(i)
            entry.wall_s.append((time.perf_counter() - t0) / done)
            units += done
        if call.mutates:  # the store write these changes caused is part of their cost
            time.sleep(STRIPE_STATE_WRITE_DELAY + 0.3)
        entry.cpu_s.append((server.cpu() - cpu0) / units)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=50, help="intents in the baseline server (default 50)")
    parser.add_argument("--large", type=int, default=5000, help="intents in the grown server (default 5000)")
    parser.add_argument("--reps", type=int, default=15, help="calls of each kind per turn (default 15)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="agentpay-bench-localstripe-") as tmp, ExitStack() as servers:
        small = servers.enter_context(localstripe(Path(tmp) / "small", "small"))
        large = servers.enter_context(localstripe(Path(tmp) / "large", "large"))
        for server, target in ((small, args.small), (large, args.large)):
            server.customers = [set_up_customer(server.http, n) for n in range(CUSTOMERS)]
            say(f"filling {server.name} with {target} PaymentIntents (created, then confirmed off-session)")
            began, cpu0 = time.monotonic(), server.cpu()
            grow(server, target, say)
            server.grown_until = int(time.time())
            time.sleep(1.1)  # the intents the measurements make have a later `created`
            say(f"  {target} in {time.monotonic() - began:.1f} s, localstripe CPU {server.cpu() - cpu0:.1f} s")

        figures: dict[str, dict[str, Figures]] = {"small": {}, "large": {}}
        for turn, server in enumerate((small, large, large, small)):
            say(f"turn {turn + 1}/4: {server.name}")
            measure_turn(server, args.reps, figures[server.name])

    rows = []
    for name in figures["small"]:
        a, b = figures["small"][name], figures["large"][name]
        wall_a, wall_b = statistics.median(a.wall_s) * 1000, statistics.median(b.wall_s) * 1000
        cpu_a, cpu_b = statistics.mean(a.cpu_s) * 1000, statistics.mean(b.cpu_s) * 1000
        rows.append(
            {
                "call": name,
                "small_p50_ms": round(wall_a, 2),
                "large_p50_ms": round(wall_b, 2),
                "ratio_p50": round(wall_b / wall_a, 2),
                "small_cpu_ms": round(cpu_a, 2),
                "large_cpu_ms": round(cpu_b, 2),
                "ratio_cpu": round(cpu_b / cpu_a, 2) if cpu_a > 0 else None,
            }
        )
    print()
    print(f"localstripe at {args.small} vs {args.large} PaymentIntents (p50 of the answer time; its CPU per call)")
    print(f"{'call':<38}{'p50 ms':>9}{'':>9}{'ratio':>7}{'cpu ms':>10}{'':>9}{'ratio':>7}")
    print(f"{'':<38}{args.small:>9}{args.large:>9}{'':>7}{args.small:>10}{args.large:>9}")
    for row in rows:
        print(
            f"{row['call']:<38}{row['small_p50_ms']:>9.2f}{row['large_p50_ms']:>9.2f}{row['ratio_p50']:>7.2f}"
            f"{row['small_cpu_ms']:>10.2f}{row['large_cpu_ms']:>9.2f}{row['ratio_cpu'] or 0:>7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"small": args.small, "large": args.large, "calls": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
