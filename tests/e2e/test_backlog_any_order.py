"""A backlog in any order ends in the same state (issue 17, "any order"): one deterministic programme
of 512 EMR events (the issue asks for a 500-event backlog; libs/emrsim, 72 women, fixed seed: mothers
enrolled, ANC visits, HIV tests, ART, viral loads, deliveries, infant prophylaxis, tests, feeding and
outcomes, at three facilities, with transfers between them) posted three times into one platform —
the four services as real processes — through the front door (enrolment's `POST /v1/events`, mother
and infant events mixed, batches of 50):

- **in order**: by when each event happened;
- **reversed**: the last event first (every infant event before its delivery, every test before
  the enrolment it belongs to);
- **shuffled**: in a seeded random order.

Each copy has facilities of its own (a registry of nine facilities of one country, three per copy,
so the same clinical preset applies) and its own event ids and national ids, so the copies do not
meet; record numbers stay (they are scoped by facility). The durable timers are paused while the
copies are posted (`PMTCT_TIMERS_PAUSED`, the backlog setting), then started once for all three: so
what they announce is decided on the same day for every copy, from the facts only.

Compared per copy, with the platform's ids named by what names them in every copy (a woman by her
first facility's place in its copy and her record number, an infant by her facility's place and
her record number, an EMR event by its id in the programme):

- every held event was applied: none is left `pending` or `expired` in either service;
- the answers: each event accepted (or a duplicate of one), none rejected;
- schedules: follow-up's schedule items of every woman and infant (facility, kind, test, window,
  overdue day, status, the day it was met, why it was cancelled, its label): an item no view of
  the facts announced and the facts no longer call for is not kept, in any order;
- referrals: every referral (subject, service, reason, from/to facility, due day, origin, status,
  outcome, need day);
- indicators: reporting's figures (numerator, denominator) of every indicator of both data sets
  (`mer`, `programme`), per facility of the copy and per year of the programme;
- infants followed: in follow-up or not, high risk and why.

They must be equal for the three copies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from emrsim.events import EmrEvent
from emrsim.programme import ProgrammeParams, generate
from emrsim.rates import Rates
from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import TansuBroker, free_port
from pmtct_tools.testing import Infra, TestIssuer
from servicekit import bootstrap
from servicekit.db import asyncpg_dsn
from servicekit.identifiers import ref_hash
from servicekit.settings import SERVICES

pytestmark = pytest.mark.e2e

SEED = 17
CLIENTS = 72
BATCH = 50
ORDERS = ("in order", "reversed", "shuffled")
#: three facilities per copy, of one country (one clinical preset for all)
FACILITIES = {order: tuple(f"FAC-ZA-{100 * (n + 1) + i}" for i in range(1, 4)) for n, order in enumerate(ORDERS)}
HMAC_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
PII_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def programme(facilities: tuple[str, ...]) -> list[EmrEvent]:
    """The programme at these facilities, without data-entry errors or resends: what a backlog in
    any order must end the same with (an invalid event may be refused in one order and not in
    another: an event after a death is refused only once the death is in)."""
    rates = Rates(hiv_prevalence=0.5, mtct_early=0.15, duplicate=0.0, invalid=0.0, transfer_out=0.15, twins=0.05)
    params = ProgrammeParams(facilities, clients=CLIENTS, months=14, seed=SEED, anchor=date.today(), rates=rates)
    return generate(params)


@dataclass
class Copy:
    order: str
    facilities: tuple[str, ...]
    events: list[EmrEvent]
    #: this copy's event id -> the programme's
    event_ids: dict[str, str]
    answers: dict[str, dict[str, Any]]


def rekeyed(order: str) -> Copy:
    """The programme under this copy's facilities, with event ids and national ids of its own."""
    facilities = FACILITIES[order]
    base = programme(FACILITIES[ORDERS[0]])
    mine = programme(facilities)
    assert [e.body["type"] for e in mine] == [e.body["type"] for e in base], "the same programme"
    ids: dict[str, str] = {}
    events: list[EmrEvent] = []
    for original, e in zip(base, mine, strict=True):
        body = dict(e.body)
        body["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"any-order/{order}/{original.body['event_id']}"))
        ids[body["event_id"]] = original.body["event_id"]
        data = dict(body["data"])
        if data.get("national_id"):
            data["national_id"] = f"{order[:2].upper()}{data['national_id']}"
        body["data"] = data
        events.append(replace(e, body=body))
    if order == "in order":
        events.sort(key=lambda e: (e.occurred_at, e.body["event_id"]))
    elif order == "reversed":
        events.sort(key=lambda e: (e.occurred_at, e.body["event_id"]), reverse=True)
    else:
        random.Random(f"any-order:{SEED}").shuffle(events)
    return Copy(order, facilities, events, ids, {})


# --- the platform ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform_paused(
    migrated: Infra, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The four services as processes on a database and a broker of their own, with a registry of
    the copies' nine facilities, their timers paused."""
    work = tmp_path_factory.mktemp("any-order")
    registry = work / "facilities.csv"
    rows = ["facility_id,name,district,province,country,dhis2_org_unit"]
    for order in ORDERS:
        for f in FACILITIES[order]:
            rows.append(f"{f},Clinic {f},Cape Town Metro,Western Cape,ZA,Ou{f[-3:]}Order01")
    registry.write_text("\n".join(rows) + "\n")
    database = f"pmtct_order_{uuid.uuid4().hex[:8]}"
    url = bootstrap.with_admin_database(migrated.admin_url, database)
    broker = TansuBroker(log_path=work / "tansu.log").start()
    p = Platform(
        data_dir=work,
        database_url=url,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        ports={s: free_port() for s in SERVICES},
    )
    p.jwks_server = issuer.server
    p.issuer = issuer.issuer
    p.extra_env = {
        "PMTCT_HMAC_KEY": HMAC_KEY,
        "PMTCT_PII_KEY": PII_KEY,
        "PMTCT_FACILITIES": str(registry),
        "PMTCT_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "PMTCT_RELAY_POLL_INTERVAL_S": "0.2",
        "PMTCT_TIMERS_PAUSED": "true",
        "PMTCT_TIMER_SETTLE_S": "0",
        "PMTCT_TIMER_INTERVAL_S": "1",
        "PMTCT_LOG_LEVEL": "WARNING",
    }
    try:
        p.migrate()
        p.create_topics()
        for s in SERVICES:
            p.start_service(s)
        p.wait_ready(timeout_s=120)
        yield p
    finally:
        p.jwks_server = None  # owned by the issuer fixture
        p.stop()
        broker.stop()


def post(platform: Platform, issuer: TestIssuer, copy: Copy) -> None:
    """Batches of `BATCH`, as the EMR queue holds them; what is answered `service_unavailable` (the
    front door could not reach follow-up in time, on a busy machine) is posted again, as the codes
    table says an EMR does."""
    headers = issuer.headers("events:write", list(copy.facilities), client_id="district-emr")
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(copy.events), BATCH):
            batch = copy.events[start : start + BATCH]
            for _ in range(10):
                reply = client.post(
                    platform.url("enrolment") + "/v1/events", json={"events": [e.body for e in batch]}, headers=headers
                )
                assert reply.status_code == 200, reply.text
                for e, result in zip(batch, reply.json()["results"], strict=True):
                    if result["status"] != "duplicate" or e.body["event_id"] not in copy.answers:
                        copy.answers[e.body["event_id"]] = result
                batch = [e for e in batch if copy.answers[e.body["event_id"]].get("code") == "service_unavailable"]
                if not batch:
                    break
                time.sleep(1)


async def _query(platform: Platform, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(platform.database_admin_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def query(platform: Platform, sql: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_query(platform, sql, *args))


def progress(platform: Platform) -> tuple[int, tuple[int, ...]]:
    """Rows not published yet, and how much each service has consumed and holds."""
    backlog = 0
    seen: list[int] = []
    for s in SERVICES:
        [row] = query(
            platform,
            f"SELECT (SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL) AS waiting,"
            f" (SELECT count(*) FROM {s}.inbox) AS consumed",
        )
        backlog += row["waiting"]
        seen.append(row["consumed"])
    for s in ("enrolment", "followup"):
        [row] = query(platform, f"SELECT count(*) AS n FROM {s}.intake_pending WHERE status = 'pending'")
        seen.append(row["n"])
    # follow-up's timers have work left today (a pass may run for seconds without committing)
    [row] = query(
        platform,
        "SELECT (SELECT count(*) FROM followup.mothers WHERE next_timer_on <= current_date)"
        " + (SELECT count(*) FROM followup.infants WHERE next_timer_on <= current_date) AS n",
    )
    backlog += row["n"] if timers_on(platform) else 0
    return backlog, tuple(seen)


def timers_on(platform: Platform) -> bool:
    return platform.extra_env.get("PMTCT_TIMERS_PAUSED") == "false"


def settle(platform: Platform, timeout_s: float = 240, quiet_s: float = 10) -> None:
    """Until every outbox is published, the timers (when on) have nothing left for today, and
    nothing has been consumed for `quiet_s` (a consumer's batch commits at its end: on a busy
    machine one may take seconds)."""
    deadline = time.monotonic() + timeout_s
    previous, since = None, time.monotonic()
    while time.monotonic() < deadline:
        backlog, seen = progress(platform)
        if backlog or seen != previous:
            previous, since = (seen if not backlog else None), time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(2)
    raise AssertionError("the platform did not settle")


def start_timers(platform: Platform) -> None:
    platform.extra_env["PMTCT_TIMERS_PAUSED"] = "false"
    for s in ("followup", "referrals"):
        proc = platform.processes[s]
        proc.terminate()
        proc.wait(30)
        platform.start_service(s)
    platform.wait_ready(timeout_s=120)


# --- reading what each copy ends with ---------------------------------------------------------------


def names(platform: Platform, copy: Copy) -> dict[str, str]:
    """The platform's ids of this copy named as every copy names them."""
    place = {f: f"facility {i + 1}" for i, f in enumerate(copy.facilities)}
    out: dict[str, str] = {}
    for r in query(
        platform,
        "SELECT DISTINCT ON (client_id) client_id::text AS id, facility_id, client_ref FROM enrolment.registrations"
        " WHERE facility_id = ANY($1::text[]) ORDER BY client_id, registered_at, client_ref",
        list(copy.facilities),
    ):
        out[r["id"]] = f"woman {place[r['facility_id']]}/{r['client_ref']}"
    hashes = {
        ref_hash(
            HMAC_KEY, e.body["facility_id"], i["infant_ref"]
        ): f"infant {place[e.body['facility_id']]}/{i['infant_ref']}"
        for e in copy.events
        if e.body["type"] == "DeliveryRecorded"
        for i in e.body["data"]["infants"]
    }
    for r in query(
        platform,
        "SELECT infant_id::text AS id, ref_hash FROM enrolment.infants WHERE facility_id = ANY($1::text[])",
        list(copy.facilities),
    ):
        out[r["id"]] = hashes[r["ref_hash"]]
    out |= place
    out |= copy.event_ids
    return out


def named(value: Any, by: dict[str, str]) -> Any:
    if value is None:
        return None
    text = str(value)
    return by.get(text, text)


def schedules(platform: Platform, copy: Copy, by: dict[str, str]) -> list[tuple]:
    rows = query(
        platform,
        "SELECT subject_type, subject_id::text, facility_id, kind, test, window_start, window_end, overdue_on,"
        " status, satisfied_on, cancel_reason, label FROM followup.schedule_items"
        " WHERE facility_id = ANY($1::text[])",
        list(copy.facilities),
    )
    return sorted(tuple(named(v, by) if k in ("subject_id", "facility_id") else v for k, v in r.items()) for r in rows)


def referrals(platform: Platform, copy: Copy, by: dict[str, str]) -> list[tuple]:
    rows = query(
        platform,
        "SELECT subject_type, subject_id::text, from_facility_id, to_facility_id, referral_service, reason_code,"
        " due_by, origin, status, outcome_code, need_on FROM referrals.referral"
        " WHERE from_facility_id = ANY($1::text[])",
        list(copy.facilities),
    )
    named_keys = ("subject_id", "from_facility_id", "to_facility_id")
    return sorted((tuple(named(v, by) if k in named_keys else v for k, v in r.items()) for r in rows), key=repr)


def infants(platform: Platform, copy: Copy, by: dict[str, str]) -> list[tuple]:
    rows = query(
        platform,
        "SELECT infant_id::text, in_follow_up, high_risk, high_risk_reasons::text, final_outcome, final_outcome_on"
        " FROM followup.infants WHERE facility_id = ANY($1::text[])",
        list(copy.facilities),
    )
    return sorted((named(r["infant_id"], by), *list(r.values())[1:]) for r in rows)


def indicators(platform: Platform, issuer: TestIssuer, copy: Copy) -> dict[tuple, tuple]:
    headers = issuer.headers("reports:read", ["*"], client_id="ministry-data-manager")
    first = min(e.occurred_at for e in copy.events).year
    figures: dict[tuple, tuple] = {}
    with httpx.Client(timeout=60) as client:
        for i, facility in enumerate(copy.facilities):
            for year in range(first, date.today().year + 1):
                for data_set in ("mer", "programme"):
                    reply = client.get(
                        platform.url("reporting") + "/v1/indicators",
                        params={"period": str(year), "facility_id": facility, "data_set": data_set},
                        headers=headers,
                    )
                    assert reply.status_code == 200, reply.text
                    for ind in reply.json()["indicators"]:
                        figures[(f"facility {i + 1}", year, ind["code"])] = (ind["numerator"], ind["denominator"])
    return figures


def held(platform: Platform, copy: Copy) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in ("enrolment", "followup"):
        for r in query(
            platform,
            f"SELECT status, type, code, count(*) AS n FROM {s}.intake_pending WHERE facility_id = ANY($1::text[])"
            " GROUP BY 1, 2, 3",
            list(copy.facilities),
        ):
            key = f"{s} {r['status']}" if r["status"] == "accepted" else f"{s} {r['status']} {r['type']} {r['code']}"
            out[key] = out.get(key, 0) + r["n"]
    return out


#: what still ends differently by arrival order (found by this test; each xfail is strict, so the
#: fix that makes one equal makes its test pass and must remove it from here)
NOT_YET: dict[str, str] = {}


@dataclass
class Ends:
    copies: list[Copy]
    #: order -> what -> what that copy ended with
    end: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def ends(platform_paused: Platform, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory) -> Ends:
    """The three copies posted, the platform settled, the timers run once, and what each ended with."""
    copies = [rekeyed(order) for order in ORDERS]
    for copy in copies:
        post(platform_paused, issuer, copy)
    settle(platform_paused)
    start_timers(platform_paused)
    settle(platform_paused)
    end: dict[str, dict[str, Any]] = {}
    for copy in copies:
        by = names(platform_paused, copy)
        end[copy.order] = {
            "held": held(platform_paused, copy),
            "schedules": schedules(platform_paused, copy, by),
            "referrals": referrals(platform_paused, copy, by),
            "infants": infants(platform_paused, copy, by),
            "indicators": indicators(platform_paused, issuer, copy),
            # not compared: to read when the rest differs
            "mothers": sorted(
                (by.get(r["client_id"], r["client_id"]), *list(r.values())[1:])
                for r in query(
                    platform_paused,
                    "SELECT m.client_id::text, m.facility_id, m.hiv_status, m.positive_since, m.art_start_date,"
                    " m.edd, m.delivered_on, m.enrolled_on, m.transferred_out_on, m.died_on, m.pregnancies::text,"
                    " s.ended, s.on_art_since FROM followup.mothers m LEFT JOIN referrals.subject_state s"
                    " ON s.subject_id = m.client_id WHERE m.facility_id = ANY($1::text[])",
                    list(copy.facilities),
                )
            ),
        }
    # what each copy ended with, to read when they differ
    readable = {
        o: {k: sorted(map(repr, v.items() if isinstance(v, dict) else v)) for k, v in e.items()} for o, e in end.items()
    }
    (tmp_path_factory.mktemp("any-order-end") / "end.json").write_text(json.dumps(readable, indent=1))
    return Ends(copies, end)


@pytest.mark.timeout(600)
def test_every_event_of_a_backlog_in_any_order_is_applied(ends: Ends) -> None:
    copies = ends.copies
    assert 500 <= len(copies[0].events) <= 650, len(copies[0].events)
    for copy in copies:
        refused = [
            (e.body["type"], copy.answers[e.body["event_id"]])
            for e in copy.events
            if copy.answers[e.body["event_id"]]["status"] not in ("accepted", "pending")
        ]
        assert refused == [], (copy.order, refused[:5])
        # every event held was applied: none is left pending, none expired or refused
        still = {k: n for k, n in ends.end[copy.order]["held"].items() if not k.endswith("accepted")}
        assert still == {}, (copy.order, still)
    # posted backwards, every infant event waited for its delivery, every mother event for her enrolment
    assert sum(1 for r in copies[1].answers.values() if r["status"] == "pending") > 100


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "what",
    [
        pytest.param(what, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[what])) if what in NOT_YET else what
        for what in ("schedules", "referrals", "infants", "indicators")
    ],
)
def test_a_backlog_in_any_order_ends_in_the_same_state(ends: Ends, what: str) -> None:
    theirs = ends.end["in order"][what]
    assert theirs, f"the programme gives {what}"
    differ: dict[str, Any] = {}
    for order in ORDERS[1:]:
        mine = ends.end[order][what]
        if isinstance(mine, dict):
            keys = sorted(mine.keys() | theirs.keys(), key=repr)
            changed = {k: (theirs.get(k), mine.get(k)) for k in keys if mine.get(k) != theirs.get(k)}
            if changed:
                differ[order] = changed
        else:
            only = {
                "only in order": sorted(set(theirs) - set(mine), key=repr),
                f"only {order}": sorted(set(mine) - set(theirs), key=repr),
            }
            if any(only.values()):
                differ[order] = only
    assert not differ, differ
