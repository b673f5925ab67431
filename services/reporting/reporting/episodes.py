"""A mother's enrolment episodes and her post-ANC1 tests, derived from her facts: what the mother
indicators count (PEPFAR MER 2.8 PMTCT_STAT, PMTCT_ART, and HTS_TST's Post ANC1 modality; see
docs/indicators.md for each definition, its source and section).

A woman can enrol more than once with the same platform `client_id`: a new pregnancy after a
delivery opens a new episode; a transfer to another facility does not (`transfers_in`: her ANC1 was
counted where she first enrolled, and her later tests and ART still belong to that pregnancy).
Each later fact belongs to the episode whose enrolment day is the latest on or before its own day
(clinical registers record days; a fact's day is the programme-local day it happened on, `on`).

What MER asks of an episode, from the facts alone:

- **ANC1.** The day of her first antenatal visit of this pregnancy: an `AncVisitRecorded` with
  visit number 1, else the enrolment day of a pregnant woman, unless a visit recorded that day has
  a higher number (she enrolled with the programme at a later visit: her ANC1 was elsewhere or
  earlier, and she is not a new ANC1 client here). A postnatal enrolment has no ANC1.
- **Status at ANC1** (PMTCT_STAT): known positive at entry; newly tested positive or negative by a
  conclusive test on the ANC1 day (a test at a later visit is a post-ANC1 test, in its own month);
  a negative result from earlier in this pregnancy is a *recent negative*; a negative known from
  before this pregnancy is not a known status for it (MER: she is retested at ANC1), so without a
  retest she is outside the numerator.
- **ART** (PMTCT_ART): *already on ART* when she started before the beginning of this pregnancy;
  *new on ART* when she started in it (before ANC1 or after, up to the delivery); a start after
  the delivery is *postnatal ART*, outside PMTCT_ART and counted separately (after a pregnancy
  loss, neither).
- **Post-ANC1 tests**: each conclusive test after the ANC1 day (or any test of an episode without
  ANC1) of a woman not known positive, in its modality: pregnancy (a later ANC visit), labour and
  delivery, breastfeeding (after the delivery).

The result is a pure function of the set of facts, so it never depends on the order they arrived in.
What enrolment publishes "as known at arrival" (a test's `status_before`, `anc_visit_number` and
`period`, an ART start's `period`, an ANC visit's `opens_episode`, an enrolment's `transfer_in`:
decided against the events enrolment had recorded when each arrived, so a backlog posted in another
order publishes other values) is not read here: each is derived again from her facts in the order
they happened (`known_positive_before`, `anc_visit_on`, `Period.at`, `anc1_openers`, `transfers_in`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from .ages import age_band

#: without a gestation or an EDD, the beginning of the pregnancy is taken this many weeks before ANC1
#: (a national preset: the median gestation at first ANC contact in the programme's setting)
ASSUMED_GESTATION_WEEKS_AT_ANC1 = 20
#: an EDD is 280 days (40 weeks) after the first day of the last menstrual period (Naegele's rule)
EDD_DAYS = 280


@dataclass(frozen=True, slots=True)
class Enrolled:
    occurred_at: datetime
    #: the programme-local day it happened on (`occurred_on` of its fact)
    on: date
    facility_id: str
    status_at_enrolment: str
    hiv_status: str
    on_art: bool
    #: as enrolment published it, known at arrival: not read (`transfers_in` decides from the facts)
    transfer_in: bool
    age_years: int | None = None
    art_start_date: date | None = None
    known_since: date | None = None
    gestation_weeks: int | None = None
    edd: date | None = None


@dataclass(frozen=True, slots=True)
class AncVisit:
    occurred_at: datetime
    on: date
    visit_number: int
    gestation_weeks: int | None = None
    facility_id: str | None = None
    age_years: int | None = None


@dataclass(frozen=True, slots=True)
class HivTest:
    """A conclusive (positive or negative) HIV test of the mother."""

    occurred_at: datetime
    on: date
    result: str
    setting: str
    event_id: UUID | None = None
    facility_id: str | None = None
    age_years: int | None = None


@dataclass(frozen=True, slots=True)
class ArtStart:
    occurred_at: datetime
    on: date


@dataclass(frozen=True, slots=True)
class Delivered:
    occurred_at: datetime
    on: date


@dataclass(frozen=True, slots=True)
class PregnancyEnded:
    """A miscarriage, abortion or ectopic pregnancy: the end of the pregnancy without a delivery."""

    occurred_at: datetime
    on: date


MotherFact = Enrolled | AncVisit | HivTest | ArtStart | Delivered | PregnancyEnded


@dataclass(frozen=True, slots=True)
class Episode:
    client_id: UUID
    facility_id: str
    enrolled_on: date
    status_at_enrolment: str
    hiv_status_at_enrolment: str
    on_art_at_enrolment: bool
    #: her earliest conclusive HIV test in the episode
    first_test_result: str | None
    first_test_setting: str | None
    first_positive_on: date | None
    #: the first ART start of the episode (at or before enrolment when she enrolled on ART)
    art_started_on: date | None
    #: age in whole years at enrolment, its MER band (`reporting.ages`)
    age_years: int | None
    age_band: str
    #: the ANC1 day, None when this episode has none here (postnatal, or enrolled at a later visit)
    anc1_on: date | None
    #: known_positive, newly_positive, new_negative, recent_negative or None (status not known at ANC1)
    stat_status: str | None
    #: already (before this pregnancy), new (in this pregnancy), postnatal (after delivery) or None
    art_status: str | None
    pregnancy_start: date
    delivered_on: date | None
    #: enrolment, or anc1: a new pregnancy opened by its ANC1 visit without a new enrolment
    opened_by: str = "enrolment"


@dataclass(frozen=True, slots=True)
class PostAnc1Test:
    """A conclusive test after ANC1 of a woman not known positive (HTS_TST, Post ANC1 modality)."""

    event_id: UUID
    client_id: UUID
    enrolled_on: date
    tested_on: date
    facility_id: str
    #: pregnancy, labour_delivery or breastfeeding
    modality: str
    result: str
    age_years: int | None
    age_band: str
    #: her first positive test: a newly identified HIV-positive woman (PMTCT_EID's denominator)
    newly_positive: bool


def _pregnancy_start(start: Enrolled, visits: list[AncVisit], anc1: date | None) -> date:
    if start.gestation_weeks is not None:
        return start.on - timedelta(weeks=start.gestation_weeks)
    if start.edd is not None:
        return start.edd - timedelta(days=EDD_DAYS)
    dated = [v for v in visits if v.gestation_weeks is not None]
    if dated:
        first = min(dated, key=lambda v: (v.on, v.occurred_at))
        assert first.gestation_weeks is not None
        return first.on - timedelta(weeks=first.gestation_weeks)
    return (anc1 or start.on) - timedelta(weeks=ASSUMED_GESTATION_WEEKS_AT_ANC1)


def _anc1(start: Enrolled, visits: list[AncVisit]) -> date | None:
    if start.status_at_enrolment != "pregnant":
        return None
    firsts = sorted(v.on for v in visits if v.visit_number == 1)
    if firsts:
        return firsts[0]
    if any(v.on == start.on and v.visit_number > 1 for v in visits):
        return None
    return start.on


def anc_visit_on(visits: list[AncVisit], day: date) -> int | None:
    """The number of the ANC visit of `day` among her visits of the episode (the highest, if
    several): whether a test of that day was at ANC1 or at a later visit. None: no visit that day."""
    return max((v.visit_number for v in visits if v.on == day), default=None)


def _at_anc1(test: HivTest, anc1: date | None, visits: list[AncVisit]) -> bool:
    """A test at ANC1: the ANC visit of its day is number 1, or, with no visit recorded that day, a
    test at ANC (or unspecified) on the ANC1 day."""
    if anc1 is None:
        return False
    number = anc_visit_on(visits, test.on)
    if number is not None:
        return number == 1 and test.on >= anc1
    return test.on == anc1 and test.setting in ("anc", "other")


def _stat_status(
    start: Enrolled, anc1: date | None, tests: list[HivTest], visits: list[AncVisit], pregnancy_start: date
) -> str | None:
    if anc1 is None:
        return None
    if start.hiv_status == "positive":
        return "known_positive"
    at_anc1 = sorted((t for t in tests if _at_anc1(t, anc1, visits)), key=lambda t: (t.occurred_at, t.result))
    if at_anc1:
        return "newly_positive" if at_anc1[0].result == "positive" else "new_negative"
    if start.hiv_status == "negative" and start.known_since is not None and start.known_since >= pregnancy_start:
        return "recent_negative"
    return None


def known_positive_before(facts: Iterable[MotherFact], moment: datetime, day: date) -> bool:
    """Whether she was known HIV-positive just before `moment` (of the programme-local `day`), from
    her facts whatever order they arrived in (what enrolment publishes as a test's `status_before`,
    as known at arrival): a positive test before it, or an enrolment as known positive, since the
    day her status was known (`known_since`) or else since the enrolment. Positive is for life."""
    for f in facts:
        if isinstance(f, HivTest) and f.result == "positive" and f.occurred_at < moment:
            return True
        if isinstance(f, Enrolled) and f.hiv_status == "positive":
            if (f.known_since <= day) if f.known_since is not None else f.occurred_at < moment:
                return True
    return False


def known_positive_at(facts: Iterable[MotherFact], moment: datetime, day: date) -> bool:
    """Whether she was known HIV-positive at `moment` (of the programme-local `day`), a delivery's say
    (what enrolment publishes as a DeliveryRecorded's `mother_hiv_status`, as known at arrival), from
    her facts whatever order they arrived in: a positive test at or before it; an enrolment as known
    positive, since `known_since` or else since the enrolment; or ART started by then (an ART start,
    an enrolment on ART since its `art_start_date` or else since the enrolment): ART is for people
    living with HIV (WHO 2021 consolidated guidelines, ART for all people living with HIV), and
    enrolment holds an ART start until her positive status is recorded. Positive is for life."""
    for f in facts:
        if isinstance(f, HivTest) and f.result == "positive" and f.occurred_at <= moment:
            return True
        if isinstance(f, ArtStart) and f.occurred_at <= moment:
            return True
        if isinstance(f, Enrolled) and f.hiv_status == "positive":
            if (f.known_since <= day) if f.known_since is not None else f.occurred_at <= moment:
                return True
        if isinstance(f, Enrolled) and f.on_art:
            if (f.art_start_date <= day) if f.art_start_date is not None else f.occurred_at <= moment:
                return True
    return False


@dataclass(frozen=True, slots=True)
class Period:
    """Where in an episode a moment falls, from the episode's facts (enrolment's CarePeriod, which it
    publishes as known at arrival): in the pregnancy; after its delivery (postnatal); after a
    pregnancy loss (not_pregnant). An episode entered postnatally is postnatal throughout."""

    pregnant_at_entry: bool
    #: the first delivery or pregnancy loss of the episode, and whether it was a delivery
    ended_at: datetime | None = None
    by_delivery: bool = False

    @classmethod
    def of(cls, start: Enrolled, inside: Iterable[MotherFact]) -> Period:
        ends = sorted((f for f in inside if isinstance(f, Delivered | PregnancyEnded)), key=lambda f: f.occurred_at)
        first = ends[0] if ends else None
        return cls(
            start.status_at_enrolment == "pregnant",
            first.occurred_at if first is not None else None,
            isinstance(first, Delivered),
        )

    def at(self, moment: datetime) -> str:
        if self.ended_at is not None and moment >= self.ended_at:
            return "postnatal" if self.by_delivery else "not_pregnant"
        return "pregnancy" if self.pregnant_at_entry or self.ended_at is not None else "postnatal"


_ART_PERIOD = {"pregnancy": "new", "postnatal": "postnatal", "not_pregnant": None}


def _art_status(start: Enrolled, first_art: ArtStart | None, pregnancy_start: date, period: Period) -> str | None:
    """Already on ART (started before this pregnancy began), new (started in it, up to its delivery),
    postnatal (after it); None: no ART, or ART after a pregnancy loss."""
    if start.on_art:
        if start.art_start_date is None or start.art_start_date < pregnancy_start:
            return "already"
        return "new"
    if first_art is None:
        return None
    return _ART_PERIOD[period.at(first_art.occurred_at)]


def _modality(test: HivTest, delivered_on: date | None, postnatal: bool, period: Period) -> str | None:
    """Pregnancy, labour_delivery or breastfeeding; None for a test outside both (after a pregnancy loss)."""
    if test.setting == "labour_delivery" or (delivered_on is not None and test.on == delivered_on):
        return "labour_delivery"
    where = period.at(test.occurred_at)
    if where == "not_pregnant":
        return None
    if where == "postnatal" or postnatal or test.setting == "postnatal":
        return "breastfeeding"
    return "pregnancy"


#: facts of one instant in the order enrolment decides them (an enrolment, then the visit)
_SAME_INSTANT = {Enrolled: 0, AncVisit: 1}


def _openers(facts: Iterable[MotherFact]) -> tuple[set[int], set[int], list[Enrolled]]:
    """Enrolment's pregnancy episodes (`enrolment.domain.episodes`), from her facts in the order they
    happened: an enrolment or an ANC1 visit (`visit_number` 1) opens a pregnancy when none is ongoing
    (none yet, or the last one ended in a delivery or a loss); a postnatal enrolment opens an episode
    only when she has none or after a loss; a delivery ends the ongoing pregnancy (or is an episode of
    its own); a loss ends it. Returns the `id()` of the ANC1 visits that opened one after her first,
    of the enrolments that opened one, and her enrolments in that order (one instant's by facility)."""
    ordered = sorted(
        (f for f in facts if isinstance(f, Enrolled | AncVisit | Delivered | PregnancyEnded)),
        key=lambda f: (f.occurred_at, _SAME_INSTANT.get(type(f), 2), f.facility_id if isinstance(f, Enrolled) else ""),
    )
    by_anc1: set[int] = set()
    by_enrolment: set[int] = set()
    opened = 0
    pregnant_at_entry, ended_by = False, None  # the current episode's entry and end
    for f in ordered:
        ongoing = opened > 0 and ended_by is None and pregnant_at_entry
        opens = False
        if isinstance(f, Enrolled) and f.status_at_enrolment == "pregnant":
            if not ongoing:
                opens, pregnant_at_entry, ended_by = True, True, None
        elif isinstance(f, Enrolled):
            if ongoing:
                ended_by = "delivery"  # a postnatal enrolment: she delivered (a delivery nobody posted)
            elif opened == 0 or ended_by == "loss":
                opens, pregnant_at_entry, ended_by = True, False, None
        elif isinstance(f, AncVisit):
            if opened == 0 or (f.visit_number == 1 and not ongoing):
                if opened > 0:
                    by_anc1.add(id(f))
                opens, pregnant_at_entry, ended_by = True, True, None
        elif isinstance(f, Delivered):
            if not ongoing:
                opens, pregnant_at_entry = True, False
            ended_by = "delivery"
        elif ongoing:  # a pregnancy loss
            ended_by = "loss"
        if opens:
            opened += 1
            if isinstance(f, Enrolled):
                by_enrolment.add(id(f))
    return by_anc1, by_enrolment, [f for f in ordered if isinstance(f, Enrolled)]


def anc1_openers(facts: Iterable[MotherFact]) -> set[int]:
    """The ANC1 visits that opened a new pregnancy without a new enrolment (enrolment's pregnancy
    episodes, which it publishes as an AncVisitRecorded's `opens_episode`, as known at arrival), from
    her facts in the order they happened (`_openers`). Returns the `id()` of each."""
    return _openers(facts)[0]


def _opened_by_anc1(visit: AncVisit, earlier: list[MotherFact]) -> Enrolled:
    """The start of a pregnancy opened by its ANC1 visit: what she was known to be before it."""
    enrolments = sorted((f for f in earlier if isinstance(f, Enrolled)), key=lambda f: (f.on, f.occurred_at))
    positive = any(isinstance(f, Enrolled) and f.hiv_status == "positive" for f in earlier) or any(
        isinstance(f, HivTest) and f.result == "positive" for f in earlier
    )
    art_days = [f.art_start_date or f.on for f in earlier if isinstance(f, Enrolled) and f.on_art]
    art_days += [f.on for f in earlier if isinstance(f, ArtStart)]
    ages = [f.age_years for f in enrolments if f.age_years is not None]
    return Enrolled(
        occurred_at=visit.occurred_at,
        on=visit.on,
        facility_id=visit.facility_id or (enrolments[-1].facility_id if enrolments else ""),
        status_at_enrolment="pregnant",
        hiv_status="positive" if positive else "unknown",
        on_art=positive and bool(art_days),
        transfer_in=False,
        age_years=visit.age_years if visit.age_years is not None else (ages[-1] if ages else None),
        art_start_date=min(art_days) if positive and art_days else None,
        gestation_weeks=visit.gestation_weeks,
    )


def transfers_in(facts: Iterable[MotherFact]) -> set[int]:
    """The enrolments that are transfers in by the facts (enrolment publishes `transfer_in` as known
    at arrival: a transfer-in enrolment posted before her first enrolment opened an episode of its
    own, so it is not read). As enrolment decides it in order (`enrolment.domain.enrolment_opens_episode`):
    every enrolment after her first that opens no episode of its own (`_openers`) — one during her
    ongoing pregnancy, at another facility or back at one she had transferred out of (enrolment refuses
    any other there), or a postnatal one after that pregnancy's delivery. Returns the `id()` of each."""
    _, opening, enrolments = _openers(facts)
    return {id(f) for f in enrolments[1:] if id(f) not in opening}


def derive(client_id: UUID, facts: Iterable[MotherFact]) -> tuple[list[Episode], list[PostAnc1Test]]:
    """One episode per enrolment that is not a transfer in, in date order, and the post-ANC1 tests."""
    facts = list(facts)
    moved = transfers_in(facts)
    # same-day enrolments: the earliest in the day opens the episode (ties by facility, deterministic);
    # an ANC1 visit that opened a new pregnancy opens one too
    starts = sorted(
        (f for f in facts if isinstance(f, Enrolled) and id(f) not in moved),
        key=lambda f: (f.on, f.occurred_at, f.facility_id),
    )
    opened: dict[date, Enrolled] = {}
    opened_by: dict[date, str] = {}
    for start in starts:
        opened.setdefault(start.on, start)
        opened_by.setdefault(start.on, "enrolment")
    openers = anc1_openers(facts)
    for visit in sorted((f for f in facts if isinstance(f, AncVisit) and id(f) in openers), key=lambda f: f.on):
        if visit.on not in opened:
            opened[visit.on] = _opened_by_anc1(visit, [f for f in facts if f.on < visit.on])
            opened_by[visit.on] = "anc1"
    days = sorted(opened)
    episodes: list[Episode] = []
    post_anc1: list[PostAnc1Test] = []
    for index, day in enumerate(days):
        until = days[index + 1] if index + 1 < len(days) else date.max
        inside = [f for f in facts if not isinstance(f, Enrolled) and day <= f.on < until]
        tests = sorted(
            (f for f in inside if isinstance(f, HivTest)), key=lambda t: (t.occurred_at, t.result, t.setting)
        )
        visits = [f for f in inside if isinstance(f, AncVisit)]
        deliveries = sorted(f.on for f in inside if isinstance(f, Delivered))
        arts = sorted((f for f in inside if isinstance(f, ArtStart)), key=lambda f: (f.on, f.occurred_at))
        start = opened[day]
        anc1 = start.on if opened_by[day] == "anc1" else _anc1(start, visits)
        pregnancy_start = _pregnancy_start(start, visits, anc1)
        delivered_on = deliveries[0] if deliveries else None
        period = Period.of(start, inside)
        stat = _stat_status(start, anc1, tests, visits, pregnancy_start)
        first_art = arts[0] if arts else None
        art_started = (start.art_start_date or start.on) if start.on_art else (first_art.on if first_art else None)
        positives = [t for t in tests if t.result == "positive"]
        positive_before = start.hiv_status == "positive"
        # ART of a woman never found HIV-positive in the episode is not PMTCT ART
        art = _art_status(start, first_art, pregnancy_start, period) if positive_before or positives else None
        band = age_band(start.age_years)
        episodes.append(
            Episode(
                client_id=client_id,
                facility_id=start.facility_id,
                enrolled_on=day,
                status_at_enrolment=start.status_at_enrolment,
                hiv_status_at_enrolment=start.hiv_status,
                on_art_at_enrolment=start.on_art,
                first_test_result=tests[0].result if tests else None,
                first_test_setting=tests[0].setting if tests else None,
                first_positive_on=positives[0].on if positives else None,
                art_started_on=art_started,
                age_years=start.age_years,
                age_band=band,
                anc1_on=anc1,
                stat_status=stat,
                art_status=art,
                pregnancy_start=pregnancy_start,
                delivered_on=delivered_on,
                opened_by=opened_by[day],
            )
        )
        # tests after ANC1 (every test of an episode without one) while she is not known positive
        known_positive = positive_before
        for test in tests:
            if known_positive or known_positive_before(facts, test.occurred_at, test.on):
                break
            modality = _modality(test, delivered_on, start.status_at_enrolment == "postnatal", period)
            after_anc1 = not _at_anc1(test, anc1, visits) and (anc1 is None or test.on >= anc1)
            if after_anc1 and modality is not None and test.event_id is not None:
                post_anc1.append(
                    PostAnc1Test(
                        event_id=test.event_id,
                        client_id=client_id,
                        enrolled_on=day,
                        tested_on=test.on,
                        facility_id=test.facility_id or start.facility_id,
                        modality=modality,
                        result=test.result,
                        age_years=test.age_years if test.age_years is not None else start.age_years,
                        age_band=age_band(test.age_years if test.age_years is not None else start.age_years),
                        newly_positive=test.result == "positive",
                    )
                )
            known_positive = test.result == "positive"
    return episodes, post_anc1


def episodes(client_id: UUID, facts: Iterable[MotherFact]) -> list[Episode]:
    """The episodes alone (see `derive`)."""
    return derive(client_id, facts)[0]
