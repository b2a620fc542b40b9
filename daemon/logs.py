"""Logging: structlog configured once at start-up.

JSON lines for the daemon (one object per line, for log shippers); a readable
console format when stderr is a terminal. Lines about an incident carry its
`incident_id`.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # each module's logger is built on its first line and kept: building it for
        # every line cost more than writing (or, below the level, dropping) the line
        cache_logger_on_first_use=True,
    )


def quiet_logging() -> None:
    """Only warnings and errors (replay, detect, check-config)."""
    configure_logging("warning", "console")
