"""JSON log lines, one per record, carrying the id of the request and the agent being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
agent_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_id", default=None)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, carrying the request and agent ids of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            line["request_id"] = request_id
        if agent_id := agent_id_var.get():
            line["agent_id"] = agent_id
        for key, value in getattr(record, "fields", {}).items():
            line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Every record as one JSON line on stderr (CloudWatch keeps a line per record); idempotent."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonLogFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root.handlers = [handler]
    root.setLevel(level)
    for chatty in ("httpx", "stripe"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
