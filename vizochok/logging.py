"""Log formatters that keep the structured fields passed through ``extra``."""

import json
import logging
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from django.http import HttpRequest

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__.keys()
) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the structured fields a caller attached to ``record`` through ``extra``."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


def _plain(value: Any) -> Any:
    """Return a field value as a log line shows it.

    An enum member becomes its value, so logs show 'public' rather than <Kind.PUBLIC: ...>.
    A request, which django.request attaches to its 4xx and 5xx records, becomes its method
    and path. Its query string is left out, because a client may have put an API key or a
    user token there, and Django's own ``repr`` of a request includes it.
    """
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, HttpRequest):
        return f"{value.method} {value.path}"
    return value


class KeyValueFormatter(logging.Formatter):
    """Human-readable lines: ``time level logger event key=value ...``, the time in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        timestamp = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = " ".join(
            f"{key}={_plain(value)!r}" for key, value in record_fields(record).items()
        )
        line = f"{timestamp} {record.levelname:<7} {record.name} {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            **{key: _plain(value) for key, value in record_fields(record).items()},
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


# Values of ``extra["action"]`` that procrastinate 3.10's worker logs when it starts, when
# a stop is requested (SIGTERM or SIGINT), when it waits for or aborts running jobs, and
# when it stops.
WORKER_LIFECYCLE_ACTIONS = frozenset(
    {"start_worker", "stopping_worker", "ending_job", "stop_worker"}
)


class QueueLogFilter(logging.Filter):
    """Drop procrastinate's records below ``level``, except the worker's starts and stops.

    QUEUE_LOG_LEVEL hides the queue's per-task INFO records, and with them the lines that
    show an operator when a worker started, received SIGTERM and stopped.
    """

    def __init__(self, level: str) -> None:
        super().__init__()
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ValueError(
                "QUEUE_LOG_LEVEL must be a logging level name such as INFO or WARNING,"
                f" got {level!r}."
            )
        self.level: int = number

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "procrastinate" and not record.name.startswith("procrastinate."):
            return True
        if record.levelno >= self.level:
            return True
        return getattr(record, "action", None) in WORKER_LIFECYCLE_ACTIONS
