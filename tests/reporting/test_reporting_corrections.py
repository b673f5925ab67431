"""Corrections in the read model (issue 17): a void (ClientEventVoided, InfantEventVoided) takes out
the facts of the CloudEvents it names, and a voided delivery its infants, as if they had never been
posted: in any arrival order, under redelivery, in one batch or one by one. ReferralReopened opens a
referral again; a referral cancelled `entered_in_error` leaves REFERRAL_COMPLETION.

The figures are written by hand from the comments of each story (November 2026, one facility of
its own, every woman aged 26: MER band 25-29).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from pmtct_events import CloudEvent, Event
from pmtct_events import enrolment as en
from pmtct_events import followup as fu
from pmtct_events import referrals as rf
from reporting import replay, repository, submissions
from reporting.handlers import build
from reporting.indicators import BY_CODE, DataSet, evaluate, sum_counts
from reporting.periods import parse_period
from reporting.queries import counts_by_cell
from reporting.repository import ReportingUnit
from reporting.settings import Settings
from servicekit import bootstrap, uow
from servicekit.clock import Clock
from servicekit.db import create_engine, sessionmaker

HANDLERS = build(Settings(timezone="UTC"))
ENROLLED = {"age_years": 26, "status_at_enrolment": "pregnant"}


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


Item = tuple[CloudEvent, Event]


def void(ce: CloudEvent, facility: str, day: str, replaced_by: uuid.UUID | None = None) -> en.ClientEventVoided:
    """The void of a mother event whose catalog event was `ce` (enrolment publishes one per event)."""
    return en.ClientEventVoided(
        facility_id=facility,
        client_id=ce.data["client_id"],
        occurred_at=at(day, 15),
        voided_event_id=uuid.uuid4(),
        voided_type=ce.event_name,
        voided_ids=(ce.id,),
        replaced_by_event_id=replaced_by,
    )


def is_void(item: Item) -> bool:
    return isinstance(item[1], en.ClientEventVoided | fu.InfantEventVoided)


class Story:
    """Events with their CloudEvents (a void names the id of the one it voids), and the ids a void takes
    out (for a voided delivery, its infants' events too)."""

    def __init__(self, facility: str) -> None:
        self.facility = facility
        self.items: list[Item] = []
        self.voided: set[uuid.UUID] = set()

    def add(self, event: Event) -> CloudEvent:
        ce = CloudEvent.from_event(event)
        self.items.append((ce, event))
        return ce

    def never_posted(self) -> list[Item]:
        """The story without its voided events and their voids."""
        return [i for i in self.items if i[0].id not in self.voided and not is_void(i)]


def stat_story(facility: str) -> Story:
    """PMTCT_STAT_POS with a voided positive test, 2026-11-02, at ANC1 (enrolled pregnant, unknown status):
    - A: tested positive at ANC1, ART the next day: newly positive, new on ART;
    - B: tested positive, the result voided and REPLACED by a negative one the same day: new negative,
      as per her remaining facts (and HIV-negative at enrolment);
    - C: tested positive, the result voided, nothing else: an ANC1 client with no known status."""
    s = Story(facility)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    test = {"facility_id": facility, "setting": "anc", "age_years": 26, "anc_visit_number": 1}
    for client in (a, b, c):
        s.add(
            en.ClientEnrolled(
                **ENROLLED,
                facility_id=facility,
                client_id=client,
                occurred_at=at("2026-11-02"),
                hiv_status="unknown",
                on_art=False,
            )
        )
    s.add(en.HivTestRecorded(**test, client_id=a, occurred_at=at("2026-11-02", 10), result="positive"))
    s.add(en.ArtInitiated(facility_id=facility, client_id=a, occurred_at=at("2026-11-03"), age_years=26))
    for client in (b, c):
        wrong = s.add(en.HivTestRecorded(**test, client_id=client, occurred_at=at("2026-11-02", 10), result="positive"))
        s.voided.add(wrong.id)
        s.add(void(wrong, facility, "2026-11-04", replaced_by=uuid.uuid4() if client == b else None))
        if client == b:
            s.add(en.HivTestRecorded(**test, client_id=b, occurred_at=at("2026-11-02", 10), result="negative"))
    return s


def delivery_story(facility: str) -> Story:
    """A voided delivery drops its infants, 2026-11 (both mothers known positive on ART, enrolled 11-02):
    - D delivers twins on 11-10 (skilled); follow-up registers both, a NAT at birth for each (one
      positive, one negative), then the delivery is voided on 11-20: no delivery, no infant, no NAT;
    - E delivers one baby on 11-12 (not skilled), NAT at birth negative: she stays."""
    s = Story(facility)
    d, e = uuid.uuid4(), uuid.uuid4()
    for client in (d, e):
        s.add(
            en.ClientEnrolled(
                **ENROLLED,
                facility_id=facility,
                client_id=client,
                occurred_at=at("2026-11-02"),
                hiv_status="positive",
                on_art=True,
                art_start_date=date(2024, 1, 10),
            )
        )
    births: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {
        d: [(uuid.uuid4(), "positive"), (uuid.uuid4(), "negative")],
        e: [(uuid.uuid4(), "negative")],
    }
    for client, day, skilled in ((d, "2026-11-10", True), (e, "2026-11-12", False)):
        delivered = s.add(
            en.DeliveryRecorded(
                facility_id=facility,
                client_id=client,
                occurred_at=at(day),
                place="facility",
                skilled_attendant=skilled,
                maternal_outcome="alive",
                mother_hiv_status="positive",
                age_years=26,
                infants=[
                    en.DeliveredInfant(infant_id=i, sex="female", outcome="live_birth") for i, _ in births[client]
                ],
            )
        )
        for infant, result in births[client]:
            born = {"facility_id": facility, "infant_id": infant, "client_id": client}
            hei = s.add(
                fu.InfantFollowUpStarted(
                    **born, occurred_at=at(day, 12), birth_date=date.fromisoformat(day), high_risk=False
                )
            )
            nat = s.add(
                fu.InfantTestResulted(
                    **born, occurred_at=at(day, 13), test="NAT", result=result, confirmatory=False, age_days=0
                )
            )
            if client == d:
                s.voided |= {hei.id, nat.id}
        if client == d:
            s.voided.add(delivered.id)
            s.add(void(delivered, facility, "2026-11-20"))
    return s


def referral_story(facility: str) -> Story:
    """Referrals due 2026-11-20: R1 completed by an ART start that was then voided, reopened (version 3,
    requested again); R2 opened by a positive test that was voided: cancelled `entered_in_error`."""
    s = Story(facility)
    r1, r2, mother = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ref = {
        "facility_id": facility,
        "subject_type": "client",
        "subject_id": mother,
        "client_id": mother,
        "referral_service": "art_initiation",
        "urgency": "urgent",
        "due_by": date(2026, 11, 20),
        "origin": "automatic",
        "reason_code": "hiv_positive",
    }
    s.add(rf.ReferralCreated(**ref, referral_id=r1, occurred_at=at("2026-11-03"), status="requested", version=1))
    s.add(rf.ReferralCompleted(**ref, referral_id=r1, occurred_at=at("2026-11-05"), status="completed", version=2))
    s.add(rf.ReferralReopened(**ref, referral_id=r1, occurred_at=at("2026-11-06"), status="requested", version=3))
    s.add(rf.ReferralCreated(**ref, referral_id=r2, occurred_at=at("2026-11-03"), status="requested", version=1))
    s.add(
        rf.ReferralCancelled(
            **ref,
            referral_id=r2,
            occurred_at=at("2026-11-06"),
            status="cancelled",
            outcome_code="entered_in_error",
            version=2,
        )
    )
    return s


# -- the figures, by hand --------------------------------------------------------------------------

#: A newly positive and new on ART, B new negative, C unknown: 3 ANC1 clients, 2 with a known status, 1
#: positive. Clinic events: A's enrolment, test and ART start (3), B's enrolment and the negative that
#: replaced her voided test (2), C's enrolment (1); a void is not a clinic event and takes its test out.
STAT = {
    "anc1": 3,
    "anc1__25_29": 3,
    "stat_known": 2,
    "stat_newly_positive": 1,
    "stat_newly_positive__25_29": 1,
    "stat_new_negative": 1,
    "stat_new_negative__25_29": 1,
    "stat_pos": 1,
    "art_new": 1,
    "art_new__25_29": 1,
    "art_total": 1,
    "enrolled": 3,
    "negative_at_enrolment": 1,
    "client_interactions": 6,
    # B's voided test (replaced) and C's, voided on 11-04
    "corrections": 2,
}
#: D and E known positive at ANC1 on ART since 2024 (already on ART); only E's delivery (not skilled)
#: and E's infant (born, NAT at birth negative) remain. Clinic events: D's enrolment (her delivery and
#: her twins' NATs are taken out), E's enrolment, delivery and her baby's NAT: 4.
DELIVERY = {
    "anc1": 2,
    "anc1__25_29": 2,
    "stat_known": 2,
    "stat_known_positive": 2,
    "stat_known_positive__25_29": 2,
    "stat_pos": 2,
    "art_already": 2,
    "art_already__25_29": 2,
    "art_total": 2,
    "enrolled": 2,
    "deliveries": 1,
    "hiv_pos_deliveries": 1,
    "hei_born": 1,
    "eid_first": 1,
    "eid_0_2": 1,
    "hei_neg_0_2m": 1,
    "client_interactions": 4,
    # D's delivery, voided on 11-20
    "corrections": 1,
}
#: R1 due and open again; R2 cancelled entered_in_error: in neither the numerator nor the denominator
REFERRALS = {"referrals_due": 1, "referrals_open": 1}


@pytest.fixture
async def sessions(migrated):
    engine = create_engine(bootstrap.service_url(migrated.admin_url, "reporting"), "reporting", 2)
    yield sessionmaker(engine)
    await engine.dispose()


async def apply(sessions, items: list[Item], batch: bool = False) -> None:
    """What the consumer does with each event (without its inbox, so a redelivery reaches the handler)."""
    units = [items] if batch else [[i] for i in items]
    for unit_items in units:
        async with uow.begin(sessions, ReportingUnit) as unit:
            for ce, event in unit_items:
                with unit.handling(ce):
                    await HANDLERS[type(event)](event, unit)
            await unit.commit()


async def every_count(sessions, facility: str) -> dict[str, int]:
    period = parse_period("2026-11")
    async with sessions() as session:
        cells = await counts_by_cell(session, [facility], period.start, period.end)
    return sum_counts(cells.values())


async def november(sessions, facility: str) -> dict[str, int]:
    """The facility's non-zero counts of November 2026."""
    return {k: v for k, v in (await every_count(sessions, facility)).items() if v}


def facility() -> str:
    return f"FAC-CX-{uuid.uuid4().hex[:8]}"


STORIES = [(stat_story, STAT), (delivery_story, DELIVERY), (referral_story, REFERRALS)]


@pytest.mark.parametrize(("story", "expected"), STORIES, ids=["stat_pos", "delivery", "referrals"])
async def test_a_correction_gives_the_hand_counted_figures(sessions, story, expected) -> None:
    s = story(facility())
    await apply(sessions, s.items)
    assert await november(sessions, s.facility) == expected


async def test_pmtct_stat_pos_drops_a_woman_whose_positive_test_is_voided(sessions) -> None:
    s = stat_story(facility())
    replacement = [i for i in s.items if isinstance(i[1], en.HivTestRecorded) and i[1].result == "negative"]
    first = [i for i in s.items if not is_void(i) and i not in replacement]
    await apply(sessions, first)
    # before the corrections: A, B and C newly positive at ANC1
    (stat_pos,) = evaluate(await every_count(sessions, s.facility), [BY_CODE["PMTCT_STAT_POS"]])
    assert (stat_pos.numerator, stat_pos.denominator) == (3, 3)
    await apply(sessions, [i for i in s.items if i not in first])
    # after: A positive; B negative by her replacement result; C with no known status (out of both)
    (stat_pos, stat) = evaluate(
        await every_count(sessions, s.facility), [BY_CODE["PMTCT_STAT_POS"], BY_CODE["PMTCT_STAT"]]
    )
    assert (stat_pos.numerator, stat_pos.denominator) == (1, 2)
    assert (stat.numerator, stat.denominator) == (2, 3)


def shuffled(s: Story, seed: int) -> list[Item]:
    """An arrival order a consumer may see: a void after the event it voids (same key, same partition),
    anything else anywhere, e.g. follow-up's infant events (another topic) after a delivery's void."""
    items = list(s.items)
    random.Random(seed).shuffle(items)
    for v in [i for i in items if is_void(i)]:
        named = next(i for i in items if i[0].id in v[1].voided_ids)
        if items.index(v) < items.index(named):
            items.remove(v)
            items.insert(items.index(named) + 1, v)
    return items


@pytest.mark.parametrize(("story", "expected"), STORIES[:2], ids=["stat_pos", "delivery"])
async def test_any_order_redelivery_or_one_batch_give_the_figures_of_the_events_never_posted(
    sessions, story, expected
) -> None:
    runs = []
    for seed in range(4):
        s = story(facility())
        await apply(sessions, shuffled(s, seed))
        runs.append(s.facility)
    s = story(facility())
    await apply(sessions, [i for i in s.items for _ in range(2)])  # every event delivered twice
    runs.append(s.facility)
    s = story(facility())
    await apply(sessions, s.items, batch=True)
    runs.append(s.facility)
    for place in runs:
        assert await november(sessions, place) == expected, place
    # the same figures as the story without the voided events and their voids, but for CORRECTIONS itself
    s = story(facility())
    await apply(sessions, s.never_posted())
    assert await november(sessions, s.facility) == {k: v for k, v in expected.items() if k != "corrections"}


async def test_each_correction_is_kept_with_what_it_voided(sessions) -> None:
    s = delivery_story(facility())
    await apply(sessions, s.items)
    ((voided, _),) = [i for i in s.items if is_void(i)]
    async with sessions() as session:
        row = (await session.execute(text("SELECT * FROM voids WHERE event_id = :id"), {"id": voided.id})).one()
        infants = (
            await session.execute(text("SELECT count(*) FROM voided_infants WHERE voided_by = :id"), {"id": voided.id})
        ).scalar()
    assert (row.voided_type, row.reason, row.facility_id, row.occurred_on) == (
        "DeliveryRecorded",
        "entered_in_error",
        s.facility,
        date(2026, 11, 20),
    )
    assert infants == 2


# -- through a reporting service of its own: the topics, the rebuild and DHIS2 ------------------------

A, A_UNIT = "FAC-LS-001", "LsMsuFlt001"


@pytest.fixture(scope="module")
async def served(migrated, issuer, tmp_path_factory):
    import mer_cohort
    from mer_support import serve_reporting

    async with serve_reporting(migrated, issuer, tmp_path_factory.mktemp("corrections"), mer_cohort.FACILITIES) as s:
        yield s


async def publish(served, items: list[Item]) -> None:
    for ce, event in items:
        await served.producer.send(event.topic(), ce.value(), key=ce.key, headers=ce.headers())
    await served.producer.flush()
    await served.applied([ce.id for ce, _ in items])


async def cells(served) -> dict:
    async with served.runtime.sessions() as session:
        kept = await repository.read_cells(session, [A], date(2000, 1, 1), date(2100, 1, 1))
    return {cell: {k: v for k, v in counts.items() if v} for cell, counts in kept.items() if any(counts.values())}


@pytest.mark.e2e
async def test_a_correction_revises_the_submitted_periods_in_dhis2_and_a_rebuild_gives_the_live_figures(
    served,
) -> None:
    """The three stories at A, through the topics: everything but the corrections first (and B's
    replacing result); November 2026 and 2026Q4 pushed to DHIS2; then the voids and the replacement.
    The history shows what the corrections changed, the schedule (on 2026-12-10) sends both revisions,
    and `pmtct replay reporting` gives the same cells as the live consumer."""
    stories = [stat_story(A), delivery_story(A), referral_story(A)]
    items = [i for s in stories for i in s.items]
    replacement = [i for i in items if isinstance(i[1], en.HivTestRecorded) and i[1].result == "negative"]
    corrections = [i for i in items if is_void(i) or i in replacement]
    await publish(served, [i for i in items if i not in corrections])
    rt = served.runtime
    december = rt.settings.model_copy(update={"dhis2_push_day": 5}).use_clock(
        Clock.fixed(datetime(2026, 12, 10, 9, tzinfo=UTC))
    )
    for period in ("2026-11", "2026Q4"):
        first = await submissions.push(rt.sessions, rt.registry, december, DataSet.mer, parse_period(period))
        assert first.outcome == "SUCCESS"
    await publish(served, corrections)
    async with rt.sessions() as session:
        _, changed = await submissions.changed_since(
            session, rt.registry, december, DataSet.mer, parse_period("2026-11")
        )
    # before: A, B, C newly positive (3) and the twins' and E's NATs at birth (3: one positive, two negative);
    # after: A newly positive, B new negative, E's baby's NAT only
    assert [(c.dataElement, c.categoryOptionCombo, c.orgUnit, c.sent, c.now) for c in changed] == [
        ("PMTCT_EID_N", "INFANT_AGE_0-2M", A_UNIT, "3", "1"),
        ("PMTCT_HEI_N", "NEGATIVE_INFANT_AGE_0-2M", A_UNIT, "2", "1"),
        ("PMTCT_HEI_N", "POSITIVE_INFANT_AGE_0-2M", A_UNIT, "1", "0"),
        ("PMTCT_STAT_N", "NEW_NEG_AGE_25-29_F", A_UNIT, "0", "1"),
        ("PMTCT_STAT_N", "NEW_POS_AGE_25-29_F", A_UNIT, "3", "1"),
    ]
    revised = await submissions.scheduled_push(rt.sessions, rt.registry, december)
    assert [(r.period, r.trigger, r.outcome) for r in revised] == [
        ("2026-11", "scheduled", "SUCCESS"),
        ("2026Q4", "scheduled", "SUCCESS"),
    ]
    for dhis2_period in ("202611", "2026Q4"):
        value = served.dhis2.values[("PMTCT_STAT_N", dhis2_period, A_UNIT, "NEW_POS_AGE_25-29_F", "MECH_PMTCT_M2M")]
        assert value == "1"
    assert await submissions.scheduled_push(rt.sessions, rt.registry, december) == []
    # the figures of the three stories together, by hand (their sums: STAT, DELIVERY and REFERRALS above)
    november = {k: STAT.get(k, 0) + DELIVERY.get(k, 0) + REFERRALS.get(k, 0) for k in {*STAT, *DELIVERY, *REFERRALS}}
    live = await cells(served)
    # and E's baby in the PMTCT_FO birth cohort reported 24 months after the birth month (the twins are not)
    assert live == {(A, date(2026, 11, 1)): november, (A, date(2028, 11, 1)): {"fo_cohort": 1}}
    result = await replay.rebuild(served.settings, sized=lambda n: None, advanced=lambda n: None)
    assert result.failed == 0 and result.applied == len(items)
    assert await cells(served) == live
