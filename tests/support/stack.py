"""Points this process's settings and cached clients at a running embedded stack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def use_services(found: Any, home: Path) -> None:
    """Every setting to the embedded services, every cached client forgotten, the schema up to date."""
    from devtools.migrate import apply_migrations
    from shared.budget import engine as budget
    from shared.config import get_settings
    from shared.http import auth
    from shared.platform import aio, db, redis_store
    from shared.vendors import stripe as stripe_api

    os.environ.update(
        {
            "AGENTPAY_ENV": "local",
            "AGENTPAY_HOME": str(home),
            "DATABASE_URL": found.database_url,
            "REDIS_URL": found.redis_url,
            "STRIPE_API_BASE": found.stripe_api_base,
        }
    )
    for name in ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "STRIPE_SECRET_KEY", "SENTRY_DSN"):
        os.environ.pop(name, None)
    get_settings.cache_clear()
    db.close_pool()
    aio.forget_loop_clients()
    stripe_api.get_client.cache_clear()
    redis_store.get_store.cache_clear()
    budget.get_engine.cache_clear()
    auth.agent_cache.clear()
    auth.admin_cache.clear()
    apply_migrations(found.database_url)
