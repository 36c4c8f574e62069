"""structlog set up once: one event a line, JSON in production, console on a terminal.

Standard-library loggers (aiohttp, SQLAlchemy, alembic) are rendered by the same
chain, so an operator reads one format. Ids are bound with
``structlog.contextvars.bind_contextvars`` at the edge and appear on every line.

No line carries a secret: a structlog processor and a standard-library filter
redact credentials (``Authorization``, cookies, signature/token/secret headers and
fields, bearer tokens, passwords in URLs) from every line, whoever logged it.
Requests aiohttp cannot parse are not logged with their raw bytes, and not one
line each: :class:`MalformedRequests` writes the first as a warning and then a
count per minute.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

REDACTED = "[redacted]"
# Longer strings are cut: a log line is for reading, not a copy of what a client sent.
MAX_VALUE = 8192

_SENSITIVE = r"(?:authori[sz]ation|cookie|signature|token|secret|passw(?:or)?d|api[-_]?key)"
_SENSITIVE_KEY = re.compile(_SENSITIVE, re.IGNORECASE)
# A value runs to the end of its line, a quote, a comma or "&"; "\x01" escapes (a stray
# byte shown by repr) do not end it, so the token after a stray byte is redacted too.
_VALUE = r"(?:[^\r\n'\"\\,&]|\\x[0-9a-fA-F]{2})+"
_PAIR = re.compile(
    rf"([\w-]*{_SENSITIVE}[\w-]*)"  # Authorization, X-Hub-Signature-256, api_token, Cookie
    r"(['\"]?\s*[:=]\s*)"  # ": ", "=", '": '
    rf"(?:\"[^\"]*\"|'[^']*'|{_VALUE})",
    re.IGNORECASE,
)
_SCHEME = re.compile(
    r"\b(bearer|basic|digest)(\s+)(?:[^\s'\"\\,;]|\\x[0-9a-fA-F]{2})+", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.\-]*://[^/\s:@'\"]+:)[^@\s/'\"]+@", re.IGNORECASE)
_RAW_BYTES = re.compile(r"""\bb'(?:[^'\\]|\\.)*'?|\bb"(?:[^"\\]|\\.)*"?""")


def redact_text(text: str) -> str:
    """``text`` with credentials replaced by ``[redacted]`` and cut to :data:`MAX_VALUE`."""
    if len(text) > MAX_VALUE:
        text = f"{text[:MAX_VALUE]}... ({len(text)} characters)"
    if not _SENSITIVE_KEY.search(text) and "://" not in text and not _SCHEME.search(text):
        return text  # the common case, without three substitutions
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(item, str | bytes) and _SENSITIVE_KEY.search(str(key))
            else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: Any) -> Any:
    """structlog processor: no credential in any field, rendered traceback included."""
    return _redact(event_dict)


class RedactingFilter(logging.Filter):
    """The same redaction for standard-library records, before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            return True  # structlog's own event, redacted by redact_secrets when rendered
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logging module's to report
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
        return True


def _reason(error: HttpProcessingError) -> str:
    """What was wrong with a request, without the bytes the client sent."""
    message = str(getattr(error, "message", "") or type(error).__name__)
    first = message.strip().split("\n", 1)[0]
    first = _RAW_BYTES.sub("", first).strip().rstrip(":.").strip()
    return redact_text(first)[:200] or type(error).__name__


class MalformedRequests(logging.Filter):
    """aiohttp's 'Error handling request' for unparsable requests: a count, not a flood.

    aiohttp logs each such request as an error with a traceback whose message
    holds the raw header bytes (a bearer token with a stray byte, a 10 KB header).
    This filter, on the ``aiohttp.server`` logger, drops those records; the first
    of a minute becomes one ``malformed_request`` warning with the reason and the
    client's address, and :meth:`flush` (called every minute by the app) writes
    one ``malformed_requests`` warning with how many more came and from where.
    """

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self.window = window
        self._lock = threading.Lock()
        self._window_end = 0.0
        self._reasons: Counter[str] = Counter()
        self._remotes: Counter[str] = Counter()
        self._log = structlog.get_logger("hub.http")

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        remote = str(args[0]) if args else "unknown"
        reason = _reason(error)
        now = time.monotonic()
        with self._lock:
            first = now >= self._window_end
            if first:
                self._window_end = now + self.window
            else:
                self._reasons[reason] += 1
                self._remotes[remote] += 1
        if first:
            self.flush()
            self._log.warning(
                "malformed_request",
                reason=reason,
                remote=remote,
                status=getattr(error, "code", 400),
                note=f"more within {self.window:g}s are counted, not logged one by one",
            )
        return False

    def flush(self) -> None:
        """Write how many malformed requests were counted since the last line, if any."""
        with self._lock:
            count = sum(self._reasons.values())
            reasons, remotes = self._reasons, self._remotes
            self._reasons, self._remotes = Counter(), Counter()
        if count:
            self._log.warning(
                "malformed_requests",
                count=count,
                reasons=dict(reasons.most_common(5)),
                remotes=dict(remotes.most_common(5)),
            )


malformed_requests = MalformedRequests()

# Loggers of libraries that write what they were sent or connected with; the filter on
# the handler covers every record that reaches it, these cover other handlers too.
_LIBRARY_LOGGERS = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "sqlalchemy.engine.Engine",
    "sqlalchemy.pool",
    "alembic",
)


def _dumps(obj: object, default: object = None) -> str:
    return orjson.dumps(obj, default=default).decode()  # type: ignore[arg-type]


def _set_filter(target: logging.Filterer, new: logging.Filter) -> None:
    """Install ``new``, replacing a filter of its class left by an earlier configuration."""
    for old in list(target.filters):
        if type(old) is type(new):
            target.removeFilter(old)
    target.addFilter(new)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        # Tracebacks as data, without frame locals: those hold request bodies and secrets.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        shared.append(structlog.processors.format_exc_info)  # as text, so it can be redacted

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # drop disabled levels before any work
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                renderer,
            ],
        )
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # First the flood guard (it drops most of what it sees), then the redaction.
    _set_filter(logging.getLogger("aiohttp.server"), malformed_requests)
    for name in _LIBRARY_LOGGERS:
        _set_filter(logging.getLogger(name), RedactingFilter())
    # With store.echo SQLAlchemy adds its own plain-text handler unless one is there: keep its
    # lines in this chain (JSON, redacted) instead.
    engine_log = logging.getLogger("sqlalchemy.engine.Engine")
    if not engine_log.handlers:
        engine_log.addHandler(logging.NullHandler())
    # aiohttp's access log is one line per request: far too loud at intake rates.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def debug_enabled(name: str) -> bool:
    """Whether the logger ``name`` writes debug lines: check before building one per lead."""
    return logging.getLogger(name).isEnabledFor(logging.DEBUG)
