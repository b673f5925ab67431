"""Same facts, same figures (issue 19, build 4): one small programme posted to the four real services
twice, on platforms of their own, at two speeds, gives the same indicators.

- **fast**: on the last day every fact is posted at once, back-dated; then the timers run.
- **slow**: the same facts in chronological batches on the days the clinic posted them, the durable
  timers of follow-up and referrals running on each batch's day first (the injectable clock,
  `servicekit.clock`), so follow-up announces overdue and lost before the back-dated facts that show
  some of it was not needed arrive.

On either platform, the last step is the same: a mother traced after she was lost comes back.

The cohort (facility FAC-ZA-001, 2026), four pregnant women of unknown HIV status enrolled on 3
August at 8 weeks: each needs an HIV test at ANC1 (the window 3-10 August, overdue on 24 August:
7 days and a 14-day grace); with no test and no contact she is lost on 22 November (overdue day +
90 days, PMTCT_LOST_TO_FOLLOW_UP_DAYS). Her third-trimester retest (from week 28, 21 December) is
after the period.

- M1, traced and back: no test; an ANC visit on 30 November, after she was traced. Slow: HIV testing
  (expired), tracing (completed, returned_to_care): 1 completed of 2 due.
- M2, tested in time: a negative test on 5 August, posted on 7 September. Slow: HIV testing, expired,
  then withdrawn (cancelled, not_needed): excluded. Fast: never referred.
- M3, really lost: nothing after enrolment. HIV testing (expired), tracing (open): 0 of 2.
- M4, seen before she was lost: an ANC visit on 20 November, posted on 30 November. Slow: HIV testing
  (expired); tracing withdrawn (cancelled, not_needed): 0 of 1. Fast: HIV testing only.

By hand: REFERRAL_COMPLETION = 1 / 5 = 20.0 % on both platforms. (What is open or expired differs by
speed, not what is due or completed: the fast platform opens M1's, M3's and M4's HIV-testing
referrals on the last day, still open then; the slow one on 24 August, expired on 7 September.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from enrolment.main import build_app as enrolment_app
from enrolment.settings import Settings as EnrolmentSettings
from followup import timers as followup_timers
from followup.main import build_app as followup_app
from followup.settings import Settings as FollowupSettings
from pmtct_tools.localinfra import TansuBroker
from pmtct_tools.testing import Infra, TestIssuer
from referrals import timers as referral_timers
from referrals.main import build_app as referrals_app
from referrals.settings import Settings as ReferralsSettings
from reporting.main import build_app as reporting_app
from reporting.settings import Settings as ReportingSettings
from servicekit import bootstrap, migrations
from servicekit.clock import Clock
from servicekit.settings import SERVICES

FACILITY = "FAC-ZA-001"
MOTHERS = ("M1", "M2", "M3", "M4")
ENROLLED, LAST_DAY = date(2026, 8, 3), date(2026, 11, 30)
#: the day the ANC1 test is overdue, and the day she is lost without a contact (by hand, above)
OVERDUE_ON, LOST_ON = date(2026, 8, 24), date(2026, 11, 22)


def at(day: date) -> str:
    return datetime.combine(day, time(9), tzinfo=UTC).isoformat()


def fact(kind: str, ref: str, day: date, **data: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"same-facts/{ref}/{kind}/{day}")),
        "type": kind,
        "facility_id": FACILITY,
        "occurred_at": at(day),
        "client_ref": ref,
        "data": data,
    }


def enrolled(ref: str) -> dict[str, Any]:
    return fact(
        "ClientEnrolled",
        ref,
        ENROLLED,
        age_years=27,
        status_at_enrolment="pregnant",
        hiv_status="unknown",
        on_art=False,
        gestation_weeks=8,
    )


#: (the day the clinic posted it, the fact): the programme, in the order the clinic posted it
PROGRAMME: list[tuple[date, dict[str, Any]]] = [
    *((ENROLLED, enrolled(ref)) for ref in MOTHERS),
    (date(2026, 9, 7), fact("HivTestRecorded", "M2", date(2026, 8, 5), result="negative", setting="anc")),
    (LAST_DAY, fact("AncVisitRecorded", "M4", date(2026, 11, 20), visit_number=2, gestation_weeks=24)),
]
#: after the timers of the last day: the mother traced comes back
RETURN = fact("AncVisitRecorded", "M1", LAST_DAY, visit_number=2, gestation_weeks=25)
#: the days the slow platform's clinic posts on and its timers run (time passes between them)
SLOW_DAYS = (ENROLLED, OVERDUE_ON, date(2026, 9, 7), date(2026, 10, 5), date(2026, 11, 23), LAST_DAY)


@dataclass
class Now:
    """The platform's "now", moved by the test (every service reads it through its clock)."""

    at: datetime = datetime.combine(ENROLLED, time(12), tzinfo=UTC)

    def day(self, day: date) -> None:
        self.at = datetime.combine(day, time(12), tzinfo=UTC)


@dataclass
class InProcess:
    """The four services in this process, on a database and a broker of their own, one clock."""

    now: Now
    apps: dict[str, Any]
    http: dict[str, httpx.AsyncClient]
    issuer: TestIssuer
    #: consumer group -> its topics, and a consumer of the group that only reads its committed offsets
    groups: dict[str, list[str]]
    probes: dict[str, AIOKafkaConsumer]
    clients: dict[str, str] = field(default_factory=dict)

    def rt(self, service: str) -> Any:
        return self.apps[service].state.runtime

    async def settled(self) -> None:
        """Wait until every outbox is published and every consumer group has committed every record of
        its topics (a handler's events go to an outbox: so again, until nothing moves)."""
        for _ in range(600):
            pending = 0
            for service in SERVICES:
                async with self.rt(service).sessions() as session:
                    unpublished = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    pending += (await session.execute(unpublished)).scalar_one()
            if pending == 0 and await self._consumed():
                return
            await asyncio.sleep(0.25)
        raise AssertionError("the platform never settled")

    async def _consumed(self) -> bool:
        for group, topics in self.groups.items():
            probe = self.probes[group]
            for topic in topics:
                partitions = probe.partitions_for_topic(topic) or set()
                if not partitions:
                    await probe._client.force_metadata_update()
                    return False
                tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                ends = await probe.end_offsets(tps)
                for tp in tps:
                    if (await probe.committed(tp) or 0) < ends[tp]:
                        return False
        return True

    async def post(self, facts: list[dict[str, Any]]) -> None:
        headers = self.issuer.headers("events:write", [FACILITY], client_id="clinic-emr")
        reply = await self.http["enrolment"].post("/v1/events", json={"events": facts}, headers=headers)
        assert reply.status_code == 200, reply.text
        for f, result in zip(facts, reply.json()["results"], strict=True):
            assert result["status"] == "accepted", (f, result)
            if f["type"] == "ClientEnrolled":
                self.clients[f["client_ref"]] = result["client_id"]
        await self.settled()

    async def timers(self) -> None:
        """Time has passed until today: follow-up's timers, then referrals' expiry, as their loops would."""
        await followup_timers.fire(self.rt("followup").sessions, self.rt("followup").settings)
        await self.settled()
        await referral_timers.expire_past_due(
            self.rt("referrals").sessions, self.rt("referrals").settings, self.rt("referrals").settings.clock.today()
        )
        await self.settled()

    async def indicators(self) -> dict[str, tuple[int, int | None]]:
        headers = self.issuer.headers("reports:read", ["*"], client_id="ministry-data-manager")
        figures: dict[str, tuple[int, int | None]] = {}
        for data_set in ("mer", "programme"):
            reply = await self.http["reporting"].get(
                "/v1/indicators",
                params={"period": "2026", "facility_id": FACILITY, "data_set": data_set},
                headers=headers,
            )
            assert reply.status_code == 200, reply.text
            figures |= {i["code"]: (i["numerator"], i["denominator"]) for i in reply.json()["indicators"]}
        return figures

    async def referrals(self, ref: str) -> dict[str, list[tuple[str, str | None]]]:
        headers = self.issuer.headers("referrals:read", ["*"], client_id="ministry")
        reply = await self.http["referrals"].get(
            "/v1/referrals", params={"subject_id": self.clients[ref]}, headers=headers
        )
        out: dict[str, list[tuple[str, str | None]]] = {}
        for r in sorted(reply.json()["items"], key=lambda r: r["requested_at"]):
            out.setdefault(r["referral_service"], []).append((r["status"], r["outcome_code"]))
        return out

    async def tracing_list(self) -> dict[str, str]:
        """The facility's Community Mentor Mother's tracing list: whom to trace, lost since when."""
        headers = self.issuer.headers("worklist:read", [FACILITY], client_id="mentor-app", subject="CMM-ZA-001-01")
        reply = await self.http["followup"].get("/v1/worklist", params={"mentor": "me"}, headers=headers)
        assert reply.status_code == 200, reply.text
        by_id = {v: k for k, v in self.clients.items()}
        return {by_id[t["client_id"]]: t["lost_since"] for t in reply.json()["tracing"]}


@contextlib.asynccontextmanager
async def in_process(infra: Infra, issuer: TestIssuer, workdir: Path) -> AsyncIterator[InProcess]:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    database = f"pmtct_speed_{uuid.uuid4().hex[:8]}"
    await bootstrap.bootstrap(infra.admin_url, SERVICES, database=database)
    for service in SERVICES:
        await asyncio.to_thread(migrations.upgrade, service, bootstrap.service_url(infra.admin_url, service, database))
    broker = await asyncio.to_thread(lambda: TansuBroker(log_path=workdir / "tansu.log").start())
    now = Now()
    clock = Clock("UTC", lambda: now.at)
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "kafka_idempotent_producer": False,
        "auth_jwks_url": issuer.jwks_url,
        "auth_issuer": "pmtct-dev-issuer",
        "timezone": "UTC",
        "relay_poll_interval_s": 0.2,
        "hmac_key": hmac_key,
        "log_json": True,
    }

    def url(service: str) -> str:
        return bootstrap.service_url(infra.admin_url, service, database)

    # the timers run when the test says time has passed (their loops wait an hour after a first pass)
    settings = {
        "enrolment": EnrolmentSettings(
            database_url=url("enrolment"), pii_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(), **common
        ),
        "followup": FollowupSettings(database_url=url("followup"), timer_interval_s=3600, timer_settle_s=0, **common),
        "referrals": ReferralsSettings(database_url=url("referrals"), timer_interval_s=3600, **common),
        "reporting": ReportingSettings(database_url=url("reporting"), dhis2_push_day=0, **common),
    }
    builders = {
        "enrolment": enrolment_app,
        "followup": followup_app,
        "referrals": referrals_app,
        "reporting": reporting_app,
    }
    apps = {s: builders[s](settings[s].use_clock(clock)) for s in SERVICES}
    try:
        async with contextlib.AsyncExitStack() as stack:
            http: dict[str, httpx.AsyncClient] = {}
            for service, app in apps.items():
                await stack.enter_async_context(app.router.lifespan_context(app))
                http[service] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}", timeout=30)
                )
            groups = {c.name: c.topics for s in SERVICES for c in apps[s].state.runtime.consumers}
            probes: dict[str, AIOKafkaConsumer] = {}
            for group in groups:
                probe = AIOKafkaConsumer(
                    bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False
                )
                await probe.start()
                stack.push_async_callback(probe.stop)
                probes[group] = probe
            yield InProcess(now, apps, http, issuer, groups, probes)
    finally:
        await asyncio.to_thread(broker.stop)


async def run_fast(p: InProcess) -> None:
    p.now.day(LAST_DAY)
    await p.post([f for _, f in PROGRAMME])
    await p.timers()


async def run_slow(p: InProcess) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for day in SLOW_DAYS:
        p.now.day(day)
        await p.timers()
        batch = [f for posted, f in PROGRAMME if posted == day]
        if day == date(2026, 9, 7):
            seen["M2 before her test arrived"] = await p.referrals("M2")
        if day == LAST_DAY:
            seen["tracing before M4's visit arrived"] = await p.tracing_list()
        if batch:
            await p.post(batch)
    return seen


async def finish(p: InProcess) -> dict[str, Any]:
    """The last step of both: the mother traced comes back; then what the platform shows."""
    lost_then = await p.tracing_list()
    await p.post([RETURN])
    return {
        "indicators": await p.indicators(),
        "tracing at the end": await p.tracing_list(),
        "lost before M1 came back": lost_then,
        "referrals": {ref: await p.referrals(ref) for ref in MOTHERS},
    }


@pytest.mark.timeout(600)
async def test_the_same_programme_posted_fast_or_slowly_gives_the_same_referral_completion(
    migrated: Infra, issuer: TestIssuer, tmp_path: Path
) -> None:
    async with in_process(migrated, issuer, tmp_path / "fast") as fast:
        await run_fast(fast)
        fast_end = await finish(fast)
    async with in_process(migrated, issuer, tmp_path / "slow") as slow:
        during = await run_slow(slow)
        slow_end = await finish(slow)

    # by hand (the module docstring): 1 completed of 5 due, on both platforms
    for end in (fast_end, slow_end):
        assert end["indicators"]["REFERRAL_COMPLETION"] == (1, 5)
    assert fast_end["indicators"] == slow_end["indicators"], "every indicator of the year, whatever the speed"

    # the slow platform announced, then withdrew what M2's and M4's back-dated facts showed was not needed
    assert during["M2 before her test arrived"] == {"hiv_testing": [("expired", None)]}
    assert during["tracing before M4's visit arrived"] == {"M1": "2026-11-22", "M3": "2026-11-22", "M4": "2026-11-22"}
    assert slow_end["referrals"] == {
        "M1": {"hiv_testing": [("expired", None)], "community_tracing": [("completed", "returned_to_care")]},
        "M2": {"hiv_testing": [("cancelled", "not_needed")]},
        "M3": {"hiv_testing": [("expired", None)], "community_tracing": [("requested", None)]},
        "M4": {"hiv_testing": [("expired", None)], "community_tracing": [("cancelled", "not_needed")]},
    }
    assert fast_end["referrals"] == {
        "M1": {"hiv_testing": [("requested", None)], "community_tracing": [("completed", "returned_to_care")]},
        "M2": {},
        "M3": {"hiv_testing": [("requested", None)], "community_tracing": [("requested", None)]},
        "M4": {"hiv_testing": [("requested", None)]},
    }
    # lost since the clinical day she became lost, not the day a timer said so (23 or 30 November)
    for end in (fast_end, slow_end):
        assert end["lost before M1 came back"] == {"M1": LOST_ON.isoformat(), "M3": LOST_ON.isoformat()}
        assert end["tracing at the end"] == {"M3": LOST_ON.isoformat()}
