"""Logging: one JSON object a line for the log collector, or readable lines in a terminal.

Log records carry a dispute reference or request id where there is one (as `extra`), and
never a case's details or anything a user typed: the code logs references, counts and error
names only, and this formatter passes on only the fields listed in SAFE_FIELDS.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# The `extra` fields that may reach the log. Anything else given as extra is dropped, so a
# careless `extra={"reasons": ...}` can never put case details into a log file.
SAFE_FIELDS = (
    "ref",
    "request_id",
    "platform",
    "method",
    "path",
    "status",
    "duration_ms",
    "fired",
    "sent",
    "parked",
    "reason",
    "error",
    "kind",
    "count",
    "worker",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the safe extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in SAFE_FIELDS:
            if name in record.__dict__:
                event[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            event["exception"] = record.exc_info[0].__name__
            event["traceback"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO  bot.outbox: message parked ref=WST-2026-0001 reason=...`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a readable line."""
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(
            f"{name}={record.__dict__[name]}" for name in SAFE_FIELDS if name in record.__dict__
        )
        line = f"{when} {record.levelname:<5} {record.name}: {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up the root logger: JSON unless writing to a terminal (or as `fmt` says)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (aiohttp's access log, apscheduler's every run) at warnings only.
    for noisy in ("aiohttp.access", "apscheduler", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
