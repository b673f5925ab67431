"""A mother's figures are a function of her facts, not of the order they arrived in (issue 17,
"any order"). Enrolment publishes some fields as it knew them when each event arrived (a test's
`status_before`, `anc_visit_number` and `period`, an ART start's `period`, an ANC visit's
`opens_episode`, an enrolment's `transfer_in`, a delivery's `mother_hiv_status`); reporting
derives each of them again from her facts in the order they happened
(reporting.episodes), table-tested here, and a permutation test posts one woman's facts in every
order, with the fields enrolment's own rules give each event on arrival in that order, and finds the
same episodes, post-ANC1 tests and counts."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from enrolment import domain
from pmtct_events import CloudEvent, Event
from pmtct_events import enrolment as en
from reporting import repository
from reporting.episodes import (
    AncVisit,
    ArtStart,
    Delivered,
    Enrolled,
    HivTest,
    Period,
    PregnancyEnded,
    anc1_openers,
    anc_visit_on,
    derive,
    known_positive_at,
    known_positive_before,
    transfers_in,
)
from reporting.facts import Table, facts_of
from reporting.handlers import build
from reporting.repository import ReportingUnit
from reporting.settings import Settings
from servicekit import bootstrap, uow
from servicekit.clock import Clock
from servicekit.db import create_engine, sessionmaker

CLOCK = Clock.fixed(datetime(2027, 6, 1, tzinfo=UTC))


def at(day: str, hour: int = 9) -> tuple[datetime, date]:
    moment = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
    return moment, moment.date()


def enrolled(
    day: str, hiv: str = "unknown", status: str = "pregnant", facility: str = "FAC-A", on_art: bool = False, **kw
) -> Enrolled:
    return Enrolled(*at(day), facility, status, hiv, on_art, False, **kw)


def hiv(day: str, result: str, hour: int = 10) -> HivTest:
    return HivTest(*at(day, hour), result, "anc")


# --- each derivation, table-tested ------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, facts, when, known",
    [
        ("nothing known", [enrolled("2026-01-05")], at("2026-02-01"), False),
        ("a positive test before it", [hiv("2026-01-05", "positive")], at("2026-02-01"), True),
        (
            "a positive test of the same instant is not before it",
            [hiv("2026-02-01", "positive")],
            at("2026-02-01", 10),
            False,
        ),
        ("a positive test after it", [hiv("2026-03-01", "positive")], at("2026-02-01"), False),
        ("a negative test before it", [hiv("2026-01-05", "negative")], at("2026-02-01"), False),
        (
            "enrolled known positive, undated: since the enrolment",
            [enrolled("2026-01-05", "positive")],
            at("2026-01-05", 10),
            True,
        ),
        (
            "enrolled known positive, undated: not before the enrolment",
            [enrolled("2026-01-05", "positive")],
            at("2026-01-04"),
            False,
        ),
        (
            "enrolled known positive since a day before the enrolment: known from that day",
            [enrolled("2026-01-05", "positive", known_since=date(2025, 11, 2))],
            at("2025-11-02", 10),
            True,
        ),
        (
            "enrolled known positive since a day: not the day before",
            [enrolled("2026-01-05", "positive", known_since=date(2025, 11, 2))],
            at("2025-11-01"),
            False,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_known_positive_before_a_moment(case, facts, when, known) -> None:
    """HivTestRecorded.status_before == positive, from the facts (enrolment.domain.hiv_status_before)."""
    assert known_positive_before(facts, *when) is known


def test_the_anc_visit_of_a_day_is_the_highest_number_recorded_that_day() -> None:
    visits = [AncVisit(*at("2026-01-05"), 1), AncVisit(*at("2026-02-02"), 2), AncVisit(*at("2026-02-02", 15), 3)]
    assert [anc_visit_on(visits, d) for d in (date(2026, 1, 5), date(2026, 2, 2), date(2026, 3, 2))] == [1, 3, None]


@pytest.mark.parametrize(
    "case, period, moment, where",
    [
        ("entered pregnant, nothing ended", Period(True), at("2026-05-01"), "pregnancy"),
        (
            "entered pregnant, before the delivery",
            Period(True, at("2026-06-01")[0], True),
            at("2026-05-01"),
            "pregnancy",
        ),
        ("at the delivery's instant", Period(True, at("2026-06-01")[0], True), at("2026-06-01"), "postnatal"),
        ("after the delivery", Period(True, at("2026-06-01")[0], True), at("2026-07-01"), "postnatal"),
        ("after a pregnancy loss", Period(True, at("2026-03-01")[0], False), at("2026-04-01"), "not_pregnant"),
        ("entered postnatal", Period(False), at("2026-05-01"), "postnatal"),
        (
            "a delivery nobody saw the pregnancy of: before it",
            Period(False, at("2026-06-01")[0], True),
            at("2026-05-01"),
            "pregnancy",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_period_of_care_of_a_moment(case, period, moment, where) -> None:
    """enrolment.domain.Episode.period_at, from the episode's facts."""
    assert period.at(moment[0]) == where


@pytest.mark.parametrize(
    "case, facts, opening",
    [
        ("her first ANC1 opens her first episode: not a new one", [AncVisit(*at("2026-01-05"), 1)], []),
        (
            "an ANC1 after a delivery opens a new pregnancy",
            [enrolled("2025-01-06"), Delivered(*at("2025-07-07")), AncVisit(*at("2026-03-16"), 1)],
            [2],
        ),
        (
            "an ANC1 after a pregnancy loss opens a new pregnancy",
            [enrolled("2025-01-06"), PregnancyEnded(*at("2025-03-03")), AncVisit(*at("2025-09-01"), 1)],
            [2],
        ),
        (
            "an ANC1 during an ongoing pregnancy opens nothing",
            [enrolled("2026-01-05"), AncVisit(*at("2026-01-05", 10), 1)],
            [],
        ),
        (
            "a later visit after a delivery opens nothing",
            [enrolled("2025-01-06"), Delivered(*at("2025-07-07")), AncVisit(*at("2026-03-16"), 3)],
            [],
        ),
        (
            "an enrolment of the new pregnancy opened it: its ANC1 of that day opens nothing",
            [
                enrolled("2025-01-06"),
                Delivered(*at("2025-07-07")),
                enrolled("2026-03-16"),
                AncVisit(*at("2026-03-16", 10), 1),
            ],
            [],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_which_anc1_visits_open_a_new_pregnancy(case, facts, opening) -> None:
    """AncVisitRecorded.opens_episode, from the facts (enrolment.domain.episodes), whatever their order."""
    for order in itertools.permutations(facts):
        openers = anc1_openers(order)
        assert [n for n, f in enumerate(facts) if id(f) in openers] == opening


DELIVERY = at("2026-07-20", 12)


@pytest.mark.parametrize(
    "case, facts, positive",
    [
        ("nothing known", [enrolled("2026-01-05")], False),
        ("a negative test in pregnancy", [enrolled("2026-01-05"), hiv("2026-01-05", "negative")], False),
        ("a positive test before the delivery", [enrolled("2026-01-05"), hiv("2026-03-02", "positive")], True),
        ("a positive test of the delivery's day, before it", [hiv("2026-07-20", "positive", hour=8)], True),
        ("a positive test at the delivery's instant", [hiv("2026-07-20", "positive", hour=12)], True),
        ("a positive test after the delivery (postpartum)", [hiv("2026-07-20", "positive", hour=15)], False),
        ("a positive test while breastfeeding", [hiv("2026-09-01", "positive")], False),
        ("enrolled known positive before it", [enrolled("2026-01-05", "positive")], True),
        (
            "enrolled known positive after it, positive since before it",
            [enrolled("2026-08-03", "positive", "postnatal", known_since=date(2026, 2, 1))],
            True,
        ),
        (
            "enrolled known positive after it, positive since after it",
            [enrolled("2026-08-03", "positive", "postnatal", known_since=date(2026, 7, 25))],
            False,
        ),
        ("enrolled known positive after it, undated", [enrolled("2026-08-03", "positive", "postnatal")], False),
        (
            "on ART before it (her positive test dated later)",
            [ArtStart(*at("2026-05-01")), hiv("2026-08-01", "positive")],
            True,
        ),
        (
            "enrolled after it, on ART since before it",
            [enrolled("2026-08-03", "unknown", "postnatal", on_art=True, art_start_date=date(2025, 5, 1))],
            True,
        ),
        ("ART started after it", [enrolled("2026-01-05"), ArtStart(*at("2026-08-01"))], False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_known_positive_at_her_delivery(case, facts, positive) -> None:
    """DeliveryRecorded.mother_hiv_status == positive as it would be in order (enrolment.domain.hiv_status_at,
    and ART, which only a woman living with HIV takes: WHO 2021 consolidated guidelines), whatever order."""
    for order in itertools.permutations(facts):
        assert known_positive_at(order, *DELIVERY) is positive


@pytest.mark.parametrize(
    "case, facts, transfers",
    [
        ("her only enrolment", [enrolled("2026-01-05")], []),
        ("another facility in her pregnancy", [enrolled("2026-01-05"), enrolled("2026-04-01", facility="FAC-B")], [1]),
        (
            "another facility the same instant: one of them, by facility",
            [enrolled("2026-01-05", facility="FAC-B"), enrolled("2026-01-05")],
            [0],
        ),
        (
            "back at the first facility (enrolment accepts it only after a transfer out)",
            [enrolled("2026-01-05"), enrolled("2026-03-01", facility="FAC-B"), enrolled("2026-05-04")],
            [1, 2],
        ),
        (
            "postnatal elsewhere after her delivery",
            [
                enrolled("2026-01-05"),
                Delivered(*at("2026-07-20")),
                enrolled("2026-08-03", "unknown", "postnatal", "FAC-B"),
            ],
            [2],
        ),
        (
            "postnatal elsewhere in her pregnancy: she delivered (a delivery nobody posted)",
            [enrolled("2026-01-05"), enrolled("2026-08-03", "unknown", "postnatal", "FAC-B")],
            [1],
        ),
        (
            "pregnant again after a delivery: a new pregnancy",
            [enrolled("2025-01-06"), Delivered(*at("2025-07-07")), enrolled("2026-03-16", facility="FAC-B")],
            [],
        ),
        (
            "pregnant again after a loss",
            [enrolled("2026-01-05"), PregnancyEnded(*at("2026-03-02")), enrolled("2026-09-07", facility="FAC-B")],
            [],
        ),
        (
            "postnatal after a loss: an episode of its own",
            [enrolled("2026-01-05"), PregnancyEnded(*at("2026-03-02")), enrolled("2027-01-04", "unknown", "postnatal")],
            [],
        ),
        (
            "an ANC1 of a new pregnancy opened it: an enrolment elsewhere in it is a transfer",
            [
                enrolled("2025-01-06"),
                Delivered(*at("2025-07-07")),
                AncVisit(*at("2026-03-16"), 1),
                enrolled("2026-05-04", facility="FAC-B"),
            ],
            [3],
        ),
        (
            "her first enrolment, after an ANC visit of her pregnancy, opens her first episode",
            [AncVisit(*at("2026-01-05"), 2), enrolled("2026-02-02")],
            [],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_which_enrolments_are_transfers_in(case, facts, transfers) -> None:
    """ClientEnrolled.transfer_in as enrolment decides it in order (enrolment.domain.episodes and
    enrolment_opens_episode; intake: her first enrolment is never one), whatever order the facts are in."""
    for order in itertools.permutations(facts):
        moved = transfers_in(order)
        assert [n for n, f in enumerate(facts) if id(f) in moved] == transfers


# --- every order of one woman's facts -------------------------------------------------------------


def story(client: uuid.UUID, facility: str) -> list[Event]:
    """One woman: enrolled at ANC1 and tested negative there, positive two months later and on ART
    the next day, delivered, retested positive while breastfeeding, and back at ANC1 of a new
    pregnancy the year after."""
    common = {"client_id": client, "facility_id": facility}
    return [
        en.ClientEnrolled(
            **common,
            occurred_at=at("2026-01-05")[0],
            status_at_enrolment="pregnant",
            age_years=27,
            hiv_status="unknown",
            on_art=False,
            gestation_weeks=12,
        ),
        en.AncVisitRecorded(**common, occurred_at=at("2026-01-05", 9)[0].replace(minute=30), visit_number=1),
        en.HivTestRecorded(**common, occurred_at=at("2026-01-05", 10)[0], result="negative", setting="other"),
        en.HivTestRecorded(**common, occurred_at=at("2026-03-02", 10)[0], result="positive", setting="anc"),
        en.ArtInitiated(**common, occurred_at=at("2026-03-03")[0]),
        en.DeliveryRecorded(
            **common,
            occurred_at=at("2026-07-20")[0],
            place="facility",
            skilled_attendant=True,
            maternal_outcome="alive",
            infants=[en.DeliveredInfant(infant_id=uuid.uuid4(), sex="female", outcome="live_birth")],
        ),
        en.HivTestRecorded(**common, occurred_at=at("2026-09-01", 10)[0], result="positive", setting="other"),
        en.AncVisitRecorded(**common, occurred_at=at("2027-03-01")[0], visit_number=1),
    ]


def as_published(arrivals: list[Event]) -> list[Event]:
    """The events as enrolment publishes them when they arrive in this order, each decided against
    what it had recorded by then (enrolment.intake: the fields of `plan`, with enrolment.domain's
    rules; an ART start with no positive status recorded before it is held until her next event, and
    decided with it in the order they happened)."""
    recorded: list[Event] = []
    held: list[Event] = []
    for arriving in arrivals:
        batch, held = sorted([*held, arriving], key=lambda e: e.occurred_at), []
        for e in batch:
            history = domain.ClientHistory(events=list(recorded), clock=CLOCK)
            plain = domain.episodes(history)
            episode = domain.episode_at(plain, e.occurred_at)
            day = CLOCK.local_day(e.occurred_at)
            match e:
                case en.ClientEnrolled() if recorded:
                    if history.at(e.facility_id, en.ClientEnrolled):
                        transfer = domain.enrolment_opens_episode(history, e.facility_id, e)
                    else:
                        mine = domain.episode_of(domain.episodes(history, e), e)
                        transfer = mine is None or mine.opener is not e
                    e = e.model_copy(update={"transfer_in": transfer})
                case en.ArtInitiated() if not domain.known_positive_on(history, day):
                    held.append(e)
                    continue
                case en.HivTestRecorded():
                    e = e.model_copy(
                        update={
                            "status_before": domain.hiv_status_before(history, e.occurred_at),
                            "anc_visit_number": domain.anc_visit_on(history, plain, episode, day),
                            "period": episode.period_at(e.occurred_at) if episode else None,
                        }
                    )
                case en.ArtInitiated():
                    e = e.model_copy(update={"period": episode.period_at(e.occurred_at) if episode else None})
                case en.AncVisitRecorded():
                    mine = domain.episode_of(domain.episodes(history, e), e)
                    e = e.model_copy(
                        update={"opens_episode": mine is not None and mine.opener is e and mine.number > 1}
                    )
                case en.DeliveryRecorded():
                    e = e.model_copy(update={"mother_hiv_status": domain.hiv_status_at(history, e.occurred_at)})
            recorded.append(e)
    assert not held
    return recorded


def hints(published: list[Event]) -> tuple:
    """What enrolment said on arrival, by the event's instant."""
    return tuple(
        sorted(
            (
                e.occurred_at,
                getattr(e, "status_before", None),
                getattr(e, "anc_visit_number", None),
                str(getattr(e, "period", None)),
                getattr(e, "opens_episode", None),
                getattr(e, "transfer_in", None),
                str(getattr(e, "mother_hiv_status", None)),
            )
            for e in published
        )
    )


def orders(events: list[Event]) -> list[list[Event]]:
    """Her enrolment first (an EMR's event for a woman not enrolled yet is held until it: it is
    decided after it), the rest in every order."""
    first, rest = events[0], events[1:]
    return [[first, *order] for order in itertools.permutations(rest)]


def derived(client: uuid.UUID, published: list[Event]) -> tuple:
    rows = [
        f.row for e in published for f in facts_of(CloudEvent.from_event(e), e, CLOCK) if f.table is Table.mother_facts
    ]
    facts = [f for f in (repository._mother_fact(SimpleNamespace(**row)) for row in rows) if f is not None]
    episodes, tests = derive(client, facts)
    return tuple(episodes), tuple((t.tested_on, t.modality, t.result, t.newly_positive) for t in tests)


def test_every_arrival_order_of_her_facts_gives_the_same_episodes_and_post_anc1_tests() -> None:
    client = uuid.uuid4()
    events = story(client, "FAC-A")
    every = orders(events)
    assert len(every) == 5040
    said, results = set(), set()
    for order in every:
        published = as_published(order)
        said.add(hints(published))
        results.add(derived(client, published))
    assert len(said) > 1, "enrolment says other things in other orders (the test means something)"
    assert len(results) == 1
    ((first, second), tests) = results.pop()
    assert (first.anc1_on, first.stat_status, first.art_status) == (date(2026, 1, 5), "new_negative", "new")
    assert (second.anc1_on, second.opened_by, second.stat_status, second.art_status) == (
        date(2027, 3, 1),
        "anc1",
        "known_positive",
        "already",
    )
    # the positive two months after ANC1 is her post-ANC1 diagnosis; the retest while breastfeeding,
    # of a woman known positive, is not a test HTS_TST counts
    assert tests == ((date(2026, 3, 2), "pregnancy", "positive", True),)


def moved_story(client: uuid.UUID) -> list[Event]:
    """One woman: enrolled at FAC-A in pregnancy, transferred in at FAC-B, tested positive there (a
    test dated before her delivery), on ART, delivered at FAC-B."""

    def common(facility: str) -> dict:
        return {"client_id": client, "facility_id": facility}

    def enrolment(facility: str, day: str) -> en.ClientEnrolled:
        return en.ClientEnrolled(
            **common(facility),
            occurred_at=at(day)[0],
            status_at_enrolment="pregnant",
            age_years=24,
            hiv_status="unknown",
            on_art=False,
        )

    return [
        enrolment("FAC-A", "2026-01-05"),
        enrolment("FAC-B", "2026-04-01"),
        en.HivTestRecorded(**common("FAC-B"), occurred_at=at("2026-06-01", 10)[0], result="positive", setting="anc"),
        en.ArtInitiated(**common("FAC-B"), occurred_at=at("2026-06-02")[0]),
        en.DeliveryRecorded(
            **common("FAC-B"),
            occurred_at=at("2026-07-20")[0],
            place="facility",
            skilled_attendant=True,
            maternal_outcome="alive",
            infants=[en.DeliveredInfant(infant_id=uuid.uuid4(), sex="male", outcome="live_birth")],
        ),
    ]


def positive_at_deliveries(published: list[Event]) -> tuple[bool, ...]:
    rows = [
        f.row for e in published for f in facts_of(CloudEvent.from_event(e), e, CLOCK) if f.table is Table.mother_facts
    ]
    facts = [f for f in (repository._mother_fact(SimpleNamespace(**row)) for row in rows) if f is not None]
    return tuple(known_positive_at(facts, f.occurred_at, f.on) for f in facts if isinstance(f, Delivered))


def test_every_arrival_order_of_a_transfer_in_and_a_late_positive_gives_the_same_figures() -> None:
    """Whichever of her two enrolments arrives first (each held event waits for one), and whether the
    positive test arrives before or after the delivery: one episode where she first enrolled, and the
    delivery is to a mother known positive at it — though enrolment published transfer_in false for
    both enrolments in some orders, and the delivery's mother_hiv_status unknown in others."""
    client = uuid.uuid4()
    events = moved_story(client)
    every = [list(o) for o in itertools.permutations(events) if isinstance(o[0], en.ClientEnrolled)]
    assert len(every) == 48
    transfer_flags, statuses, results = set(), set(), set()
    for order in every:
        published = as_published(order)
        transfer_flags.add(tuple(sorted(e.transfer_in for e in published if isinstance(e, en.ClientEnrolled))))
        statuses.update(str(e.mother_hiv_status) for e in published if isinstance(e, en.DeliveryRecorded))
        results.add((derived(client, published), positive_at_deliveries(published)))
    assert transfer_flags == {(False, False), (False, True)}, "enrolment said other things in other orders"
    assert statuses == {"positive", "unknown"}
    assert len(results) == 1
    ((episodes, _tests), positive) = results.pop()
    assert [(e.facility_id, e.enrolled_on, e.first_positive_on, e.art_status) for e in episodes] == [
        ("FAC-A", date(2026, 1, 5), date(2026, 6, 1), "new")
    ]
    assert positive == (True,)


@pytest.fixture
async def sessions(migrated):
    engine = create_engine(bootstrap.service_url(migrated.admin_url, "reporting"), "reporting", 2)
    yield sessionmaker(engine)
    await engine.dispose()


async def test_her_rows_in_the_read_model_are_the_same_in_any_arrival_order(sessions) -> None:
    """Through the read model (the consumer's handlers, one event a unit): in order, reversed and in
    seeded random orders, her episodes and post-ANC1 tests are the same rows."""
    handlers = build(Settings(timezone="UTC"))
    every = orders(story(uuid.uuid4(), "FAC-A"))
    chosen = [every[0], every[-1], *random.Random(17).sample(every, 4)]
    rows = []
    published_status: set[str] = set()
    for order in chosen:
        client = uuid.uuid4()
        facility = f"FAC-ANY-{uuid.uuid4().hex[:8]}"
        swap = {order[0].client_id: client}
        published = as_published(
            [e.model_copy(update={"client_id": swap[e.client_id], "facility_id": facility}) for e in order]
        )
        for e in published:
            async with uow.begin(sessions, ReportingUnit) as unit:
                with unit.handling(CloudEvent.from_event(e)):
                    await handlers[type(e)](e, unit)
                await unit.commit()
        async with sessions() as session:
            episodes = (
                await session.execute(
                    text(
                        "SELECT enrolled_on, anc1_on, stat_status, art_status, opened_by, first_positive_on"
                        " FROM enrolments WHERE client_id = :c ORDER BY enrolled_on"
                    ),
                    {"c": client},
                )
            ).all()
            tests = (
                await session.execute(
                    text("SELECT tested_on, modality, result, newly_positive FROM mother_tests WHERE client_id = :c"),
                    {"c": client},
                )
            ).all()
            # her delivery, posted before her positive test in some of these orders
            delivery = (
                await session.execute(
                    text(
                        "SELECT d.mother_hiv_status, d.positive_at_delivery, c.hiv_pos_deliveries FROM deliveries d"
                        " JOIN monthly_counts c ON c.facility_id = d.facility_id AND c.month = '2026-07-01'"
                        " WHERE d.client_id = :c"
                    ),
                    {"c": client},
                )
            ).one()
        published_status.add(delivery[0])
        rows.append((tuple(map(tuple, episodes)), tuple(map(tuple, tests)), tuple(delivery[1:])))
    assert len(published_status) > 1, "some orders posted the delivery before her positive test"
    assert len(set(rows)) == 1
    episodes, tests, delivery = rows[0]
    assert delivery == (True, 1)
    assert episodes == (
        (date(2026, 1, 5), date(2026, 1, 5), "new_negative", "new", "enrolment", date(2026, 3, 2)),
        (date(2027, 3, 1), date(2027, 3, 1), "known_positive", "already", "anc1", None),
    )
    assert tests == ((date(2026, 3, 2), "pregnancy", "positive", True),)
