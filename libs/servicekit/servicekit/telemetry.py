"""OpenTelemetry and JSON logs: one trace from an EMR's POST through the outbox and Kafka
headers to every consumer's handler span."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install a tracer provider once per process. Spans go to the OTLP endpoint when
    `OTEL_EXPORTER_OTLP_ENDPOINT` is set; a test may install its own provider first."""
    global _configured
    if _configured or isinstance(trace.get_tracer_provider(), TracerProvider):
        _configured = True
        return
    resource = Resource.create({"service.name": f"pmtct-{service_name}"})
    exporting = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if exporting or os.environ.get("OTEL_TRACES_SAMPLER"):
        # the sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based, all)
        provider = TracerProvider(resource=resource)
        if exporting:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        # Nowhere to send spans: record none (a recorded span per consumed event was a tenth of a
        # consumer's time). Spans still carry trace ids, so traceparent still travels through the
        # outbox and Kafka headers and logs still show trace_id.
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer(name: str = "pmtct") -> trace.Tracer:
    """Looked up once per name: it runs for every consumed event. Safe to keep even if obtained
    before a provider is installed, because OpenTelemetry then hands out a proxy that follows it."""
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from(headers: Mapping[str, str]):
    return propagate.extract(dict(headers))


#: exceptions whose messages may quote the values of a statement or a model (a name, a phone
#: number, an EMR record number): their message is withheld from logs, the SQL text is kept
_VALUE_QUOTING_MODULES = ("asyncpg", "sqlalchemy", "pydantic", "pydantic_core")
_SQL_TEXT = re.compile(r"\[SQL: .*?\]", re.S)


def _withhold_values(te: traceback.TracebackException) -> None:
    seen: set[int] = set()
    stack = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        module = getattr(t.exc_type, "__module__", "") or ""
        if module.split(".")[0] in _VALUE_QUOTING_MODULES:
            sql = _SQL_TEXT.search(t._str or "")  # type: ignore[attr-defined]
            t._str = "(message withheld from the log: it may quote values)" + (  # type: ignore[attr-defined]
                f" {sql.group(0)}" if sql else ""
            )
        stack.extend(x for x in (t.__cause__, t.__context__) if x is not None)


def format_exception(exc_info) -> str:
    """A traceback as text, the messages of database and validation errors withheld (see above)."""
    te = traceback.TracebackException(*exc_info)
    _withhold_values(te)
    return "".join(te.format()).rstrip()


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is the `exc` field (never plain text lines)."""

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return format_exception(ei)

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str = "INFO", as_json: bool = True) -> None:
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO, query string (ids, a token) included
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn configures its own plain-text handlers before the app starts: its messages (and any
    # traceback it prints) go through ours instead, so a service's log is JSON from end to end
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # No access lines: a request line carries its query string (an EMR record number in a client
    # lookup, a dashboard sign-in token). uvicorn writes them only while "uvicorn.access" has a
    # handler (`hasHandlers()`, which counts the root's when it propagates), so it gets none; the
    # request metric (servicekit.guard) counts every answer by route and status instead.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
