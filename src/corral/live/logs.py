"""Where the live face's log goes: DATA_DIR/server.log, rotated, as text or as JSON lines.

Every module of the live face logs through `logging.getLogger(__name__)` (under `corral`);
this only decides where the records go and how they look. JSON lines are for a log
shipper (one object per line: time, level, logger, message and, for a failure, the
traceback); text is for people.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path

from corral.errors import InputError

LOG_FILE = "server.log"
ROTATE_BYTES = 10 * 1024 * 1024  # a file is rotated at 10 MiB,
KEEP_FILES = 5  # and 5 old ones are kept (server.log.1 ... .5)
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record: `t` (ISO 8601, UTC), `level`, `logger`, `message`, and
    `traceback` where the record carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "t": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def checked(level: str, form: str) -> tuple[str, str]:
    """`--log-level` and `--log-format` as `log_to` takes them, or refused naming the option."""
    if level.lower() not in LEVELS:
        raise InputError(f"--log-level must be one of {', '.join(LEVELS)}, not '{level}'", field="log-level")
    if form not in FORMATS:
        why = f"--log-format must be one of {', '.join(FORMATS)}, not '{form}'"
        raise InputError(why, field="log-format")
    return level.upper(), form


def log_to(data_dir: Path, level: str = "info", form: str = "text") -> logging.Handler:
    """Send the `corral` loggers' records at `level` and above to DATA_DIR/server.log,
    rotated; the handler, for `stop_logging`."""
    level, form = checked(level, form)
    handler = logging.handlers.RotatingFileHandler(
        data_dir / LOG_FILE, maxBytes=ROTATE_BYTES, backupCount=KEEP_FILES, encoding="utf-8"
    )
    handler.setFormatter(JsonLines() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("corral")
    root.setLevel(level)
    root.addHandler(handler)
    return handler


def stop_logging(handler: logging.Handler) -> None:
    """Detach and close what `log_to` attached (the level goes back to the default once no
    handler is left)."""
    root = logging.getLogger("corral")
    root.removeHandler(handler)
    handler.close()
    if not root.handlers:
        root.setLevel(logging.NOTSET)
