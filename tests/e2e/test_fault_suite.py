"""The fault suite: one deterministic programme (libs/emrsim, fixed seed) through the real services
twice, as `pmtct dev` runs them (embedded PostgreSQL, the dev broker, four uvicorn processes under
the runner's supervision): once clean, once with faults while it is posted — `kill -9` of each
service, of the enrolment relay mid-publish (its broker frozen, so records are sent and not yet
acknowledged), a broker freeze, a broker killed and started again (empty: the outboxes are
published again), an immediate PostgreSQL restart (a crash, recovered from the WAL), and poison
records on every consumed topic. The faulted end state must equal the clean one: the same events
accepted, the same events raised (no lost, no double), the same schedules, referrals, read model
and indicators, every consumer's inbox the same size; each poison record in the DLQ of every
consumer of its topic, with its reason.

The timers are paused while the programme is posted and started once it is in (PMTCT_TIMERS_PAUSED,
the backfill setting), in both runs: what they announce then depends on the facts only, not on how
fast the facts came (issue 19's "same facts, same figures" is another test's business).

`make test` runs it at CI size (16 mothers over 9 months, a 3 s freeze: about 4 minutes on two
cores shared with other jobs, 224 s measured); `make faults` runs a bigger programme with a 20 s
freeze (`PMTCT_FAULTS_CLIENTS`, `PMTCT_FAULTS_MONTHS`, `PMTCT_FAULTS_FREEZE_S`). Both runs
use one embedded PostgreSQL, each its own database. The table of faults is written to tests/artifacts/fault-suite.md.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from test_local_runner_faults import _wait

from emrsim.events import EmrEvent
from emrsim.posting import Endpoints
from emrsim.programme import ProgrammeParams, generate
from emrsim.rates import Rates
from emrsim.runner import post_programme, registry_facilities
from pmtct_events import ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC, TOPICS, dlq_topic
from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import EmbeddedPostgres, free_port
from pmtct_tools.testing import read_topic
from servicekit.bootstrap import with_admin_database
from servicekit.db import asyncpg_dsn
from servicekit.settings import SERVICES

pytestmark = pytest.mark.e2e

CLIENTS = int(os.environ.get("PMTCT_FAULTS_CLIENTS", "16"))
MONTHS = int(os.environ.get("PMTCT_FAULTS_MONTHS", "9"))
FREEZE_S = float(os.environ.get("PMTCT_FAULTS_FREEZE_S", "3"))
SEED = 19
PARTITIONS = 3
#: what consumes each topic (the services' ConsumerSpecs)
CONSUMERS = {
    "pmtct.enrolment.v1": {"followup", "referrals", "reporting"},
    "pmtct.followup.v1": {"enrolment", "referrals", "reporting"},
    "pmtct.referrals.v1": {"reporting"},
}
#: one key for both runs, so that the keyed hashes of record numbers are the same in both
HMAC_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
#: columns that say when the platform did something (the clock), not what it knows
VOLATILE = {
    "created_at", "updated_at", "recorded_at", "received_at", "processed_at", "published_at", "settle_until",
    "read_at", "changed_at", "applied_at", "last_event_at", "first_seen_at", "refreshed_at", "computed_at",
    "id", "seq", "batch_id", "version", "position", "at",
    # keyed over the platform's own id of the subject (servicekit.intake.fingerprint): random in each run
    "content_hash",
}  # fmt: skip
#: tables that are the runtime's bookkeeping, compared otherwise (outbox, inbox) or not at all
SKIPPED = {"outbox", "inbox", "alembic_version", "feed_counter"}


@dataclass
class Fault:
    name: str
    how: str
    started: float = 0.0
    recovered_s: float | None = None
    note: str = ""


@dataclass
class Run:
    answers: Counter[str] = field(default_factory=Counter)
    state: dict[str, Any] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    resent: int = 0
    republished: int = 0
    dead_letters: dict[str, set[str]] = field(default_factory=dict)
    #: the poison records sent: ce_id -> (topic, kind)
    poison: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)


def programme() -> list[EmrEvent]:
    rates = Rates(hiv_prevalence=0.5, mtct_early=0.15, duplicate=0.05, invalid=0.1, transfer_out=0.1)
    params = ProgrammeParams(
        registry_facilities(3), clients=CLIENTS, months=MONTHS, seed=SEED, anchor=date.today(), rates=rates
    )
    return generate(params)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL for both runs (each its own database); the faulted run restarts it."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("faults-pg") / "postgres").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1800)
def test_a_programme_under_faults_ends_in_the_state_of_a_clean_run(
    tmp_path: Path, artifacts: Path, postgres: EmbeddedPostgres
) -> None:
    events = programme()
    clean = run_programme(tmp_path / "clean", events, postgres, faulted=False)
    faulted = run_programme(tmp_path / "faulted", events, postgres, faulted=True)
    table = fault_table(clean, faulted)
    (artifacts / "fault-suite.md").write_text(table)
    print(table)

    assert faulted.answers == clean.answers, (faulted.answers, clean.answers)
    assert clean.answers["accepted"] > 100
    differing = {k for k in clean.state.keys() | faulted.state.keys() if clean.state.get(k) != faulted.state.get(k)}
    assert not differing, describe(differing, clean, faulted)
    assert clean.dead_letters == {}, f"a clean run dead-lettered something: {clean.dead_letters}"
    for ce_id, (topic, kind) in faulted.poison.items():
        assert dead_where_due(ce_id, topic, kind, faulted.dead_letters), (topic, kind, faulted.dead_letters.get(ce_id))
    assert set(faulted.dead_letters) == set(faulted.poison), "only the poison records are dead letters"
    assert all(f.recovered_s is not None for f in faulted.faults), [f.name for f in faulted.faults if not f.recovered_s]


# --- one run ---------------------------------------------------------------------------------------


def note(run: Run, started: float, what: str) -> None:
    line = f"[{time.monotonic() - started:6.1f} s] {what}"
    run.log.append(line)
    print(line, flush=True)


def run_programme(data_dir: Path, events: list[EmrEvent], postgres: EmbeddedPostgres, faulted: bool) -> Run:
    run = Run()
    started = time.monotonic()
    keys = data_dir / "keys"
    keys.mkdir(parents=True)
    (keys / "hmac.key").write_text(HMAC_KEY)
    platform = Platform(
        data_dir=data_dir,
        database_url=with_admin_database(postgres.admin_url, f"faults_{data_dir.name}"),
        ports={s: free_port() for s in SERVICES},
        broker_port=free_port(),
    )
    platform.extra_env = {
        "PMTCT_KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        "PMTCT_RELAY_POLL_INTERVAL_S": "0.2",
        "PMTCT_TIMERS_PAUSED": "true",
        "PMTCT_TIMER_SETTLE_S": "0",
        "PMTCT_TIMER_INTERVAL_S": "1",
        "PMTCT_CONSUMER_BACKOFF_MAX_S": "1",
        "PMTCT_LOG_LEVEL": "WARNING",
    }
    platform.check_ports()
    supervising = threading.Event()
    supervisor = threading.Thread(target=supervise, args=(platform, supervising, run), daemon=True)
    try:
        platform.start_infrastructure()
        platform.migrate()
        platform.create_topics()
        for service in SERVICES:
            platform.start_service(service)
        platform.wait_ready(timeout_s=120)
        note(run, started, f"{'faulted' if faulted else 'clean'} run: platform ready")
        supervising.set()
        supervisor.start()

        answered: dict[str, dict] = {}
        posting = threading.Thread(target=post, args=(platform, events, answered), daemon=True)
        posting.start()
        if faulted:
            inject_faults(platform, postgres, run, events, answered, posting)
        posting.join(600)
        assert not posting.is_alive(), "the programme was not posted in 10 minutes"
        note(run, started, f"posted ({len(answered)} answered)")
        run.resent = resend_unanswered(platform, events, answered)
        run.answers = Counter(answer(e, answered.get(e.body["event_id"], {})) for e in events)

        settle(platform, run)
        note(run, started, f"settled ({run.resent} sent again); timers on")
        # the programme is in: the timers act on every fact at once (each service started again so)
        platform.extra_env["PMTCT_TIMERS_PAUSED"] = "false"
        for service in ("followup", "referrals"):
            proc = platform.processes[service]
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        _wait(lambda: all(ready(platform, s) for s in SERVICES), "followup and referrals with their timers", 180)
        run.state = settle(platform, run)
        note(run, started, "settled with the timers")
        run.dead_letters = dead_letters(platform.bootstrap_servers)
        return run
    finally:
        supervising.clear()
        if supervisor.is_alive():
            supervisor.join(30)
        platform.stop()
        run.seconds = time.monotonic() - started


def supervise(platform: Platform, supervising: threading.Event, run: Run) -> None:
    """What `pmtct dev` does every second (a dead service or broker started again), twice as often."""
    while supervising.is_set():
        try:
            platform.supervise(say=lambda line, flush=True: run.log.append(line))
        except Exception as exc:  # noqa: BLE001  (a broker start that failed is tried again next round)
            run.log.append(f"supervision: {exc!r}")
        time.sleep(0.5)


def post(platform: Platform, events: list[EmrEvent], answered: dict[str, dict]) -> None:
    """The clinics' EMRs post the programme; a request that fails is tried again, as they do."""

    def keep(event: EmrEvent, result: dict) -> None:
        answered[event.body["event_id"]] = result

    endpoints = Endpoints(platform.url("enrolment"), platform.url("followup"))
    assert platform.issuer is not None
    asyncio.run(post_programme(events, endpoints, platform.issuer.mint, on_answered=keep, attempts=40))


def answer(event: EmrEvent, result: dict) -> str:
    status = str(result.get("status"))
    return status


def resend_unanswered(platform: Platform, events: list[EmrEvent], answered: dict[str, dict]) -> int:
    """An EMR sends again what got no answer, or an infant's event that came before its infant was
    known (its delivery delayed by a fault beyond the poster's minute of patience)."""
    resent = 0
    for _ in range(3):
        again = [e for e in events if not settled_answer(e, answered.get(e.body["event_id"]))]
        if not again:
            break
        resent += len(again)
        first = {e.body["event_id"]: answered.get(e.body["event_id"]) for e in again}
        post(platform, again, answered)
        for e in again:  # an accepted event whose answer was lost comes back as a duplicate of itself
            now = answered.get(e.body["event_id"], {})
            if (
                e.expect == "accepted"
                and now.get("status") == "duplicate"
                and not settled_answer(e, first[e.body["event_id"]])
            ):
                answered[e.body["event_id"]] = {**now, "status": "accepted"}
    return resent


def settled_answer(event: EmrEvent, result: dict | None) -> bool:
    if not result or result.get("status") not in ("accepted", "duplicate", "rejected"):
        return False
    unknown = result.get("status") == "rejected" and result.get("code") in ("unknown_infant", "infant_not_found")
    return not (unknown and event.expect != "rejected")


# --- the faults ------------------------------------------------------------------------------------


def inject_faults(
    platform: Platform,
    postgres: EmbeddedPostgres,
    run: Run,
    events: list[EmrEvent],
    answered: dict[str, dict],
    posting: threading.Thread,
) -> None:
    steps: list[tuple[str, str, Any]] = [
        ("kill -9 enrolment", "SIGKILL enrolment while EMRs post to it", lambda f: kill(platform, "enrolment", f)),
        (
            "kill -9 followup",
            "SIGKILL followup while it consumes and EMRs post",
            lambda f: kill(platform, "followup", f),
        ),
        (
            "kill -9 a relay mid-publish",
            "freeze the broker (SIGSTOP) until a relay has sent rows not yet acknowledged; SIGKILL its service; thaw",
            lambda f: relay_mid_publish(platform, f),
        ),
        (
            f"broker frozen {FREEZE_S:.0f} s",
            f"SIGSTOP the broker for {FREEZE_S:.0f} s, then SIGCONT",
            lambda f: freeze_broker(platform, f),
        ),
        ("kill -9 referrals", "SIGKILL referrals", lambda f: kill(platform, "referrals", f)),
        (
            "broker killed, started again",
            "SIGKILL the dev broker: the runner starts an empty one, creates the topics, publishes every outbox again",
            lambda f: kill_broker(platform, run, f),
        ),
        (
            "PostgreSQL restarted",
            "pg_ctl restart -m immediate (a crash: WAL recovery)",
            lambda f: restart_postgres(platform, postgres, f),
        ),
        ("kill -9 reporting", "SIGKILL reporting", lambda f: kill(platform, "reporting", f)),
        (
            "poison records",
            "on each topic: JSON nested 10,000 deep, a NaN, a body its contract refuses",
            lambda f: poison(platform, run, f),
        ),
    ]
    total = len(events)
    for i, (name, how, act) in enumerate(steps):
        # spread over the posting: the i-th fault once (i+1)/(n+1) of the programme is answered
        mark = total * (i + 1) / (len(steps) + 1)
        deadline = time.monotonic() + 300
        while len(answered) < mark and posting.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        fault = Fault(name, how, started=time.monotonic())
        run.faults.append(fault)
        act(fault)
        print(f"  {name}: recovered in {fault.recovered_s:.1f} s {fault.note}", flush=True)


def kill(platform: Platform, service: str, fault: Fault) -> None:
    proc = platform.processes[service]
    proc.send_signal(signal.SIGKILL)
    _wait(lambda: platform.processes[service] is not proc and ready(platform, service), f"{service} back", 180)
    fault.recovered_s = time.monotonic() - fault.started


def broker_process(platform: Platform) -> psutil.Process:
    assert platform.broker is not None and platform.broker.proc is not None
    return psutil.Process(platform.broker.proc.pid)


def relay_mid_publish(platform: Platform, fault: Fault) -> None:
    """The broker frozen, the EMRs keep posting: a service's relay takes the new outbox rows, sends
    them and waits for the acknowledgement; killed then, it never marks them published."""
    broker = broker_process(platform)
    broker.suspend()
    try:
        waiting: dict[str, int] = {}

        def some_waiting() -> bool:
            waiting.update({s: unpublished(platform, s) for s in ("enrolment", "followup")})
            return any(waiting.values())

        _wait(some_waiting, "outbox rows waiting for the frozen broker", 60)
        time.sleep(1.0)
        service = max(waiting, key=lambda s: waiting[s])
        fault.note = f"{service}'s relay killed with {unpublished(platform, service)} rows unacknowledged"
        proc = platform.processes[service]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        broker.resume()
    _wait(lambda: platform.processes[service] is not proc and ready(platform, service), f"{service} back", 180)
    fault.recovered_s = time.monotonic() - fault.started


def freeze_broker(platform: Platform, fault: Fault) -> None:
    broker = broker_process(platform)
    broker.suspend()
    time.sleep(FREEZE_S)
    broker.resume()
    _wait(lambda: all(ready(platform, s) for s in SERVICES), "every service ready after the freeze", 180)
    fault.recovered_s = time.monotonic() - fault.started


def kill_broker(platform: Platform, run: Run, fault: Fault) -> None:
    old = broker_process(platform).pid
    os.kill(old, signal.SIGKILL)

    def new_broker() -> bool:
        b = platform.broker
        return b is not None and b.proc is not None and b.proc.pid != old and b.proc.poll() is None

    _wait(new_broker, "a new dev broker", 120)
    _wait(lambda: any("published again" in line for line in run.log), "the outboxes published again", 120)
    _wait(lambda: all(ready(platform, s) for s in SERVICES), "every service ready on the new broker", 180)
    republished = [line for line in run.log if "published again" in line]
    run.republished = int(republished[-1].split(";")[-1].split()[0])
    fault.note = f"{run.republished} outbox rows published again"
    fault.recovered_s = time.monotonic() - fault.started


def restart_postgres(platform: Platform, postgres: EmbeddedPostgres, fault: Fault) -> None:
    postgres.restart("immediate")
    _wait(lambda: all(ready(platform, s) for s in SERVICES), "every service ready after PostgreSQL's restart", 180)
    fault.recovered_s = time.monotonic() - fault.started


def poison(platform: Platform, run: Run, fault: Fault) -> None:
    from aiokafka import AIOKafkaProducer

    deep = b'{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap_servers, acks="all")
        await producer.start()
        try:
            models = {t: await read_topic(platform.bootstrap_servers, t, until=bool, timeout_s=20) for t in TOPICS}
            for topic in TOPICS:
                # a real record's headers (its type, source, subject) over a value no consumer can apply
                model = (models[topic] or models[TOPICS[0]])[0]
                for kind, value in (("deep", deep), ("nan", b'{"copies_per_ml": NaN}'), ("contract", b"{}")):
                    ce_id = str(uuid.uuid4())
                    headers = [(k, ce_id.encode() if k == "ce_id" else v) for k, v in model.headers]
                    await (await producer.send(topic, key=model.key, value=value, headers=headers))
                    run.poison[ce_id] = (topic, kind)
        finally:
            await producer.stop()

    asyncio.run(send())

    def all_dead() -> bool:
        dead = dead_letters(platform.bootstrap_servers)
        return all(dead_where_due(ce_id, topic, kind, dead) for ce_id, (topic, kind) in run.poison.items())

    _wait(all_dead, "every poison record in the DLQ of every consumer of its topic", 180)
    fault.note = f"{len(run.poison)} records, each dead-lettered by every consumer of its topic"
    fault.recovered_s = time.monotonic() - fault.started


# --- reading the end state -------------------------------------------------------------------------


def ready(platform: Platform, service: str) -> bool:
    try:
        return httpx.get(platform.url(service) + "/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def unpublished(platform: Platform, schema: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(platform.database_admin_url))
        try:
            return await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
        finally:
            await conn.close()

    try:
        return asyncio.run(count())
    except (OSError, asyncpg.PostgresError):
        return 0


def settle(platform: Platform, run: Run, timeout_s: float = 300) -> dict[str, Any]:
    """The end state, once it stops changing: every outbox published, every consumer group caught
    up with every topic it reads (`behind`: a consumer started again may wait seconds for its group
    before it reads anything, and a state read twice meanwhile is the same), follow-up's timers
    (when on) with nothing left for today, every service ready, and the same state read twice 4 s
    apart."""
    deadline = time.monotonic() + timeout_s
    previous: dict[str, Any] | None = None
    while True:
        assert time.monotonic() < deadline, f"the platform did not settle in {timeout_s:.0f} s: {run.log[-5:]}"
        if all(ready(platform, s) for s in SERVICES) and not asyncio.run(behind(platform)):
            state = asyncio.run(read_state(platform))
            if state == previous and not state["backlog"]:
                return state
            previous = state
        time.sleep(4)


#: each service's consumer group and the topics it reads (services/<svc>/<svc>/main.py, ConsumerSpec)
CONSUMED = {
    "enrolment": [FOLLOWUP_TOPIC],
    "followup": [ENROLMENT_TOPIC],
    "referrals": [ENROLMENT_TOPIC, FOLLOWUP_TOPIC],
    "reporting": [ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC],
}


async def behind(platform: Platform) -> dict[str, int]:
    """Records each consumer group has not committed yet, by group (none: every group is at the end
    of every partition of its topics), and follow-up's subjects with timer work left for today."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[str, int] = {}
    for group, topics in CONSUMED.items():
        probe = AIOKafkaConsumer(bootstrap_servers=platform.bootstrap_servers, group_id=group, enable_auto_commit=False)
        await probe.start()
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            ends = await probe.end_offsets(tps)
            left = 0
            for tp in tps:
                left += max(ends[tp] - (await probe.committed(tp) or 0), 0)
        finally:
            await probe.stop()
        if left:
            out[group] = left
    if platform.extra_env.get("PMTCT_TIMERS_PAUSED") == "false":
        conn = await asyncpg.connect(asyncpg_dsn(platform.database_admin_url))
        try:
            timers = await conn.fetchval(
                "SELECT (SELECT count(*) FROM followup.mothers WHERE next_timer_on <= current_date)"
                " + (SELECT count(*) FROM followup.infants WHERE next_timer_on <= current_date)"
            )
        finally:
            await conn.close()
        if timers:
            out["followup timers"] = timers
    return out


async def read_state(platform: Platform) -> dict[str, Any]:
    """What each service knows, with the platform's own ids (random in each run) replaced by what
    names the subject in both runs: a woman by her facility and record number, an infant by her
    facility and the keyed hash of her record number, an EMR event by its event_id."""
    conn = await asyncpg.connect(asyncpg_dsn(platform.database_admin_url))
    try:
        names: dict[str, str] = {}
        for r in await conn.fetch(
            "SELECT DISTINCT ON (client_id) client_id::text AS id, facility_id || '/' || client_ref AS name"
            " FROM enrolment.registrations ORDER BY client_id, registered_at, facility_id"
        ):
            names[r["id"]] = "woman " + r["name"]
        for r in await conn.fetch(
            "SELECT infant_id::text AS id, facility_id || '/' || ref_hash AS name FROM enrolment.infants"
        ):
            names[r["id"]] = "infant " + r["name"]
        for r in await conn.fetch("SELECT event_id::text AS id FROM enrolment.client_events"):
            names[r["id"]] = r["id"]
        for r in await conn.fetch("SELECT event_id::text AS id FROM followup.infant_events"):
            names[r["id"]] = r["id"]
        cutoff = (await conn.fetchval("SELECT min(created_at) FROM enrolment.outbox")) or datetime.now(UTC)
        state: dict[str, Any] = {}
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_schema = ANY($1::text[]) ORDER BY 1, 2",
            list(SERVICES),
        )
        for t in tables:
            if t["table_name"] in SKIPPED:
                continue
            rows = await conn.fetch(f'SELECT to_jsonb(t)::text AS row FROM "{t["table_schema"]}"."{t["table_name"]}" t')
            state[f"{t['table_schema']}.{t['table_name']}"] = sorted(canonical(r["row"], names, cutoff) for r in rows)
        # an EMR event held until its subject was known (an infant's event before her delivery had
        # travelled: a fault delays it) and then accepted has the effects of one accepted at once,
        # compared in the tables of what it did; what is still held, expired or refused is compared
        for key in ("enrolment.intake_pending", "followup.intake_pending"):
            state[key] = [r for r in state.get(key, []) if '"status":"accepted"' not in r]
        # a subject referrals knows nothing about has no state row, or one with nothing in it
        state["referrals.subject_state"] = [
            r for r in state["referrals.subject_state"] if not ('"ended":null' in r and '"on_art_since":null' in r)
        ]
        # who of a facility's Mentor Mothers gets a new client under the least-loaded rule depends on
        # the order her enrolment is consumed among the others' (several partitions): compared are
        # who is in a caseload at each facility and how the load is spread, not which name has whom
        for key in ("enrolment.caseload", "followup.caseload", "reporting.programme_assignments"):
            state[key] = sorted(_without_staff(row) for row in state[key])
        loads = await conn.fetch(
            "SELECT facility_id, array_agg(n ORDER BY n) AS loads FROM"
            " (SELECT facility_id, staff_id, count(*) AS n FROM followup.caseload GROUP BY 1, 2) c GROUP BY 1"
        )
        state["followup: caseload sizes by facility"] = sorted((r["facility_id"], list(r["loads"])) for r in loads)
        for schema in SERVICES:
            if await conn.fetchval("SELECT to_regclass($1)", f"{schema}.outbox"):
                raised = await conn.fetch(f"SELECT event_type, count(*) AS n FROM {schema}.outbox GROUP BY 1")
                state[f"{schema}: events raised"] = sorted((r["event_type"], r["n"]) for r in raised)
            consumed = await conn.fetch(f"SELECT consumer, count(*) AS n FROM {schema}.inbox GROUP BY 1")
            state[f"{schema}: events consumed"] = sorted((r["consumer"], r["n"]) for r in consumed)
        state["backlog"] = sum(
            [await conn.fetchval(f"SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL") for s in SERVICES]
        )
    finally:
        await conn.close()
    state["indicators"] = indicators(platform)
    return state


def canonical(row: str, names: dict[str, str], cutoff: datetime) -> str:
    import orjson

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if value and all(is_uuid(k) for k in value):  # keyed by platform ids (a woman's pregnancies)
                return sorted(orjson.dumps(walk(v), option=orjson.OPT_SORT_KEYS).decode() for v in value.values())
            return {k: walk(v) for k, v in sorted(value.items()) if k not in VOLATILE}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            if is_uuid(value):
                return names.get(value, "(a platform id)")
            if value.startswith("\\x"):  # bytea: personal data encrypted with a random nonce
                return "(encrypted)"
            if len(value) > 19 and value[4] == "-" and value[10] == "T":
                try:
                    if datetime.fromisoformat(value) >= cutoff:
                        return "(the clock)"
                except ValueError:
                    pass
        return value

    return orjson.dumps(walk(orjson.loads(row)), option=orjson.OPT_SORT_KEYS).decode()


def _without_staff(row: str) -> str:
    import orjson

    staff = ("staff_id", "moved_from_staff_id")
    return orjson.dumps({k: v for k, v in orjson.loads(row).items() if k not in staff}).decode()


def is_uuid(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4


def indicators(platform: Platform) -> dict[str, Any]:
    assert platform.issuer is not None
    token = platform.issuer.mint("fault-suite", "reports:read", ["*"])
    out: dict[str, Any] = {}
    year = date.today().year
    for period in (str(year - 1), str(year)):
        reply = httpx.get(
            platform.url("reporting") + "/v1/indicators",
            params={"period": period, "country": "ZA"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        out[period] = reply.json() if reply.status_code == 200 else reply.status_code
    return out


def dead_where_due(ce_id: str, topic: str, kind: str, dead: dict[str, set[str]]) -> bool:
    """Each poison record is a dead letter of every consumer of its topic: one no consumer can
    decode, and one its contract refuses too (every consumer validates every record of a type the
    contract knows, whether it applies the type or not: servicekit.consumer.EventConsumer.decode)."""
    return dead.get(ce_id, set()) == CONSUMERS[topic]


def dead_letters(bootstrap: str) -> dict[str, set[str]]:
    """Each dead letter's ce_id -> the consumers that dead-lettered it."""

    async def read() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for topic in TOPICS:
            for r in await read_topic(bootstrap, dlq_topic(topic), timeout_s=3):
                headers = {k: v.decode() for k, v in r.headers}
                assert headers.get("dlq_error"), f"a dead letter without its reason: {headers}"
                out.setdefault(headers["ce_id"], set()).add(headers.get("dlq_consumer", "?"))
        return out

    return asyncio.run(read())


# --- the report --------------------------------------------------------------------------------------


def describe(differing: set[str], clean: Run, faulted: Run) -> str:
    lines = []
    for key in sorted(differing):
        a, b = clean.state.get(key), faulted.state.get(key)
        if isinstance(a, list) and isinstance(b, list):
            ca, cb = Counter(map(str, a)), Counter(map(str, b))
            lines.append(
                f"{key}: only clean {list((ca - cb).elements())[:3]}; only faulted {list((cb - ca).elements())[:3]}"
            )
        else:
            lines.append(f"{key}: clean {str(a)[:400]} / faulted {str(b)[:400]}")
    return "\n".join(lines)


def fault_table(clean: Run, faulted: Run) -> str:
    def raised(run: Run) -> Counter[str]:
        return Counter({f"{k}:{t}": n for k, v in run.state.items() if k.endswith("events raised") for t, n in v})

    lost = sum((raised(clean) - raised(faulted)).values())
    doubled = sum((raised(faulted) - raised(clean)).values())
    rows_clean = sum(len(v) for k, v in clean.state.items() if "." in k and isinstance(v, list))
    same = sum(1 for k in clean.state if clean.state[k] == faulted.state.get(k))
    lines = [
        f"# Fault suite ({CLIENTS} mothers, {MONTHS} months, seed {SEED}; {sum(clean.answers.values())} EMR events)",
        "",
        "Command: `make test` (this size by default) or `make faults` (a bigger programme, a 20 s freeze)",
        "",
        f"Clean run {clean.seconds:.0f} s; faulted run {faulted.seconds:.0f} s."
        f" EMR answers clean {dict(clean.answers)},"
        f" faulted {dict(faulted.answers)}; {faulted.resent} events sent again by the EMRs after the posting.",
        f"End state: {same} of {len(clean.state)} parts equal ({rows_clean} rows in the clean run);"
        f" events raised lost {lost}, raised twice {doubled}.",
        "",
        "| fault | how | lost | duplicated | recovered | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in faulted.faults:
        back = f"yes, {f.recovered_s:.1f} s" if f.recovered_s is not None else "no"
        lines.append(f"| {f.name} | {f.how} | {lost} | {doubled} | {back} | {f.note} |")
    lines += [
        "",
        "Lost and duplicated are counted over the whole faulted run (every fault in it) against the clean run.",
    ]
    return "\n".join(lines) + "\n"
