"""What every HTTP request of every service passes through, outermost (`create_app` installs it):

- **A body size limit** (`PMTCT_HTTP_MAX_BODY_BYTES`): a declared `Content-Length` above it is
  refused before anything reads the body, and a streamed body is cut off where it passes the
  limit, both 413 `payload_too_large`, so ten concurrent 10 MB bodies never sit in memory.
- **Never a bare 500**: an exception no handler answered is classified, once, here:
  a database or broker that cannot be reached is 503 `unavailable` with `Retry-After` (the request
  is safe to send again); a value the database refuses as data (SQLSTATE class 22: out of range,
  a NUL byte in text) is 422 `invalid_value`; anything else is 500 `internal_error`, logged as JSON
  with its traceback (`servicekit.telemetry`), never with SQL parameters (`db.create_engine` hides
  them) or the request body.
- **Every answer counted** in `pmtct_http_request_seconds{service, method, route, status}`, the
  500s and 503s included (they used to pass by the metric, so a 5xx alert could not fire).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .problems import Problem, problem_response

log = logging.getLogger(__name__)

#: SQLSTATE classes and codes that mean "the database is not there right now", not "this request is wrong":
#: 08 connection exception, 53 insufficient resources, 57P0x shutdown / cannot connect now
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # a SQLAlchemy error holds the driver's as `orig` (also its cause, when raised from it)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            current = orig
        else:
            current = current.__cause__ or current.__context__


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) else None


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (asyncpg's `sqlstate`, psycopg's `pgcode`), wherever it sits
    in the chain (SQLAlchemy's error, its `orig`, the driver's); None for any other error."""
    return next((state for e in _chain(exc) if (state := _sqlstate(e)) is not None), None)


def failure_kind(exc: BaseException) -> str:
    """What went wrong, fit for a log line: the exception's type and, for a database error, the
    SQLSTATE and the driver's error type (`IntegrityError (SQLSTATE 23505 UniqueViolationError)`).
    Never its message: a database error's carries the statement's parameters, personal data."""
    # the driver's own error is the deepest of the chain that carries a SQLSTATE
    database = [(state, e) for e in _chain(exc) if (state := _sqlstate(e)) is not None]
    if database:
        state, driver = database[-1]
        return f"{type(exc).__name__} (SQLSTATE {state} {type(driver).__name__})"
    return type(exc).__name__


def safe_reason(exc: BaseException) -> str:
    """Why a record could not be applied, fit for a dead letter's `dlq_error` header (on Kafka,
    read by whoever operates the DLQ): a database error as `failure_kind` says it (its message
    carries the statement's parameters); a validation error by field and rule, without the values
    it was given; anything else by its type and message (the platform's own wording)."""
    from pydantic import ValidationError

    if sqlstate(exc) is not None:
        return failure_kind(exc)
    for e in _chain(exc):
        if isinstance(e, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(record)'}: {error['msg']}"
                for error in e.errors(include_url=False, include_input=False, include_context=False)
            )
            return f"{e.error_count()} validation error(s) for {e.title}: {problems}"
    return f"{type(exc).__name__}: {exc}"


def is_unavailable(exc: BaseException) -> bool:
    """A dependency that cannot be reached (database down or restarting, a dropped connection, a
    pool or broker timeout): the request itself may well be fine, so it is worth sending again."""
    import asyncpg
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
    from sqlalchemy import exc as sa

    for e in _chain(exc):
        if isinstance(e, OSError | socket.gaierror | TimeoutError | KafkaConnectionError | KafkaTimeoutError):
            return True
        if isinstance(e, asyncpg.PostgresConnectionError | asyncpg.InterfaceError) and not isinstance(
            e, asyncpg.DataError
        ):
            return True
        if isinstance(e, sa.TimeoutError | sa.DisconnectionError):
            return True
        if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
            return True
        state = _sqlstate(e)
        if state is not None and state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
            return True
    return False


def is_data_error(exc: BaseException) -> bool:
    """A value the database cannot take (SQLSTATE class 22, or asyncpg refusing to encode it):
    the request carried it, so it is the request that is wrong."""
    import asyncpg

    for e in _chain(exc):
        if isinstance(e, asyncpg.DataError):
            return True
        state = _sqlstate(e)
        if state is not None and state.startswith("22"):
            return True
    return False


class BodyTooLarge(HTTPException):
    """A streamed body went past the limit while it was read."""


class Guard:
    """The outermost middleware of a service (see the module docstring)."""

    def __init__(self, app: ASGIApp, service: str, max_body_bytes: int, retry_after_s: int, owner: Any = None) -> None:
        self.app = app
        #: the FastAPI app: its `Problem` handler renders what the guard answers, so a service that
        #: renders errors its own way on some paths (referrals: OperationOutcome under /fhir) does here too
        self.owner = owner
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def observed_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # raised into whatever reads the body: FastAPI passes an HTTPException on to the
                    # problem+json handlers (servicekit.problems); if it escapes, it is caught below
                    raise BodyTooLarge(413, f"The request body is larger than {self.max_body_bytes} bytes.")
            return message

        try:
            refusal = self._refuse_declared_length(scope)
            if refusal is not None:
                await (await self._render(scope, refusal))(scope, receive, observed_send)
                return
            await self.app(scope, limited_receive, observed_send)
        except Exception as exc:
            problem = self._too_large() if isinstance(exc, BodyTooLarge) else self._answer(scope, exc)
            if response_started:
                return  # too late to answer; the client sees the connection end
            await (await self._render(scope, problem))(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            metrics.HTTP_LATENCY.labels(
                self.service, scope.get("method", "?"), getattr(route, "path", "unmatched"), str(status)
            ).observe(time.perf_counter() - started)

    async def _render(self, scope: Scope, problem: Problem) -> Response:
        handler = getattr(self.owner, "exception_handlers", {}).get(Problem)
        if handler is not None:
            try:
                return await handler(Request(scope), problem)
            except Exception:
                log.exception("the Problem handler failed; answering plain problem+json")
        return problem_response(
            problem.status, problem.code, problem.detail, problem.title, headers=problem.headers, **problem.extra
        )

    def _too_large(self) -> Problem:
        return Problem(
            413,
            "payload_too_large",
            f"The request body is larger than {self.max_body_bytes} bytes; send less (split a batch).",
        )

    def _refuse_declared_length(self, scope: Scope) -> Problem | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return Problem(400, "bad_request", "Content-Length is not a number.")
                if length > self.max_body_bytes:
                    return self._too_large()
        return None

    def _answer(self, scope: Scope, exc: Exception) -> Problem:
        where = f"{scope.get('method')} {scope.get('path')}"
        if is_unavailable(exc):
            log.warning("%s: a dependency is unavailable: %s", where, type(exc).__name__)
            problem = Problem(
                503,
                "unavailable",
                "A service this one depends on (its database or broker) is not reachable; send it again later.",
            )
            problem.headers = {"Retry-After": str(self.retry_after_s)}
            return problem
        if is_data_error(exc):
            log.info("%s: a value the database cannot store: %s", where, type(exc).__name__)
            return Problem(
                422, "invalid_value", "A value in the request is outside what can be stored (too large, or a NUL byte)."
            )
        log.error("unhandled error on %s", where, exc_info=exc)
        return Problem(500, "internal_error", "An unexpected error occurred; it has been logged.")
