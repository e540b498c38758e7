"""The scheduled expiry sweep (every 5 minutes): stale approvals time out, stuck charges and jobs are re-driven."""

from __future__ import annotations

import logging
from typing import Any

from shared.config import get_settings
from shared.payments.sweep import run_sweep
from shared.platform.collector import tune_gc
from shared.platform.logs import configure_logging

log = logging.getLogger("agentpay.sweep")
tune_gc()  # everything the sweep needs is loaded: its cold start ends here


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge's scheduled event: run one sweep and report what it did."""
    configure_logging()
    report = run_sweep(get_settings()).as_dict()
    log.info("sweep", extra={"fields": report})
    return report
