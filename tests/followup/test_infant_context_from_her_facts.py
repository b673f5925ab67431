"""An HIV-exposed infant's context at birth (is it exposed, is it high risk) follows its mother's
facts dated on or before the birth, not the delivery's `mother_*` fields (issue 17, any order).

Enrolment writes a DeliveryRecorded's `mother_hiv_status`, `mother_diagnosed_on`,
`mother_art_start_date` and `mother_latest_viral_load` as it knew her when the delivery arrived: a
positive test dated before the delivery and posted after it is not in them, a test voided later
still is. Follow-up keeps her events and derives her case from them in the order they happened
(`corrections.replay`, the stream's own fold); the delivery's account is read only when it knows no
enrolment of hers by then (`stream.reads_delivery_account`). High risk: WHO 2025 updated
recommendations on HIV clinical management, infant postnatal prophylaxis, definition of high-risk
infants (docs/clinical-rules.md, "High risk"); exposure: WHO 2021 consolidated guidelines, §2.5.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from uuid import uuid4

import pytest
from followup_support import FACILITY, SIM_START, live_infant, new_mother
from followup_support import at as at_
from sqlalchemy import text

from enrolment import domain
from followup.cases import MotherCase
from followup.corrections import Exposure, Newborn, Standing, replay
from followup.eid_schedule import EidRules
from followup.mother_schedule import MotherRules
from followup.stream import reads_delivery_account
from pmtct_events.enrolment import (
    ArtInitiated,
    BirthOutcome,
    ClientEnrolled,
    ClientEvent,
    DeliveredInfant,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    InfantSex,
    ViralLoadRecorded,
    ViralLoadResult,
)
from pmtct_events.followup import HighRiskReason as R
from servicekit.clock import Clock

CLIENT = uuid4()
EPISODE = uuid4()
INFANT = uuid4()
START = date(2026, 1, 5)
BIRTH = date(2026, 7, 13)
CLOCK = Clock.fixed(datetime(2026, 12, 1, tzinfo=UTC))
EID = EidRules()


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def common(day: date, hour: int = 9) -> dict:
    return {"client_id": CLIENT, "facility_id": "FAC-ZA-001", "occurred_at": at(day, hour), "episode_id": EPISODE}


def enrolled(day: date = START, **kw) -> ClientEnrolled:
    values = {"status_at_enrolment": "pregnant", "age_years": 25, "hiv_status": "unknown", "on_art": False}
    return ClientEnrolled(**common(day), **{**values, **kw})


def hiv(day: date, result: str) -> HivTestRecorded:
    return HivTestRecorded(**common(day, 10), result=result, setting="anc")


def art(day: date) -> ArtInitiated:
    return ArtInitiated(**common(day, 11))


def vl(day: date, copies: int) -> ViralLoadRecorded:
    return ViralLoadRecorded(**common(day, 12), copies_per_ml=copies, suppressed=copies < 1000)


def delivery(**account) -> DeliveryRecorded:
    baby = DeliveredInfant(infant_id=INFANT, sex=InfantSex.female, outcome=BirthOutcome.live_birth)
    return DeliveryRecorded(
        **common(BIRTH, 14),
        place="facility",
        skilled_attendant=True,
        maternal_outcome="alive",
        infants=[baby],
        **account,
    )


def context(events: list[ClientEvent]) -> Exposure:
    """The infant's exposure (start, high-risk reasons) from her standing events (`replay`)."""
    kept = [Standing(uuid4(), e, CLOCK.local_day(e.occurred_at)) for e in events]
    born = next(s.event_id for s in kept if isinstance(s.event, DeliveryRecorded))
    folded = replay(CLIENT, "FAC-ZA-001", kept, [Newborn(INFANT, BIRTH, born)], EID, MotherRules())
    return folded.exposure[INFANT]


def days(n: int) -> timedelta:
    return timedelta(days=n)


POSITIVE = {"mother_hiv_status": HivStatus.positive, "mother_diagnosed_on": BIRTH - days(60)}


@pytest.mark.parametrize(
    "case, events, expected",
    [
        (
            "a positive test before the delivery, posted after it: exposed from birth; no ART,"
            " an incident infection after her ANC1 negative (WHO 2025 high risk (1), (3))",
            [enrolled(), hiv(START, "negative"), hiv(BIRTH - days(60), "positive"), delivery()],
            (BIRTH, [R.no_art, R.incident_infection]),
        ),
        (
            "ART 3 weeks before the delivery, unknown to it: fewer than 4 weeks of ART (WHO 2025 (1))",
            [enrolled(), hiv(BIRTH - days(60), "positive"), art(BIRTH - days(21)), delivery()],
            (BIRTH, [R.art_under_4_weeks]),
        ),
        (
            "ART 10 weeks before, a VL of 5,000 two weeks before the delivery it does not know of (WHO 2025 (2))",
            [
                enrolled(),
                hiv(BIRTH - days(80), "positive"),
                art(BIRTH - days(70)),
                vl(BIRTH - days(14), 5000),
                delivery(mother_hiv_status=HivStatus.positive, mother_art_start_date=BIRTH - days(70)),
            ],
            (BIRTH, [R.viral_load_above_threshold]),
        ),
        (
            "the delivery says positive, from a test voided since (not among her facts): not exposed",
            [enrolled(), hiv(START, "negative"), delivery(**POSITIVE)],
            None,
        ),
        (
            "the delivery says suppressed on ART for years, from an enrolment voided since: her facts"
            " say ART 2 weeks before the birth",
            [
                enrolled(hiv_status="positive", hiv_status_known_since=START),
                art(BIRTH - days(14)),
                delivery(
                    **POSITIVE,
                    mother_art_start_date=date(2020, 1, 6),
                    mother_latest_viral_load=ViralLoadResult(copies_per_ml=40, on=BIRTH - days(10)),
                ),
            ],
            (BIRTH, [R.art_under_4_weeks]),
        ),
        (
            "positive first after the birth (breastfeeding): exposed from her diagnosis, diagnosed"
            " postpartum (WHO 2025 (4))",
            [enrolled(), hiv(START, "negative"), delivery(), hiv(BIRTH + days(30), "positive")],
            (BIRTH + days(30), [R.no_art, R.incident_infection, R.diagnosed_in_labour_or_postpartum]),
        ),
        (
            "no enrolment of hers known to follow-up by the delivery: its account is all there is",
            [delivery(**POSITIVE, mother_art_start_date=BIRTH - days(200))],
            (BIRTH, []),
        ),
    ],
    ids=lambda v: v.split(":")[0] if isinstance(v, str) else "",
)
def test_the_infants_context_follows_her_facts_dated_on_or_before_the_birth(case, events, expected) -> None:
    for order in itertools.permutations(events):
        assert context(list(order)) == expected, case


def test_the_delivery_account_is_read_only_without_an_enrolment_of_hers() -> None:
    known = MotherCase(CLIENT, "FAC-ZA-001")
    assert reads_delivery_account(known)
    known.enrolled_on = START
    assert not reads_delivery_account(known)


# --- every arrival order, with the account enrolment would give the delivery on its arrival --------


def as_published(arrivals: list[ClientEvent]) -> list[ClientEvent]:
    """The events as enrolment publishes them in this arrival order: the delivery's `mother_*`
    decided against what it had recorded by then (enrolment.intake, enrolment.domain's rules)."""
    recorded: list[ClientEvent] = []
    for e in arrivals:
        if isinstance(e, DeliveryRecorded):
            history = domain.ClientHistory(events=list(recorded), clock=CLOCK)
            load = domain.latest_viral_load(history, e.occurred_at)
            e = e.model_copy(
                update={
                    "mother_hiv_status": domain.hiv_status_at(history, e.occurred_at),
                    "mother_diagnosed_on": domain.diagnosed_on(history, e.occurred_at),
                    "mother_art_start_date": domain.art_started_on(history, e.occurred_at),
                    "mother_latest_viral_load": (
                        ViralLoadResult(copies_per_ml=load.copies_per_ml, on=history.day_of(load.occurred_at))
                        if load is not None
                        else None
                    ),
                }
            )
        recorded.append(e)
    return recorded


STORY: list[ClientEvent] = [
    enrolled(),
    hiv(START, "negative"),
    hiv(BIRTH - days(45), "positive"),
    art(BIRTH - days(20)),
    vl(BIRTH - days(7), 2400),
    delivery(),
]


def arrival_orders(events: list[ClientEvent]) -> list[list[ClientEvent]]:
    """Her enrolment first (enrolment holds her other events until it), the rest in every order."""
    return [[events[0], *rest] for rest in itertools.permutations(events[1:])]


def test_every_arrival_order_gives_the_infant_one_context() -> None:
    accounts, found = set(), set()
    for order in arrival_orders(STORY):
        published = as_published(order)
        (born,) = (e for e in published if isinstance(e, DeliveryRecorded))
        accounts.add((born.mother_hiv_status, born.mother_art_start_date, born.mother_latest_viral_load))
        exposure = context(published)
        found.add((exposure[0], tuple(exposure[1])) if exposure else None)
    assert len(accounts) > 4, "the delivery said other things in other orders (the test means something)"
    assert found == {(BIRTH, (R.art_under_4_weeks, R.viral_load_above_threshold, R.incident_infection))}


def test_every_arrival_order_then_a_void_of_her_positive_test_leaves_the_infant_unexposed() -> None:
    """Her only positive test voided (entered in error): the infant is not HIV-exposed, whether the
    delivery arrived before the test (its account unknown) or after it (its account positive)."""
    events = [enrolled(), hiv(START, "negative"), hiv(BIRTH - days(45), "positive"), delivery()]
    positive = events[2]
    accounts, found = set(), set()
    for order in arrival_orders(events):
        published = as_published(order)
        accounts.update(e.mother_hiv_status for e in published if isinstance(e, DeliveryRecorded))
        exposure = context([e for e in published if e is not positive])
        found.add((exposure[0], tuple(exposure[1])) if exposure else None)
    assert accounts == {HivStatus.positive, HivStatus.negative, HivStatus.unknown}
    assert found == {None}


# --- through the consumer's handler, against the database -------------------------------------------


async def test_a_voided_positive_test_the_delivery_had_counted_leaves_her_infant_unexposed(followup) -> None:
    """Positive test, then her delivery (enrolment's account: positive since that test), then the
    test voided: her infant's follow-up ends as if the test had never been posted (on main it stayed
    exposed and high risk, from the delivery's account)."""
    mother, baby = new_mother(), live_infant()
    positive = mother.tested(SIM_START - days(60), "positive", "anc")
    _, test_id, _ = await followup.apply(
        mother.enrolled(SIM_START - days(200), HivStatus.unknown, on_art=False),
        positive,
        mother.delivered(SIM_START, [baby], hiv_status=HivStatus.positive, diagnosed_on=SIM_START - days(60)),
    )
    assert (await infant_row(followup, baby.infant_id))[:2] == (True, ["no_art"])
    await followup.apply(mother.voided(SIM_START + days(3), positive, test_id))
    assert (await infant_row(followup, baby.infant_id))[:2] == (False, [])


async def test_a_back_dated_positive_test_posted_after_the_delivery_makes_her_infant_exposed_and_high_risk(
    followup,
) -> None:
    """The delivery's account says unknown (it arrived first); her positive test dated two months
    before it, and her ART three weeks before, arrive after: exposed from birth, high risk for fewer
    than 4 weeks of ART (WHO 2025), as in the order they happened."""
    mother, baby = new_mother(), live_infant()
    await followup.apply(
        mother.enrolled(SIM_START - days(200), HivStatus.unknown, on_art=False),
        mother.delivered(SIM_START, [baby], hiv_status=HivStatus.unknown),
    )
    assert (await infant_row(followup, baby.infant_id))[:2] == (False, [])
    await followup.apply(
        mother.tested(SIM_START - days(60), "positive", "anc"),
        ArtInitiated(facility_id=FACILITY, occurred_at=at_(SIM_START - days(21)), client_id=mother.client_id),
    )
    assert (await infant_row(followup, baby.infant_id)) == (True, ["art_under_4_weeks"], SIM_START)


async def infant_row(followup, infant_id) -> tuple:
    async with followup.sessions() as session:
        row = (
            await session.execute(
                text("SELECT in_follow_up, high_risk_reasons, follow_up_from FROM infants WHERE infant_id = :i"),
                {"i": infant_id},
            )
        ).one()
    return tuple(row)
