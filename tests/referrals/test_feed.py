"""The ministry feed: every change once, in commit order, resumable, with no gaps and no repeats
while many writers commit, and the same changes as the Kafka topic pmtct.referrals.v1."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from conftest import FACILITY, OTHER_FACILITY, THIRD_FACILITY, Api, referral_body
from sqlalchemy import text

from pmtct_events import REFERRALS_TOPIC, CloudEvent, Event
from pmtct_events.followup import SubjectType
from pmtct_events.referrals import ReferralService
from pmtct_tools.testing import envelopes, read_topic
from referrals import stream
from referrals.models import Referral
from referrals.repository import ReferralsUnit
from referrals.rules import Action
from servicekit import uow

WRITERS = 8
REFERRALS_PER_WRITER = 10
#: after `requested`, each referral goes one of these ways
PATHS = [("accept", "complete"), ("accept", "cancel"), ("decline",), ("complete",), ("cancel",), ()]
OUTCOME = {"decline": "no_capacity", "cancel": "no_longer_needed", "complete": "service_provided"}


@dataclass(frozen=True)
class Change:
    """A change a writer made, and when its request started and its answer came back."""

    referral_id: str
    version: int
    started: float
    finished: float


async def read_to_end(api: Api, after: str, headers: dict[str, str], limit: int = 1000) -> tuple[list[dict], str]:
    entries: list[dict] = []
    while True:
        page = (await api.http.get("/v1/feed", params={"after": after, "limit": limit}, headers=headers)).json()
        entries += page["entries"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return entries, after


async def http_writer(api: Api, seed: int, changes: list[Change]) -> None:
    """A clinic: creates referrals and acts on them through the API."""
    rng = random.Random(seed)
    headers = api.auth(facilities=[FACILITY, OTHER_FACILITY], client=f"writer-{seed}")
    for _ in range(REFERRALS_PER_WRITER):
        started = time.monotonic()
        body = referral_body()
        await api.known(body["subject_id"])
        response = await api.http.post("/v1/referrals", json=body, headers=headers)
        assert response.status_code == 201, response.text
        r = response.json()
        changes.append(Change(r["id"], 1, started, time.monotonic()))
        for action in rng.choice(PATHS):
            await asyncio.sleep(rng.random() * 0.04)
            started = time.monotonic()
            response = await api.act(r["id"], action, headers, outcome_code=OUTCOME.get(action))
            assert response.status_code == 200, response.text
            changes.append(Change(r["id"], response.json()["version"], started, time.monotonic()))


class Lingering(ReferralsUnit):
    """A unit that, as it commits, stays open a while after writing its rows and its outbox, before
    it takes its feed positions: as a consumer batch's long transaction, commit order differs from
    write order."""

    linger_s = 0.0

    async def finish(self, envelopes: list[tuple[CloudEvent, Event]]) -> None:
        await asyncio.sleep(self.linger_s)
        await super().finish(envelopes)


def lingering(seconds: float) -> type[Lingering]:
    return type("Lingering", (Lingering,), {"linger_s": seconds})


async def open_eid_referral(unit: ReferralsUnit, api: Api, subject: UUID) -> Referral | None:
    """What the consumer does for an InfantTestDue, in the caller's unit of work."""
    clock = api.settings.clock
    return await stream.open_automatic(
        unit,
        subject_type=SubjectType.infant,
        subject_id=subject,
        client_id=None,
        facility_id=FACILITY,
        service=ReferralService.eid_sample_collection,
        reason_code="nat_6_weeks_due",
        due_by=clock.today(),
        clock=clock,
    )


async def event_writer(api: Api, seed: int, changes: list[Change]) -> None:
    """The consumer: opens and closes automatic referrals in transactions that stay open a while
    after writing (a batch of events is one transaction), so commit order differs from write order."""
    rng = random.Random(seed)
    for _ in range(REFERRALS_PER_WRITER):
        await asyncio.sleep(rng.random() * 0.04)
        subject = uuid4()
        started = time.monotonic()
        async with uow.begin(api.sessions, lingering(0.005 + rng.random() * 0.06)) as unit:
            r = await open_eid_referral(unit, api, subject)
            await unit.commit()
        assert r is not None
        changes.append(Change(str(r.id), 1, started, time.monotonic()))
        if rng.random() < 0.7:
            started = time.monotonic()
            async with uow.begin(api.sessions, lingering(0.005 + rng.random() * 0.06)) as unit:
                [done] = await stream.close_open(
                    unit, subject, Action.complete, "test_resulted", clock=api.settings.clock
                )
                await unit.commit()
            changes.append(Change(str(done.id), done.version, started, time.monotonic()))


async def test_a_paging_reader_sees_every_change_of_8_concurrent_writers_once_in_commit_order_as_on_kafka(
    api: Api,
) -> None:
    _, start = await read_to_end(api, "", api.national)
    changes: list[Change] = []
    writers = asyncio.gather(
        *((http_writer if seed % 2 else event_writer)(api, seed, changes) for seed in range(WRITERS))
    )

    seen: list[dict] = []
    cursor = start
    while True:
        finished = writers.done()  # before the read: a page read after the last commit ends the loop
        page = (await api.http.get("/v1/feed", params={"after": cursor, "limit": 20}, headers=api.national)).json()
        seen += page["entries"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            if finished:
                break
            await asyncio.sleep(0.002)
    await writers

    # No gaps, no repeats: the national reader got consecutive positions, each event once.
    positions = [int(e["cursor"]) for e in seen]
    assert positions == list(range(int(start) + 1, int(start) + 1 + len(seen)))
    assert len({e["event_id"] for e in seen}) == len(seen)

    # Every change exactly once, and each referral's versions in order.
    ours = {c.referral_id for c in changes}
    mine = [e for e in seen if e["referral_id"] in ours]
    assert sorted((e["referral_id"], e["version"]) for e in mine) == sorted((c.referral_id, c.version) for c in changes)
    for rid in ours:
        assert [e["version"] for e in mine if e["referral_id"] == rid] == sorted(
            c.version for c in changes if c.referral_id == rid
        )

    # Commit order: a change acknowledged before another was even requested comes first in the feed.
    position_of = {(e["referral_id"], e["version"]): int(e["cursor"]) for e in mine}
    by_finish = sorted(changes, key=lambda c: c.finished)
    for earlier, later in ((a, b) for a in by_finish for b in changes if a.finished < b.started):
        assert position_of[(earlier.referral_id, earlier.version)] < position_of[(later.referral_id, later.version)]

    # Kafka carries the same changes: same CloudEvents ids, types and data.
    wanted = {e["event_id"] for e in mine}
    records = await read_topic(
        api.settings.kafka_bootstrap_servers,
        REFERRALS_TOPIC,
        until=lambda recs: wanted <= {ce_id(r) for r in recs},
        timeout_s=60,
    )
    on_kafka = {str(ce.id): (ce.type, ce.data) for ce in envelopes(records) if ce.subject in ours}
    assert on_kafka == {e["event_id"]: (e["type"], e["data"]) for e in mine}


def ce_id(record: Any) -> str:
    return next((v.decode() for k, v in record.headers or [] if k == "ce_id"), "")


async def test_a_transaction_that_commits_later_is_placed_later_even_if_it_wrote_first(api: Api) -> None:
    """The case that breaks an insert-ordered feed: A writes first but commits after B."""
    _, start = await read_to_end(api, "", api.national)
    a_written, release_a = asyncio.Event(), asyncio.Event()
    subject_a, subject_b = uuid4(), uuid4()

    class WaitsForB(ReferralsUnit):
        async def finish(self, envelopes: list[tuple[CloudEvent, Event]]) -> None:
            a_written.set()
            await release_a.wait()  # A's rows and outbox are written; it commits once B has committed and been read
            await super().finish(envelopes)

    async def open_for(subject) -> None:
        async with uow.begin(api.sessions, WaitsForB if subject == subject_a else ReferralsUnit) as unit:
            await open_eid_referral(unit, api, subject)
            await unit.commit()

    task_a = asyncio.create_task(open_for(subject_a))
    await a_written.wait()
    await open_for(subject_b)
    ours = {str(subject_a), str(subject_b)}
    before_a, cursor = await read_to_end(api, start, api.national)
    assert [e["data"]["subject_id"] for e in before_a if e["data"]["subject_id"] in ours] == [str(subject_b)]
    release_a.set()
    await task_a
    after_a, _ = await read_to_end(api, cursor, api.national)
    assert [e["data"]["subject_id"] for e in after_a if e["data"]["subject_id"] in ours] == [str(subject_a)]

    async with api.sessions() as s:
        outbox_ids = dict(
            (
                await s.execute(
                    text("SELECT payload->>'subject_id', id FROM outbox WHERE payload->>'subject_id' = ANY(:s)"),
                    {"s": [str(subject_a), str(subject_b)]},
                )
            ).all()
        )
    assert outbox_ids[str(subject_a)] < outbox_ids[str(subject_b)]  # insert order is not commit order


async def test_any_cursor_resumes_to_the_same_continuation_whatever_the_page_size(api: Api) -> None:
    _, start = await read_to_end(api, "", api.national)
    for _ in range(5):
        r = await api.create()
        await api.act(r["id"], "accept", api.auth(facilities=[OTHER_FACILITY]))
    # Other services' events may add entries meanwhile: each later read may only add at the end.
    in_one, _ = await read_to_end(api, start, api.national, limit=1000)
    one_by_one, _ = await read_to_end(api, start, api.national, limit=1)
    assert len(in_one) >= 10
    assert [e["event_id"] for e in one_by_one[: len(in_one)]] == [e["event_id"] for e in in_one]
    resumed, _ = await read_to_end(api, in_one[4]["cursor"], api.national, limit=3)
    assert [e["event_id"] for e in resumed[: len(in_one) - 5]] == [e["event_id"] for e in in_one[5:]]


async def test_a_clinic_reads_only_changes_of_its_own_referrals_with_cursors_that_skip_the_rest(api: Api) -> None:
    _, start = await read_to_end(api, "", api.national)
    theirs = await api.create(
        headers=api.auth(facilities=[THIRD_FACILITY]), from_facility_id=THIRD_FACILITY, to_facility_id=None
    )
    ours = await api.create(to_facility_id=OTHER_FACILITY)
    clinic = api.auth("referrals:read", [OTHER_FACILITY])
    entries, end = await read_to_end(api, start, clinic)
    assert [e["referral_id"] for e in entries if e["referral_id"] in (ours["id"], theirs["id"])] == [ours["id"]]
    assert all(OTHER_FACILITY in (e["data"]["facility_id"], e["data"]["to_facility_id"]) for e in entries)
    everything, _ = await read_to_end(api, start, api.national)
    [their_position] = [int(e["cursor"]) for e in everything if e["referral_id"] == theirs["id"]]
    assert int(end) > their_position  # the clinic's cursor moved past the entries it may not see
    page = await api.http.get("/v1/feed", params={"after": start, "facility_id": THIRD_FACILITY}, headers=clinic)
    assert page.status_code == 403


async def test_a_feed_entry_is_the_same_cloudevent_as_on_kafka(api: Api) -> None:
    _, start = await read_to_end(api, "", api.national)
    r = await api.create()
    [entry] = [e for e in (await read_to_end(api, start, api.national))[0] if e["referral_id"] == r["id"]]
    records = await read_topic(
        api.settings.kafka_bootstrap_servers,
        REFERRALS_TOPIC,
        until=lambda recs: entry["event_id"] in {ce_id(x) for x in recs},
        timeout_s=30,
    )
    [ce] = [ce for ce in envelopes(records) if str(ce.id) == entry["event_id"]]
    assert (ce.type, ce.subject, ce.data) == (entry["type"], r["id"], entry["data"])
    assert ce.time.isoformat().replace("+00:00", "Z") == entry["time"]
    assert entry["data"]["version"] == 1 and entry["data"]["status"] == "requested"
    assert entry["data"]["requested_at"] is not None


async def test_a_bad_cursor_is_400(api: Api) -> None:
    for bad in ("abc", "-1", "99999999999999"):
        response = await api.http.get("/v1/feed", params={"after": bad}, headers=api.national)
        assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"
