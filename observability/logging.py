"""Structured logging: one structlog configuration, secret redaction and per-message log context.

Every line, from our structlog loggers and from stdlib loggers (dramatiq, pika, uvicorn, root), goes
through one ``structlog.stdlib.ProcessorFormatter`` so it carries a timestamp, level, logger name,
the bound context variables and, inside a span, the OpenTelemetry ``trace_id`` and ``span_id``.

Connection failures are said once per change of state by the hub (``hub.connectivity``), not per attempt
by each library: the AMQP clients are heard only at CRITICAL (below DEBUG), and the two lines Dramatiq's
consumer threads write on every restart are dropped (:class:`ConsumerRestarts`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO, TypeGuard

import dramatiq
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "ConsumerRestarts",
    "DuplicateSkips",
    "LogContextMiddleware",
    "MessageSummaries",
    "add_trace_context",
    "configure_logging",
    "get_logger",
    "mask_text",
    "message_summary",
    "redact_secrets",
    "warn_unless_before_retries",
]

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(r"passw(or)?d|secret|token|authorization|api[_-]?key|signature", re.IGNORECASE)
# Userinfo of any scheme://user:pass@host; the user name alone can be a credential too (tokens).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s/@]+@")
# Secrets passed in query strings, e.g. pre-signed download links or ``?api_key=``.
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:[\w.\-]*(?:passw(?:or)?d|secret|token|api[_-]?key|signature|sig)))=[^&\s#]*",
    re.IGNORECASE,
)

# Marks the handler we install, so a second configure_logging() replaces it instead of adding one.
_HANDLER_MARK = "_hub_observability_handler"
# AMQP clients whose every failure also reaches the hub's code as an exception, which the hub reports once
# per change of state: pika writes 6 to 8 ERROR lines (some with a traceback) per failed connection
# attempt, aiormq one per attempt and a traceback per lost connection. Heard at CRITICAL only, unless the
# level is DEBUG (then from WARNING, as before).
_CLIENT_LOGGERS = ("pika", "aiormq", "aio_pika")
# Alembic writes a line per plugin and per migration; the hub says once what an upgrade applied. httpx writes
# an INFO line for every request it sends (some 50 per provisioned workspace, their URLs naming the project);
# the connectors report the failures that matter. Heard from WARNING, unless the level is DEBUG.
_QUIETED_LOGGERS = ("alembic", "httpx", "httpcore")
_ROUTED_LOGGERS = ("dramatiq", "uvicorn", "uvicorn.error", "uvicorn.access", *_CLIENT_LOGGERS,
                   *_QUIETED_LOGGERS)


def mask_text(text: str) -> str:
    """Mask URL userinfo and secret-looking query parameters in free text."""
    masked = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(rf"\g<key>={REDACTED}", masked)


def _redact_value(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(None, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(None, v) for v in value)
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor replacing secret-named keys with ``[redacted]`` and masking credentials in strings."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor adding ``trace_id`` and ``span_id`` of the current OpenTelemetry span."""
    # A valid but unsampled span still correlates logs across services, so validity is the test.
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]


class _StandardError(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is written, as ``logging.lastResort`` does.

    A handler holding the stream it found at configuration would keep writing to a stream since replaced and closed
    (a test runner's capture, a CLI runner's), while a thread started earlier still logs.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(*, fmt: Literal["json", "console"], level: str, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger so that every log line is rendered alike."""
    if fmt not in ("json", "console"):
        raise ValueError(f"fmt must be 'json' or 'console', not {fmt!r}")
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _StandardError()

    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=handler.stream.isatty())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests and the CLI reconfigure, and cached loggers would keep the old chain.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering so that tracebacks and foreign messages are masked too.
            redact_secrets,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    # In this order: DuplicateSkips reads the message that MessageSummaries replaces by its summary.
    handler.addFilter(DuplicateSkips())
    handler.addFilter(ConsumerRestarts())
    handler.addFilter(MessageSummaries())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)

    for name in _ROUTED_LOGGERS:
        # Libraries that install their own handlers (uvicorn) would print unformatted lines twice.
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        if name in _CLIENT_LOGGERS:
            lib.setLevel(logging.WARNING if numeric_level <= logging.DEBUG else logging.CRITICAL)
        elif name in _QUIETED_LOGGERS:
            lib.setLevel(logging.NOTSET if numeric_level <= logging.DEBUG else logging.WARNING)
        else:
            lib.setLevel(logging.NOTSET)


def message_summary(message: Any) -> str:
    """A Dramatiq message as its identity only: message id, actor, event id and type, never its arguments."""
    options = getattr(message, "options", None) or {}
    event = options.get("hub_event") if isinstance(options, Mapping) else None
    event = event if isinstance(event, Mapping) else {}
    return (f"message {getattr(message, 'message_id', '?')} (actor {getattr(message, 'actor_name', '?')}, "
            f"event {event.get('id', '-')}, type {event.get('type', '-')})")


class MessageSummaries(logging.Filter):
    """Replaces Dramatiq messages in a log record's arguments by :func:`message_summary`.

    Dramatiq's worker logs a failing message with ``%s``, which prints its arguments: the whole event,
    ``data_base64`` (the business payload) included. Only its identity reaches the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the arguments in place (every handler after this one sees the safe form)."""
        if isinstance(record.args, tuple) and any(_is_message(arg) for arg in record.args):
            record.args = tuple(message_summary(arg) if _is_message(arg) else arg for arg in record.args)
        elif isinstance(record.args, Mapping) and any(_is_message(arg) for arg in record.args.values()):
            record.args = {k: message_summary(v) if _is_message(v) else v for k, v in record.args.items()}
        return True


class DuplicateSkips(logging.Filter):
    """Drops Dramatiq's WARNING ``Message ... was skipped.`` for a message the idempotency middleware
    skipped as a duplicate (message option ``hub_outcome``: ``duplicate``).

    Redelivered duplicates are ordinary under at-least-once delivery, not a warning; the middleware logs
    each one at INFO by its ids. Dramatiq writes the line itself for every ``SkipMessage`` and has no
    setting for its level, so the record is filtered here. Other skips keep their line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for Dramatiq's line about a skipped duplicate."""
        if record.msg != "Message %s was skipped." or not isinstance(record.args, tuple):
            return True
        return not any(_is_message(arg) and arg.options.get("hub_outcome") == "duplicate" for arg in record.args)


class ConsumerRestarts(logging.Filter):
    """Drops the two lines a Dramatiq consumer thread writes on every restart after a connection error:
    ``Consumer encountered a connection error: ...`` (CRITICAL) and ``Restarting consumer in 3.00 seconds.``

    A worker runs one consumer thread per queue and per delay queue, each restarting on its own every
    few seconds through an outage; Dramatiq offers no hook or setting for these lines. The hub's broker
    connects its consumers through ``hub.connectivity.ServerLink``, which says the same once per change
    of state (lost, retrying every N s, restored), so the records are dropped. A consumer's unexpected
    error keeps its line and traceback.
    """

    _PER_RESTART = frozenset({"Consumer encountered a connection error: %s", "Restarting consumer in %0.2f seconds."})

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a consumer thread's per-restart line."""
        return not (record.name.startswith("dramatiq.worker.ConsumerThread") and record.msg in self._PER_RESTART)


def _is_message(value: object) -> TypeGuard[dramatiq.Message[Any] | MessageProxy]:
    return isinstance(value, dramatiq.Message | MessageProxy)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name``; configuration is read lazily, on first use."""
    return structlog.stdlib.get_logger(name)


def warn_unless_before_retries(broker: dramatiq.Broker, middleware: dramatiq.Middleware) -> bool:
    """Log a warning if ``middleware`` sits after a ``Retries`` middleware in the broker's list.

    After-hooks run in reverse list order: only a middleware listed before ``Retries`` sees its
    decision (``message.failed``) and still has the message's context while it re-enqueues.
    """
    names = [type(m) for m in broker.middleware]
    mine = next((i for i, m in enumerate(broker.middleware) if m is middleware), None)
    retries = next((i for i, m in enumerate(names) if issubclass(m, Retries)), None)
    if mine is None or retries is None or mine < retries:
        return True
    get_logger(__name__).warning(
        "middleware placed after Retries; its after-hooks run before the retry decision",
        middleware=type(middleware).__name__,
        order=[n.__name__ for n in names],
    )
    return False


def _attempt(message: Any) -> int:
    return int(message.options.get("retries") or 0) + 1


class LogContextMiddleware(dramatiq.Middleware):
    """Binds the hub event and message identity to the log context while an actor runs.

    Place it before ``Retries`` in the middleware list: after-hooks run in reverse order, so the
    retry and dead-letter log lines are still written with the context bound.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Warn about a middleware order that would lose the context of retry log lines."""
        warn_unless_before_retries(broker, self)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Start from an empty context (worker threads are reused) and bind this message's identity."""
        structlog.contextvars.clear_contextvars()
        event = message.options.get("hub_event") or {}
        context = {
            "event_id": event.get("id"),
            "event_type": event.get("type"),
            "event_source": event.get("source"),
            "actor": message.actor_name,
            "message_id": message.message_id,
            "attempt": _attempt(message),
        }
        structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        """Forget the message's context."""
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Forget the message's context."""
        structlog.contextvars.clear_contextvars()
