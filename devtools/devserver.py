"""`agentpay dev`: embedded services, migrations, a demo organization and agent, and every function on one port."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import Settings, get_settings

log = logging.getLogger("agentpay.dev")

DEMO_FILE = "demo.json"  # local only: the demo's plaintext keys, so every run can print them
# Added to localstripe's nice value: only the job process's charges (and card set-up at sign-up) call it, and it stands
# in for a service that would not share this machine. Not the lowest: a starved localstripe would time out the charges'
# Stripe calls (STRIPE_TIMEOUT_SECONDS).
STRIPE_NICENESS = 10


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_embedded_services(raw: Settings) -> Any:
    """Start what is not configured for real; export its URLs so every module's settings see them."""
    from devtools.localstack import LocalStack

    stack = LocalStack(
        raw.agentpay_home,
        redis_port=None,
        stripe_port=None,
        with_postgres=not raw.database_url,
        with_redis=not (raw.redis_url or raw.upstash_redis_rest_url),
        with_stripe=not raw.stripe_secret_key,
        stripe_niceness=STRIPE_NICENESS,
    )
    services = stack.start()
    if not raw.database_url:
        os.environ["DATABASE_URL"] = services.database_url
    if not (raw.redis_url or raw.upstash_redis_rest_url):
        os.environ["REDIS_URL"] = services.redis_url
    if not raw.stripe_secret_key:
        os.environ["STRIPE_API_BASE"] = services.stripe_api_base
    get_settings.cache_clear()
    return stack


def ensure_demo(settings: Settings) -> dict[str, str]:
    """The demo organization and agent, created on the first run and reused after (keys kept in .agentpay)."""
    import uuid

    from shared.accounts import agents, organizations
    from shared.platform import db
    from shared.policy.model import Limits
    from shared.vendors import stripe as stripe_api

    path = settings.agentpay_home / DEMO_FILE
    if path.exists():
        demo: dict[str, str] = json.loads(path.read_text())
        with db.connection() as conn:
            org = organizations.get_organization(conn, uuid.UUID(demo["organization_id"]))
        if org is not None:
            _ensure_billing(settings, org)
            return demo
    created_org = organizations.sign_up(
        stripe_api.get_client(),
        name="Demo Org",
        admin_email="admin@example.com",
        timezone="UTC",
        key_mode=settings.key_mode,
        attach_test_card=True,
        email_verified=True,
    )
    org_id = created_org.organization["id"]
    with db.connection() as conn:
        created_agent = agents.create_agent(
            conn,
            organization_id=org_id,
            name="demo-agent",
            limits=Limits(daily_limit_cents=50_000, per_tx_limit_cents=20_000, approval_threshold_cents=5_000),
            key_mode=settings.key_mode,
        )
    demo = {
        "organization_id": str(org_id),
        "agent_id": str(created_agent.agent["id"]),
        "admin_key": created_org.admin_key.plaintext,
        "agent_key": created_agent.api_key.plaintext,
    }
    path.write_text(json.dumps(demo, indent=2))
    os.chmod(path, 0o600)
    return demo


def _ensure_billing(settings: Settings, org: dict[str, Any]) -> None:
    """Give the demo organization a customer and card again if localstripe lost them (its store deleted or reset)."""
    from shared.accounts import organizations
    from shared.platform import db
    from shared.vendors import stripe as stripe_api

    client = stripe_api.get_client()
    if org["stripe_customer_id"] and stripe_api.customer_exists(client, org["stripe_customer_id"]):
        return
    billing = stripe_api.set_up_customer(
        client,
        organization_id=str(org["id"]),
        name=org["name"],
        email=org["admin_email"],
        attach_test_card=True,
        attempt=int(time.time()),
    )
    with db.connection() as conn:
        organizations.record_billing(conn, org["id"], billing)


def signed_request_snippet(base_url: str, agent_key: str) -> str:
    """A shell snippet that signs and sends a first payment request (the timestamp is taken when it runs)."""
    body = json.dumps(
        {
            "amount": 1250,
            "merchant": "api.example.com",
            "purpose": "First AgentPay test payment",
            "idempotency_key": "first-payment-1",
        },
        separators=(",", ":"),
    )
    return "\n".join(
        [
            f"KEY={agent_key}",
            f"BODY={shlex.quote(body)}",
            "TS=$(date +%s)",
            'KEYHASH=$(printf %s "$KEY" | sha256sum | cut -d" " -f1)',
            'SIG=$(printf %s "$TS.POST./v1/payment-request.$BODY" | openssl dgst -sha256 -hmac "$KEYHASH" -r'
            ' | cut -d" " -f1)',
            f'curl -i {base_url}/v1/payment-request -H "Authorization: Bearer $KEY" \\',
            '  -H "AgentPay-Timestamp: $TS" -H "AgentPay-Signature: v1=$SIG" \\',
            '  -H "Content-Type: application/json" --data-binary "$BODY"',
        ]
    )


def write_dev_file(settings: Settings, demo: dict[str, str]) -> dict[str, Any]:
    dev = {
        "base_url": settings.base_url,
        "dashboard_url": settings.base_url + "/dashboard",
        "admin_key": demo["admin_key"],
        "agent_key": demo["agent_key"],
        "organization_id": demo["organization_id"],
        "agent_id": demo["agent_id"],
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "stripe_api_base": settings.stripe_api_base,
        "outbox_dir": str(settings.outbox_dir),
    }
    path = settings.agentpay_home / "dev.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dev, indent=2))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return dev


# How the local app is served: by `agentpay dev` (uvicorn.Config, in its own process) and by the servers the benchmark
# and the probes start (uvicorn's command line, in a child process). No access log: the app logs each request itself.
HTTP_PROTOCOL = "devtools.local_http:BoundedHttpToolsProtocol"
LOG_LEVEL = "warning"


def uvicorn_config(app: Any, *, host: str, port: int) -> Any:
    """`agentpay dev`'s server options for an app object."""
    import uvicorn

    from devtools.local_http import BoundedHttpToolsProtocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=LOG_LEVEL,
        access_log=False,
        lifespan="on",
        http=BoundedHttpToolsProtocol,
    )


def uvicorn_command(
    factory: str, *, port: int, host: str = "127.0.0.1", workers: int = 1, http: str = HTTP_PROTOCOL
) -> list[str]:
    """The same options on uvicorn's command line, for an app factory in a child process (more than one worker
    needs an import string). `http` names the protocol of the checkout being served: older commits had none."""
    command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--host", host, "--port", str(port)]
    command += ["--log-level", LOG_LEVEL, "--no-access-log", "--http", http]
    return command + (["--workers", str(workers)] if workers > 1 else [])


def run_dev_server(*, port: int) -> int:
    import uvicorn

    from devtools.job_process import JobProcess
    from devtools.localstack import free_port
    from devtools.migrate import apply_migrations
    from shared.http.app import configure_logging
    from shared.jobs import outbox as jobs

    os.environ["AGENTPAY_PORT"] = str(port)
    get_settings.cache_clear()
    raw = Settings()  # the environment alone: what is configured for real
    if raw.agentpay_env != "local":
        _say("agentpay dev runs in local mode only (AGENTPAY_ENV=local).")
        return 2
    home = raw.agentpay_home
    home.mkdir(parents=True, exist_ok=True)
    (home / "dev.json").unlink(missing_ok=True)  # stale from a previous run until we are ready
    configure_logging(logging.WARNING)

    started = time.monotonic()
    _say("AgentPay: starting embedded services (PostgreSQL, Valkey, localstripe)...")
    stack = start_embedded_services(raw)
    job_process: JobProcess | None = None
    stopping = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        settings = get_settings()
        applied = apply_migrations(settings.require("database_url"))
        _say(f"AgentPay: database ready ({len(applied)} migration(s) applied)")
        # Charges, emails, webhooks and the sweep run in a process of their own (devtools/job_process.py); it starts
        # while the demo organization is checked.
        job_process = JobProcess(port=free_port(), env=dict(os.environ)).start()
        demo = ensure_demo(settings)
        from devtools.local_app import build_local_app

        app = build_local_app()
        server = uvicorn.Server(uvicorn_config(app, host=settings.agentpay_host, port=port))
        job_process.wait_ready()
        jobs.install_local_dispatcher(job_process)
        _watch(job_process, server)
        dev = write_dev_file(settings, demo)
        _print_banner(dev, time.monotonic() - started)
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        _say("AgentPay: stopping embedded services...")
        (home / "dev.json").unlink(missing_ok=True)
        jobs.install_local_dispatcher(None)
        if job_process is not None:
            job_process.stop()
        stack.stop()
        _say("AgentPay: stopped.")
    return 0


def _watch(job_process: Any, server: Any) -> None:
    """A job process that dies on its own takes the server down with it, saying so: payments would otherwise be
    approved and never charged."""
    import threading

    def watch() -> None:
        code = job_process.wait()
        if not job_process.stopping:
            _say(f"AgentPay: the job process exited ({code}); stopping. Its jobs wait in the outbox for the next run.")
            server.should_exit = True

    threading.Thread(target=watch, name="agentpay-job-process-watch", daemon=True).start()


def _limits_of(organization_id: str, agent_id: str) -> str:
    """The demo agent's limits as they are now (an admin may have changed them), the way a person reads them."""
    import uuid

    from shared.accounts import agents
    from shared.platform import db
    from shared.rendering import format_money

    with db.connection() as conn:
        row = agents.get_agent(conn, organization_id=uuid.UUID(organization_id), agent_id=uuid.UUID(agent_id))
    return (
        f"{row['name']}: {format_money(row['daily_limit_cents'])} a day,"
        f" {format_money(row['per_tx_limit_cents'])} per payment,"
        f" approval above {format_money(row['approval_threshold_cents'])}"
    )


def _print_banner(dev: dict[str, Any], elapsed: float) -> None:
    lines = [
        "",
        f"AgentPay is running on {dev['base_url']}  (ready in {elapsed:.1f}s)",
        f"  Dashboard:  {dev['dashboard_url']}",
        f"  Admin key:  {dev['admin_key']}",
        f"  Agent key:  {dev['agent_key']}",
        f"              ({_limits_of(dev['organization_id'], dev['agent_id'])})",
        f"  Settings:   {Path(get_settings().agentpay_home) / 'dev.json'}",
        "",
        "A first signed payment request (copy into a shell):",
        "",
        signed_request_snippet(dev["base_url"], dev["agent_key"]),
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    _say("\n".join(lines))
