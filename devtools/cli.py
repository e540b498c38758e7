"""The `agentpay` command: the local server, migrations, and creating organizations and agents."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from shared.config import get_settings


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_migrate(args: argparse.Namespace) -> int:
    from devtools.migrate import apply_migrations

    applied = apply_migrations(get_settings().require("database_url"))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def cmd_org_create(args: argparse.Namespace) -> int:
    from shared.accounts import organizations
    from shared.vendors import stripe as stripe_api

    settings = get_settings()
    created = organizations.sign_up(
        stripe_api.get_client(),
        name=args.name,
        admin_email=args.admin_email,
        timezone=args.timezone,
        key_mode=settings.key_mode,
        attach_test_card=settings.is_local,
        email_verified=True,  # an operator creates it from a shell with database access: they vouch for the address
    )
    _print_json(
        {
            "organization": organizations.organization_view(created.organization),
            "admin_key": created.admin_key.plaintext,
        }
    )
    print("The admin key is shown only once: keep it somewhere safe.", file=sys.stderr)
    return 0


def cmd_agent_create(args: argparse.Namespace) -> int:
    import uuid

    from shared.accounts import agents
    from shared.platform import db
    from shared.policy.limits import Limits

    settings = get_settings()
    limits = Limits(
        daily_limit_cents=args.daily_limit,
        per_tx_limit_cents=args.per_transaction_limit,
        approval_threshold_cents=args.approval_threshold,
        max_requests_per_minute=args.max_requests_per_minute,
    )
    with db.connection() as conn:
        created = agents.create_agent(
            conn,
            organization_id=uuid.UUID(args.organization_id),
            name=args.name,
            limits=limits,
            key_mode=settings.key_mode,
        )
    _print_json({"agent": agents.agent_view(created.agent), "api_key": created.api_key.plaintext})
    print("The agent key is shown only once: keep it somewhere safe.", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from shared.payments.sweep import run_sweep

    report = run_sweep(get_settings())
    _print_json(report.as_dict())
    return 1 if report.errors else 0


def cmd_demo(args: argparse.Namespace) -> int:
    import httpx

    from devtools.demo import run_demo

    try:
        return run_demo(base_url=args.base_url, timeout=args.timeout)
    except KeyboardInterrupt:
        print(
            "\nagentpay demo: stopped. A payment it left pending stays pending until someone approves or declines it,"
            " or its approval expires.",
            file=sys.stderr,
        )
        return 130
    except TimeoutError as exc:
        print(f"agentpay demo: gave up waiting: {exc}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"agentpay demo: cannot reach AgentPay ({exc}); is `make run` running?", file=sys.stderr)
    return 1


def cmd_dev(args: argparse.Namespace) -> int:
    from devtools.devserver import run_dev_server

    return run_dev_server(port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentpay", description="AgentPay: budgets and approvals for AI agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole stack locally with embedded services")
    dev.add_argument("--port", type=int, default=int(os.environ.get("AGENTPAY_PORT", "8000")))
    dev.set_defaults(func=cmd_dev)

    sweep = sub.add_parser("sweep", help="run the expiry sweep once (time out stale approvals, re-drive charges)")
    sweep.set_defaults(func=cmd_sweep)

    demo = sub.add_parser("demo", help="against a running `agentpay dev`: one auto-approved and one approved payment")
    demo.add_argument("--base-url", default=None, help="defaults to the running server's (.agentpay/dev.json)")
    demo.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the approval click")
    demo.set_defaults(func=cmd_demo)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=cmd_migrate)

    org = sub.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    org_create = org.add_parser("create", help="create an organization and print its admin key once")
    org_create.add_argument("--name", required=True)
    org_create.add_argument("--admin-email", required=True)
    org_create.add_argument("--timezone", default="UTC")
    org_create.set_defaults(func=cmd_org_create)

    agent = sub.add_parser("agent", help="agents").add_subparsers(dest="agent_command", required=True)
    agent_create = agent.add_parser("create", help="create an agent and print its API key once")
    agent_create.add_argument("--organization-id", required=True)
    agent_create.add_argument("--name", required=True)
    agent_create.add_argument("--daily-limit", type=int, required=True, help="cents")
    agent_create.add_argument("--per-transaction-limit", type=int, required=True, help="cents")
    agent_create.add_argument("--approval-threshold", type=int, required=True, help="cents")
    agent_create.add_argument("--max-requests-per-minute", type=int, default=20)
    agent_create.set_defaults(func=cmd_agent_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.errors import AgentPayError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AgentPayError as exc:
        print(f"agentpay: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
