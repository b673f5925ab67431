"""The app factory every service uses: settings, database, producer, relay, consumers,
health, metrics, problem+json errors, auth and tracing, with one lifespan."""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pmtct_events import Event

from . import facilities, kafka, metrics, problems, uow
from .auth import TokenVerifier
from .consumer import EventConsumer, Handler, Preload
from .db import create_engine, sessionmaker
from .guard import Guard
from .relay import OutboxRelay
from .settings import ServiceSettings
from .telemetry import setup_logging, setup_tracing
from .uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group of this service: its name, the topics it reads and its handlers."""

    name: str
    topics: Sequence[str]
    handlers: dict[type[Event], Handler]
    #: optional: loads, once per unit of work, the aggregates its handlers will ask for
    preload: Preload | None = None


S = TypeVar("S", bound=ServiceSettings)


@dataclass
class Runtime(Generic[S]):
    """What a running service is made of; `S` is the service's own settings class, so code that
    takes `Runtime[Settings]` reads its fields typed (each service declares its `RuntimeDep`)."""

    settings: S
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    registry: facilities.FacilityRegistry
    relay: OutboxRelay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    #: the service's unit of work (its repositories); every write goes through one (`begin`)
    unit_of_work: Callable[[AsyncSession], UnitOfWork] = UnitOfWork

    def begin(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """`async with rt.begin() as uow: ...; await uow.commit()`: a unit of work in a new transaction."""
        return uow.begin(self.sessions, self.unit_of_work)


def runtime(request: Request) -> Runtime[Any]:
    return request.app.state.runtime


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.sessions() as s:
        yield s


#: a service's endpoints declare their own, typed with their settings:
#: `RuntimeDep = Annotated[Runtime[Settings], Depends(runtime)]`
SessionDep = Annotated[AsyncSession, Depends(session)]


async def _start_producer(settings: ServiceSettings, deadline_s: float = 60) -> AIOKafkaProducer:
    started = time.monotonic()
    while True:
        producer = kafka.producer(settings)
        try:
            await producer.start()
            return producer
        except Exception as exc:
            await producer.stop()
            if time.monotonic() - started > deadline_s:
                raise
            log.warning("broker not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1)


#: how long each step of a service's shutdown may take before it is abandoned
SHUTDOWN_STEP_S = 5.0


async def _within(step: Awaitable[Any], what: str) -> None:
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning("shutdown: %s did not stop within %.0f s; abandoned", what, SHUTDOWN_STEP_S)
    except Exception as exc:
        log.warning("shutdown: %s failed to stop: %r", what, exc)


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop alive: restart it with backoff if it crashes."""
    delay = 1.0
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.0fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    publishes: Sequence[str] = (),
    consumers: Sequence[ConsumerSpec] = (),
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
    background: Sequence[tuple[str, Callable[[Runtime], Awaitable[None]]]] = (),
    unit_of_work: Callable[[AsyncSession], UnitOfWork] = UnitOfWork,
) -> FastAPI:
    """Build a service. `publishes` are the topics its outbox writes to; `background` are extra
    loops (e.g. durable timers) run beside the relay and consumers, restarted if they crash."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level, settings.log_json)
        setup_tracing(settings.service_name)
        engine = create_engine(settings.database_url, settings.schema, settings.db_pool_size)
        producer = await _start_producer(settings)
        rt = Runtime(
            settings=settings,
            engine=engine,
            sessions=sessionmaker(engine),
            producer=producer,
            registry=facilities.load(settings.facilities_path),
            unit_of_work=unit_of_work,
        )
        app.state.runtime = rt
        if settings.auth_jwks_url:
            app.state.token_verifier = TokenVerifier(
                settings.auth_jwks_url, settings.auth_issuer, settings.auth_audience, settings.auth_jwks_cache_seconds
            )
        topics = list(dict.fromkeys([*publishes, *(t for c in consumers for t in c.topics)]))
        await kafka.ensure_topics(settings, topics)
        if on_startup is not None:
            await on_startup(rt)
        # What start-up built (modules, the app, settings and presets, the registry: ~140,000 objects)
        # lives as long as the process: frozen out of the cyclic collector, whose full passes would
        # otherwise walk all of it again and again under load (a loop allocating as a consumer batch
        # does, with the services imported: 3.6 CPU s with it in the collector's view, 1.1 s frozen).
        gc.collect()
        gc.freeze()
        if publishes:
            rt.relay = OutboxRelay(settings, producer)
            rt.tasks["relay"] = asyncio.create_task(_supervise("outbox relay", rt.relay.run))
        for spec in consumers:
            c = EventConsumer(
                settings, spec.name, spec.topics, spec.handlers, rt.sessions, producer, spec.preload, unit_of_work
            )
            rt.consumers.append(c)
            rt.tasks[f"consumer:{spec.name}"] = asyncio.create_task(_supervise(f"consumer {spec.name}", c.run))
        for name, loop in background:
            rt.tasks[name] = asyncio.create_task(_supervise(name, functools.partial(loop, rt)))
        log.info("%s started", settings.service_name)
        try:
            yield
        finally:
            # bounded: with the broker gone too (a runner killed with everything it started), a
            # consumer's leave-group or the producer's flush would wait for it for a long time
            for task in rt.tasks.values():
                task.cancel()
            await _within(asyncio.gather(*rt.tasks.values(), return_exceptions=True), "background loops")
            await _within(producer.stop(), "the producer")
            await _within(engine.dispose(), "the database pool")
            gc.unfreeze()  # collectable again (a process that starts several apps, as the tests do)
            log.info("%s stopped", settings.service_name)

    # now, as uvicorn imports the app, not only in the lifespan: uvicorn's first lines ("Started
    # server process", "Waiting for application startup.") come before the lifespan and were plain
    # text in a JSON log; the lifespan sets it again for a server that configured logging after it
    setup_logging(settings.log_level, settings.log_json)
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(
        Guard,
        service=settings.service_name,
        max_body_bytes=settings.http_max_body_bytes,
        retry_after_s=settings.http_retry_after_s,
        owner=app,
    )

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database, broker and background loops")
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        checks: dict[str, Any] = {}
        if rt is None:
            return problems.problem_response(503, "starting", "The service is starting.")
        try:
            async with rt.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"failed: {type(exc).__name__}"
        try:
            await asyncio.wait_for(rt.producer.client.fetch_all_metadata(), 3)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"failed: {type(exc).__name__}"
        dead = [name for name, t in rt.tasks.items() if t.done()]
        checks["background"] = "ok" if not dead else f"stopped: {', '.join(dead)}"
        stuck = [c.name for c in rt.consumers if c.stalled()]
        checks["consumers"] = "ok" if not stuck else f"not progressing: {', '.join(stuck)}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ready", "service": settings.service_name, "checks": checks})
        return problems.problem_response(
            503, "not_ready", "A dependency is not ready.", checks=checks, service=settings.service_name
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        responses={401: {"description": "`unauthorized`: PMTCT_METRICS_TOKEN is set and was not given"}},
    )
    async def prometheus(request: Request) -> Response:
        if settings.metrics_token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), settings.metrics_token.get_secret_value().encode()):
                return problems.problem_response(
                    401, "unauthorized", "Metrics need the scrape token: Authorization: Bearer <PMTCT_METRICS_TOKEN>."
                )
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    for router in routers:
        app.include_router(router)
    problems.declare(app)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app
