"""The runtime's edges, each test named for a failure seen when the platform was attacked: records that
stopped a partition, requests that were answered 500 (uncounted, logged as plain text with SQL
parameters), bodies that filled memory, a database outage answered 500 instead of 503."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import APIRouter, Query
from pydantic import SecretStr
from spine_support import SCHEMA, Pinged, event_type_on, publish, record_application, wait_for
from sqlalchemy import text

from pmtct_events import CloudEvent, dlq_topic
from pmtct_tools.testing import read_topic, unique
from servicekit import kafka, metrics
from servicekit.app import ConsumerSpec, SessionDep, create_app
from servicekit.consumer import EventConsumer

# --- consumed records --------------------------------------------------------------------------


async def test_a_record_nested_10000_deep_is_dead_lettered_and_the_partition_moves_on(spine) -> None:
    """It used to crash the followup, referrals and reporting consumers in an endless restart loop
    (the parser's RecursionError), never reaching the DLQ."""
    await kafka.ensure_topics(spine.settings, [spine.topic])
    producer = kafka.producer(spine.settings)
    await producer.start()
    try:
        key = "deep"
        await publish(spine, producer, [spine.event(key, 0)])
        deep = CloudEvent.from_event(spine.event(key, 1))
        nested = b'{"stream":"deep","seq":1,"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
        await (await producer.send(spine.topic, key=key.encode(), value=nested, headers=deep.headers()))
        nan = CloudEvent.from_event(spine.event(key, 2))
        await (
            await producer.send(
                spine.topic, key=key.encode(), value=b'{"stream":"deep","seq":NaN}', headers=nan.headers()
            )
        )
        await publish(spine, producer, [spine.event(key, 3)])

        consumer = EventConsumer(
            spine.settings,
            unique("spine-deep"),
            [spine.topic],
            {spine.Event: record_application},
            spine.sessions,
            producer,
        )
        task = asyncio.create_task(consumer.run())
        try:

            async def both_good_ones_applied() -> bool:
                return len(await spine.applied()) >= 2

            await wait_for(both_good_ones_applied, 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        dead = await read_topic(
            spine.settings.kafka_bootstrap_servers, dlq_topic(spine.topic), until=lambda rs: len(rs) >= 2, settle_s=0.5
        )
    finally:
        await producer.stop()

    assert sorted(seq for _, _, seq in await spine.applied()) == [0, 3]
    reasons = {dict(r.headers)["ce_id"].decode(): dict(r.headers)["dlq_error"].decode() for r in dead}
    assert "nested too deep" in reasons[str(deep.id)]
    assert "NaN is not a JSON number" in reasons[str(nan.id)]


async def test_a_record_too_large_is_dead_lettered_before_it_is_parsed(spine) -> None:
    settings = spine.settings.model_copy(update={"consumer_max_record_bytes": 2048})
    consumer = EventConsumer(
        settings, unique("spine-big"), [spine.topic], {spine.Event: record_application}, spine.sessions, None
    )  # type: ignore[arg-type]
    from aiokafka import ConsumerRecord

    ce = CloudEvent.from_event(spine.event("big", 0))
    value = json.dumps({"stream": "big", "seq": 0, "pad": "x" * 4096}).encode()
    record = ConsumerRecord(spine.topic, 0, 0, 0, 0, b"big", value, None, len(b"big"), len(value), ce.headers())
    decoded = consumer.decode(record)
    assert decoded.event is None
    assert "too large" in str(decoded.error)


def test_a_record_its_contract_refuses_is_a_dead_letter_of_every_consumer_not_only_of_those_that_apply_it(
    spine,
) -> None:
    """Consumers used to skip a type they do not apply without validating it: a ClientEnrolled its
    contract refuses was a dead letter of follow-up, referrals and reporting but passed by a
    consumer that does not apply it. Every consumer of a topic now validates every record of a type
    the contract knows, so they all treat the same record the same way; a valid one it does not
    apply, and a type no contract of this version knows (a newer producer's), are passed."""
    from aiokafka import ConsumerRecord

    from pmtct_events.enrolment import ClientEnrolled, HivStatus, StatusAtEnrolment

    consumer = EventConsumer(
        spine.settings, unique("spine-contract"), [spine.topic], {spine.Event: record_application}, spine.sessions, None
    )  # type: ignore[arg-type]
    enrolled = ClientEnrolled(
        facility_id="FAC-ZA-001",
        occurred_at="2026-01-05T09:00:00Z",
        client_id="8d0a4c6e-1f2b-4c3d-9e8f-7a6b5c4d3e2f",
        status_at_enrolment=StatusAtEnrolment.pregnant,
        age_years=25,
        hiv_status=HivStatus.negative,
        on_art=False,
    )
    ce = CloudEvent.from_event(enrolled)

    def record(value: bytes, headers=None) -> ConsumerRecord:
        headers = headers or ce.headers()
        return ConsumerRecord(spine.topic, 0, 0, 0, 0, b"k", value, None, 1, len(value), headers)

    refused = consumer.decode(record(b"{}"))
    valid = consumer.decode(record(CloudEvent.from_event(enrolled).value()))
    newer = [(k, b"org.pmtct.enrolment.SomethingNew.v1" if k == "ce_type" else v) for k, v in ce.headers()]
    unknown = consumer.decode(record(b"{}", newer))

    assert refused.event is None and "contract" in str(refused.error)
    assert (valid.error, valid.event, valid.handler) == (None, None, None)
    assert (unknown.error, unknown.event, unknown.handler) == (None, None, None)


async def test_a_database_restart_while_a_record_is_applied_costs_it_no_attempt_and_no_dead_letter(spine) -> None:
    """The fault suite's PostgreSQL restart dead-lettered records that were fine: their five
    attempts ran out while the database was "not yet accepting connections". A database or broker
    that cannot be reached is not the record's fault: the consumer waits for it; a handler error of
    the record's own still ends in the DLQ after its attempts."""
    import asyncpg
    from aiokafka import ConsumerRecord

    failures = {"left": 2 * spine.settings.consumer_max_attempts}

    async def applied_once_the_database_is_back(event, uow) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise asyncpg.CannotConnectNowError("the database system is not yet accepting connections")
        await record_application(event, uow)

    settings = spine.settings.model_copy(update={"consumer_backoff_initial_s": 0.01, "consumer_backoff_max_s": 0.02})
    consumer = EventConsumer(
        settings,
        unique("spine-restart"),
        [spine.topic],
        {spine.Event: applied_once_the_database_is_back},
        spine.sessions,
        None,  # type: ignore[arg-type]  (a dead letter would need a producer: there must be none)
    )
    ce = CloudEvent.from_event(spine.event("restart", 0))
    value = ce.value()
    record = ConsumerRecord(spine.topic, 0, 0, 0, 0, b"restart", value, None, 7, len(value), ce.headers())
    await consumer.process_one(consumer.decode(record))
    assert failures["left"] == 0
    assert [(key, seq) for _, key, seq in await spine.applied() if key == "restart"] == [("restart", 0)]


# --- a scratch service built by the same factory as the services ----------------------------------


def scratch_app(settings, topic: str, gate: asyncio.Event | None = None):
    event_type = event_type_on(topic)
    router = APIRouter()

    @router.get("/v1/rows")
    async def rows(session: SessionDep, offset: int = Query(0), name: str = Query("x")) -> dict:
        # no bounds on purpose: what the database refuses must come back as a 422, not a 500
        await session.execute(
            text("SELECT CAST(:name AS text) LIMIT 1 OFFSET :offset"), {"offset": offset, "name": name}
        )
        return {"ok": True}

    @router.get("/v1/boom")
    async def boom(session: SessionDep, secret: str = Query()) -> dict:
        await session.execute(text("SELECT * FROM no_such_table WHERE name = :secret"), {"secret": secret})
        return {}

    @router.post("/v1/echo")
    async def echo(body: dict) -> dict:
        return {"keys": len(body)}

    async def stuck(event: Pinged, uow) -> None:
        assert gate is not None
        await gate.wait()

    consumers = (
        [ConsumerSpec(name=unique(f"{SCHEMA}-stuck"), topics=[topic], handlers={event_type: stuck})] if gate else []
    )
    return create_app(settings, title="scratch", description="hardening probe", routers=[router], consumers=consumers)


@pytest.fixture
def probe_settings(spine):
    return spine.settings.model_copy(update={"http_max_body_bytes": 4096, "log_json": True})


async def test_a_consumer_stuck_on_a_record_is_not_ready_and_its_lag_shows(spine) -> None:
    """/readyz said 200 and the lag read 0 while a consumer was stuck on one record."""
    settings = spine.settings.model_copy(update={"consumer_stall_s": 3.0})
    gate = asyncio.Event()
    app = scratch_app(settings, spine.topic, gate)
    await kafka.ensure_topics(settings, [spine.topic])
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        rt = app.state.runtime

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        async def assigned() -> bool:
            c = rt.consumers[0]._consumer
            return c is not None and bool(c.assignment())

        await wait_for(assigned, 60)
        await wait_for(ready, 60)
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await publish(spine, producer, [spine.event("stuck", 0)])
        finally:
            await producer.stop()

        async def not_ready() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await wait_for(not_ready, 60)
        body = (await client.get("/readyz")).json()
        assert body["checks"]["consumers"].startswith("not progressing")
        name = rt.consumers[0].name

        def lag() -> float:
            return sum(
                s.value
                for m in metrics.CONSUMER_LAG.collect()
                for s in m.samples
                if s.labels["consumer"] == name and s.labels["topic"] == spine.topic
            )

        async def lag_shows() -> bool:
            return lag() >= 1

        await wait_for(lag_shows, 30)
        gate.set()  # unstuck: it applies the record, commits, and is ready again
        await wait_for(ready, 60)


async def test_a_database_outage_is_503_with_retry_after_and_counted(probe_settings) -> None:
    down = probe_settings.model_copy(update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/pmtct"})
    app = scratch_app(down, unique("pmtct.hardening"))
    before = _count(down.service_name, "/v1/rows", "503")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        r = await client.get("/v1/rows")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == str(down.http_retry_after_s)
    assert r.json()["code"] == "unavailable"
    assert _count(down.service_name, "/v1/rows", "503") == before + 1


async def test_an_offset_beyond_2_63_and_a_nul_byte_are_422_not_500(probe_settings) -> None:
    app = scratch_app(probe_settings, unique("pmtct.hardening"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        huge = await client.get("/v1/rows", params={"offset": str(2**63 + 1)})
        nul = await client.get("/v1/rows", params={"name": "FAC\x00ZA"})
        fine = await client.get("/v1/rows", params={"offset": "3", "name": "FAC-ZA-001"})
    assert (huge.status_code, huge.json()["code"]) == (422, "invalid_value")
    assert (nul.status_code, nul.json()["code"]) == (422, "invalid_value")
    assert fine.status_code == 200


async def test_an_unhandled_error_is_a_counted_500_logged_as_json_without_sql_parameters(
    probe_settings, capsys
) -> None:
    """500s passed by the request metric (the 5xx alert could not fire) and their tracebacks went to
    the logs as plain text with the statement's parameters (personal data could follow)."""
    app = scratch_app(probe_settings, unique("pmtct.hardening"))
    secret = "Nomvula Dlamini 0821234567"
    before = _count(probe_settings.service_name, "/v1/boom", "500")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        capsys.readouterr()
        r = await client.get("/v1/boom", params={"secret": secret})
        try:
            raise RuntimeError("as uvicorn reports an error")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        err = capsys.readouterr().err
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"
    assert _count(probe_settings.service_name, "/v1/boom", "500") == before + 1
    lines = [line for line in err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    [logged] = [r for r in records if r["msg"].startswith("unhandled error on GET /v1/boom")]
    assert "UndefinedTableError" in logged["exc"] and "[SQL: SELECT * FROM no_such_table" in logged["exc"]
    assert "Nomvula" not in err and "0821234567" not in err
    assert any(r["logger"] == "uvicorn.error" and "RuntimeError" in r.get("exc", "") for r in records)


async def test_a_body_over_the_limit_is_413_before_it_is_read(probe_settings) -> None:
    """16 concurrent 10 MB bodies without a token took enrolment from 112 to 587 MB."""
    app = scratch_app(probe_settings, unique("pmtct.hardening"))

    async def chunks():
        for _ in range(10):
            yield b" " * 1024

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        declared = await client.post(
            "/v1/echo", content=b"{" + b" " * 10_000 + b"}", headers={"content-type": "application/json"}
        )
        streamed = await client.post("/v1/echo", content=chunks(), headers={"content-type": "application/json"})
        small = await client.post("/v1/echo", json={"a": 1})
    for r in (declared, streamed):
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "payload_too_large"
    assert small.json() == {"keys": 1}


async def test_openapi_declares_every_error_as_problem_json(probe_settings) -> None:
    app = scratch_app(probe_settings, unique("pmtct.hardening"))
    schema = app.openapi()
    echo = schema["paths"]["/v1/echo"]["post"]["responses"]
    assert {"400", "404", "409", "413", "415", "422", "503"} <= set(echo)
    for status in ("413", "422", "503"):
        assert list(echo[status]["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}


def _count(service: str, route: str, status: str) -> float:
    for m in metrics.HTTP_LATENCY.collect():
        for s in m.samples:
            if (
                s.name.endswith("_count")
                and s.labels.get("service") == service
                and s.labels.get("route") == route
                and s.labels.get("status") == status
            ):
                return s.value
    return 0.0


async def test_the_admin_scope_does_not_imply_reading_personal_data() -> None:
    from servicekit.auth import Principal, require
    from servicekit.problems import Problem

    admin = Principal("operator", frozenset({"admin"}), frozenset({"*"}))
    assert await require("referrals:read").dependency(admin) is admin  # type: ignore[attr-defined]
    with pytest.raises(Problem) as refused:
        await require("clients:read").dependency(admin)  # type: ignore[attr-defined]
    assert refused.value.status == 403 and refused.value.code == "insufficient_scope"
    granted = Principal("auditor", frozenset({"admin", "clients:read"}), frozenset({"*"}))
    assert await require("clients:read").dependency(granted) is granted  # type: ignore[attr-defined]


def test_a_300_character_facility_id_or_a_date_in_9999_is_refused_by_every_contract() -> None:
    """Some consumers applied them and another dead-lettered them: the contract now refuses them,
    so every consumer treats the same record the same way (to its dead-letter topic)."""
    from pydantic import ValidationError

    from pmtct_events.enrolment import ClientEnrolled
    from pmtct_events.followup import InfantVisitRecorded

    visit = {
        "facility_id": "FAC-ZA-001",
        "occurred_at": "2026-01-05T09:00:00Z",
        "infant_id": "0b7c1d9e-1111-4c3a-9e8f-0a1b2c3d4e5f",
        "client_id": "0b7c1d9e-2222-4c3a-9e8f-0a1b2c3d4e5f",
    }
    InfantVisitRecorded.model_validate(visit)
    for bad in ({"facility_id": "F" * 300}, {"occurred_at": "9999-12-30T09:00:00Z"}, {"facility_id": "FAC\x00"}):
        with pytest.raises(ValidationError):
            InfantVisitRecorded.model_validate({**visit, **bad})
    # a date inside the data, not only the envelope's occurred_at
    fields = ClientEnrolled.model_fields
    assert "edd" in fields
    enrolled = {k: v for k, v in visit.items() if k != "infant_id"}
    with pytest.raises(ValidationError, match="between the years 1900 and 2999"):
        ClientEnrolled.model_validate({**enrolled, "edd": "9999-12-30"})


async def test_metrics_behind_a_token_answer_only_with_it(probe_settings) -> None:
    """/metrics was public under `make run` (no gateway in front of the services there)."""
    guarded = probe_settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    app = scratch_app(guarded, unique("pmtct.hardening"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scratch") as client,
    ):
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
        scraped = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert wrong.status_code == 401
    assert scraped.status_code == 200 and "pmtct_http_request_seconds" in scraped.text


def test_no_request_line_is_logged_so_no_query_string_reaches_the_logs() -> None:
    """A request line carries its query string: an EMR record number in an audited client lookup
    (`GET /v1/clients?client_ref=…`), a dashboard sign-in token (`/?token=…`, which the dashboard no
    longer reads). uvicorn writes access lines only while its access logger has a handler, its own or
    the root's through propagation."""
    import logging

    from servicekit.telemetry import setup_logging

    setup_logging()
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers(), "uvicorn's own messages still reach the JSON log"
