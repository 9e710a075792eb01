"""The id of the request being served: taken from a well-formed ``x-request-id`` or made, answered in the
same header, written into audit events and log lines so one call can be followed across all three."""

from __future__ import annotations

import copy
import logging
import os
import re
from contextvars import ContextVar
from typing import Any

HEADER = "x-request-id"
MAX_LENGTH = 128
# Letters, digits and a few separators: what proxies and tracers send (UUIDs, ULIDs, "abc-123:4"), and
# nothing that could break a log line, a header or a JSON string.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:/+=@-]{1," + str(MAX_LENGTH) + "}")

# A context variable, not module state: each request's task (and the worker threads it hands work to,
# which copy its context) sees its own value; outside a request it is empty.
_current: ContextVar[str] = ContextVar("sovstack_request_id", default="")


def accept(sent: str | None) -> str:
    """The caller's id when well formed, else a new random one (32 hex digits)."""
    if sent and _WELL_FORMED.fullmatch(sent):
        return sent
    return os.urandom(16).hex()


def current() -> str:
    """The id of the request this code runs for, or "" outside a request."""
    return _current.get()


def bind(request_id: str) -> Any:
    """Make ``request_id`` current; returns the token for ``unbind``."""
    return _current.set(request_id)


def unbind(token: Any) -> None:
    _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Gives every log record a ``request_id`` attribute ("-" outside a request) for the log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get() or "-"
        return True


def log_config(base: dict[str, Any], level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with the request id in every line, and sovstack's own logger on it."""
    config = copy.deepcopy(base)
    config.setdefault("filters", {})["request_id"] = {"()": RequestIdFilter}
    for name, formatter in config.get("formatters", {}).items():
        if "fmt" in formatter:
            formatter["fmt"] = formatter["fmt"] + " request_id=%(request_id)s"
        config["formatters"][name] = formatter
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("request_id")
    config.setdefault("loggers", {})["sovstack"] = {"handlers": ["default"], "level": level.upper(),
                                                    "propagate": False}
    return config
