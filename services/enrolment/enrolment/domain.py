"""A mother's history and the rules an EMR event must keep to be recorded against it.

Her history is the list of catalog events recorded for her (the same coded facts that go on the
wire). Everything about her state — HIV status, ART, pregnancy, death — is derived from when each
event *happened* (`occurred_at`), not from the order EMRs posted them, so a late or out-of-order
event lands where it belongs (docs/emr-intake.md: events may arrive late and in any order).

Rules compare calendar days: clinical registers record dates, and an EMR that sends a test at
09:00 and the ART start at 00:00 of the same day means "the same day". A day is the programme-local
day of the instant (`history.clock`, servicekit.clock), whatever offset the EMR stamped it with. A broken rule raises
`RuleBroken` with a stable code for the EMR and a reason for the person fixing the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, TypeVar
from uuid import UUID, uuid5

from pmtct_events import Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
    CarePeriod,
    ClientDied,
    ClientEnrolled,
    ClientTransferredOut,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    HivTestResult,
    MaternalOutcome,
    PregnancyEnded,
    StatusAtEnrolment,
    ViralLoadRecorded,
)
from servicekit.clock import Clock
from servicekit.intake import Code

#: ClientEnrolled.age_years in the v1 contract: programmes enrol from early adolescence
AGE_YEARS = (9, 60)
#: WHO: a pregnancy is dated between 4 and 45 weeks of gestation
GESTATION_WEEKS = (4, 45)
BIRTH_WEIGHT_G = (200, 7000)
#: above any assay's upper limit of quantification: a typo, not a result
MAX_COPIES_PER_ML = 50_000_000
#: an EDD is at most ~44 weeks after a visit, and an enrolment may come a few weeks after it passed
EDD_AFTER_DAYS = (-35, 44 * 7)
#: gestational age counts from the last menstrual period (LMP); a pregnancy lasts 280 days from it
PREGNANCY_DAYS = 280
#: conception is about two weeks after the LMP, and dating (by LMP or ultrasound) is off by up to
#: about two weeks more: a new pregnancy dated by an LMP more than 28 days before her previous
#: pregnancy ended overlaps it
PREGNANCY_DATING_TOLERANCE_DAYS = 28
#: WHO: a pregnancy lost from 28 weeks of gestation on is a stillbirth (a delivery), before it a
#: miscarriage (ICD-11; WHO definition of stillbirth)
STILLBIRTH_FROM_WEEKS = 28
#: namespace of episode ids: an episode is named by its woman and the day it opened
EPISODE_NAMESPACE = UUID("0d6f7a52-1c8e-4b5e-9a3f-2e7c4b1d9f60")

Pregnancy = Literal["pregnant", "postnatal"]
E = TypeVar("E", bound=Event)


class RuleBroken(Exception):
    """An event that cannot be recorded: `code` (one of the intake vocabulary, servicekit.intake.Code)
    for the EMR, `reason` for a person."""

    def __init__(self, code: Code | str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = Code(code)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Policy:
    """National choices: configuration, with these defaults (WHO's 1000 copies/mL threshold of an
    unsuppressed viral load, consolidated HIV guidelines 2021)."""

    vl_suppression_threshold: int = 1000
    min_days_between_deliveries: int = 154


@dataclass
class ClientHistory:
    """Everything recorded for one woman. An estimated birth date comes from `age_years`. Her
    events' days are read on the programme's `clock`."""

    birth_date: date | None = None
    birth_date_estimated: bool = False
    events: list[Event] = field(default_factory=list)
    clock: Clock = field(kw_only=True, repr=False, compare=False)

    def day_of(self, moment: datetime) -> date:
        return self.clock.local_day(moment)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def at(self, facility_id: str, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind) and e.facility_id == facility_id]


def age_on(birth_date: date, on: date) -> int:
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def estimated_birth_date(age_years: int, on: date) -> date:
    """The latest birth date consistent with being `age_years` old on `on`."""
    year = on.year - age_years
    return on.replace(year=year) if not (on.month == 2 and on.day == 29) else date(year, 2, 28)


def earliest_birth(history: ClientHistory) -> date | None:
    """An exact birth date, or the earliest one an age in whole years allows."""
    if history.birth_date is None:
        return None
    if not history.birth_date_estimated:
        return history.birth_date
    return history.birth_date - timedelta(days=365)


# --- derived state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """A fact about her HIV status. `dated` is False for a status reported at enrolment without a
    date: she was diagnosed at some earlier, unknown time, and `at` is then the enrolment."""

    at: datetime
    status: HivStatus
    dated: bool


def hiv_evidence(history: ClientHistory) -> Iterator[Evidence]:
    for e in history.events:
        if isinstance(e, ClientEnrolled) and e.hiv_status is not HivStatus.unknown:
            if e.hiv_status_known_since is not None:
                yield Evidence(history.clock.local_midnight(e.hiv_status_known_since), e.hiv_status, True)
            else:
                yield Evidence(e.occurred_at, e.hiv_status, False)
        elif isinstance(e, HivTestRecorded) and e.result is not HivTestResult.indeterminate:
            yield Evidence(e.occurred_at, HivStatus(e.result.value), True)


def _status(evidence: list[Evidence]) -> HivStatus:
    """Positive is for life; otherwise the last negative stands; with neither, unknown."""
    if any(ev.status is HivStatus.positive for ev in evidence):
        return HivStatus.positive
    if evidence:
        return HivStatus.negative
    return HivStatus.unknown


def hiv_status_before(history: ClientHistory, moment: datetime) -> HivStatus:
    """Her status as known just before `moment` (HivTestRecorded.status_before)."""
    return _status([ev for ev in hiv_evidence(history) if ev.at < moment])


def hiv_status_at(history: ClientHistory, moment: datetime) -> HivStatus:
    return _status([ev for ev in hiv_evidence(history) if ev.at <= moment])


def diagnosed_on(history: ClientHistory, until: datetime) -> date | None:
    """The day she was first known positive, up to `until` (an undated enrolment status counts
    from the enrolment: she was known positive by then)."""
    days = [history.day_of(ev.at) for ev in hiv_evidence(history) if ev.status is HivStatus.positive and ev.at <= until]
    return min(days, default=None)


def known_positive_on(history: ClientHistory, day: date) -> bool:
    """For rules: is there evidence that she was positive on `day`? An undated positive status at
    enrolment cannot be contradicted by any date, so it counts."""
    return any(
        ev.status is HivStatus.positive and (not ev.dated or history.day_of(ev.at) <= day)
        for ev in hiv_evidence(history)
    )


def art_started_on(history: ClientHistory, until: datetime) -> date | None:
    """The day she first started ART, up to `until`. "On ART" at enrolment without a start date
    counts from the enrolment (she was on ART by then)."""
    starts: list[date] = []
    for e in history.events:
        if isinstance(e, ClientEnrolled) and e.on_art:
            start = e.art_start_date or history.day_of(e.occurred_at)
            if start <= history.day_of(until):
                starts.append(start)
        elif isinstance(e, ArtInitiated) and e.occurred_at <= until:
            starts.append(history.day_of(e.occurred_at))
    return min(starts, default=None)


def latest_viral_load(history: ClientHistory, until: datetime) -> ViralLoadRecorded | None:
    loads = [e for e in history.of(ViralLoadRecorded) if e.occurred_at <= until]
    return max(loads, key=lambda e: e.occurred_at, default=None)


def death_day(history: ClientHistory) -> date | None:
    """From ClientDied, or a delivery at which she died."""
    days = [history.day_of(e.occurred_at) for e in history.of(ClientDied)]
    days += [
        history.day_of(e.occurred_at)
        for e in history.of(DeliveryRecorded)
        if e.maternal_outcome is MaternalOutcome.died
    ]
    return min(days, default=None)


# --- pregnancy episodes ----------------------------------------------------------------------------

EpisodeEnd = Literal["delivery", "pregnancy_loss"]


@dataclass(slots=True)
class Episode:
    """One pregnancy of hers and the postnatal period after it, across facilities. Opened by the
    enrolment or the ANC1 visit of a new pregnancy (or by a postnatal enrolment, or a delivery
    nobody saw the pregnancy of); its pregnancy ends with a delivery or a loss; the episode goes
    on until her next pregnancy opens one."""

    number: int
    client_id: UUID
    opener: Event
    pregnant_at_entry: bool
    edd: date | None = None
    #: the delivery or pregnancy loss that ended the pregnancy
    ended_at: datetime | None = None
    ended_by: EpisodeEnd | None = None
    ended_on: date | None = None

    @property
    def opened_at(self) -> datetime:
        return self.opener.occurred_at

    def episode_id(self, clock: Clock) -> UUID:
        return uuid5(EPISODE_NAMESPACE, f"{self.client_id}:{clock.local_day(self.opened_at).isoformat()}")

    def period_at(self, moment: datetime) -> CarePeriod:
        """Where in this episode `moment` is."""
        if self.ended_at is not None and moment >= self.ended_at:
            return CarePeriod.postnatal if self.ended_by == "delivery" else CarePeriod.not_pregnant
        return CarePeriod.pregnancy if self.pregnant_at_entry or self.ended_at is not None else CarePeriod.postnatal

    def pregnant_at(self, moment: datetime) -> bool:
        return self.period_at(moment) is CarePeriod.pregnancy


def _edd_of(day: date, gestation_weeks: int | None, edd: date | None) -> date | None:
    if edd is not None:
        return edd
    if gestation_weeks is None:
        return None
    return day + timedelta(days=PREGNANCY_DAYS - 7 * gestation_weeks)


def episodes(history: ClientHistory, *extra: Event) -> list[Episode]:
    """Her pregnancy episodes, from her events in the order they happened (with `extra`, an event
    being decided, as if it were recorded). What opens and closes an episode:

    - an enrolment or an ANC1 visit (`visit_number` 1) when no pregnancy is ongoing (none yet, or
      the last one ended in a delivery or a loss) opens a pregnancy; a postnatal enrolment opens a
      postnatal episode only when she has none;
    - a delivery ends the ongoing pregnancy (or, if none was seen, is an episode of its own);
    - a pregnancy loss (`PregnancyEnded`) ends the ongoing pregnancy.

    Any other event, and an enrolment during an ongoing pregnancy (a transfer in), belongs to the
    episode of its day. Ties of one instant keep their recorded order."""
    out: list[Episode] = []
    current: Episode | None = None
    for e in sorted([*history.events, *extra], key=lambda e: e.occurred_at):
        day = history.day_of(e.occurred_at)
        ongoing = current is not None and current.ended_at is None and current.pregnant_at_entry
        client_id: UUID = e.client_id  # type: ignore[attr-defined]
        if isinstance(e, ClientEnrolled) and e.status_at_enrolment is StatusAtEnrolment.pregnant:
            if current is None or not ongoing:
                current = Episode(len(out) + 1, client_id, e, True, _edd_of(day, e.gestation_weeks, e.edd))
                out.append(current)
            elif current.edd is None:
                current.edd = _edd_of(day, e.gestation_weeks, e.edd)
        elif isinstance(e, ClientEnrolled):
            # postnatal: she delivered before. An ongoing pregnancy ended then (a delivery nobody
            # posted); after a loss, or with no episode yet, it is an episode of its own
            if current is not None and ongoing:
                current.ended_at, current.ended_by, current.ended_on = e.occurred_at, "delivery", day
            elif current is None or current.ended_by == "pregnancy_loss":
                current = Episode(len(out) + 1, client_id, e, False)
                out.append(current)
        elif isinstance(e, AncVisitRecorded):
            if current is None or (e.visit_number == 1 and not ongoing):
                current = Episode(len(out) + 1, client_id, e, True, _edd_of(day, e.gestation_weeks, None))
                out.append(current)
            elif current.edd is None:
                current.edd = _edd_of(day, e.gestation_weeks, None)
        elif isinstance(e, DeliveryRecorded):
            if current is None or not ongoing:
                current = Episode(len(out) + 1, client_id, e, False)
                out.append(current)
            current.ended_at, current.ended_by, current.ended_on = e.occurred_at, "delivery", day
        elif isinstance(e, PregnancyEnded) and current is not None and ongoing:
            current.ended_at, current.ended_by, current.ended_on = e.occurred_at, "pregnancy_loss", day
    return out


def episode_at(found: list[Episode], moment: datetime) -> Episode | None:
    """The episode `moment` falls in: the latest opened by then (the first, for a fact dated
    before any opening)."""
    opened = [ep for ep in found if ep.opened_at <= moment]
    return opened[-1] if opened else (found[0] if found else None)


def episode_of(found: list[Episode], event: Event) -> Episode | None:
    """The episode an event belongs to: the one it opened, or the one of its moment."""
    for ep in found:
        if ep.opener is event:
            return ep
    return episode_at(found, event.occurred_at)


def pregnancy_at(history: ClientHistory, moment: datetime) -> Pregnancy | None:
    """Pregnant or postnatal as of `moment` (None: neither known, or her pregnancy was lost)."""
    ep = episode_at(episodes(history), moment)
    if ep is None or ep.opened_at > moment:
        return None
    period = ep.period_at(moment)
    if period is CarePeriod.not_pregnant:
        return None
    return "pregnant" if period is CarePeriod.pregnancy else "postnatal"


def anc_visit_on(history: ClientHistory, found: list[Episode], episode: Episode | None, day: date) -> int | None:
    """The number of the ANC visit recorded on `day` in `episode` (of `found`; the highest, if
    several): whether a test of that day was at ANC1 or at a later visit."""
    if episode is None:
        return None
    numbers = [
        e.visit_number
        for e in history.of(AncVisitRecorded)
        if history.day_of(e.occurred_at) == day and episode_of(found, e) is episode
    ]
    return max(numbers, default=None)


# --- rules ---------------------------------------------------------------------------------------


def check_after_birth(history: ClientHistory, day: date, what: str = "occurred_at") -> None:
    earliest = earliest_birth(history)
    if earliest is not None and day < earliest:
        # her birth date is personal data: named, never repeated (the answer may reach a FHIR
        # OperationOutcome, a log line or the held-events table)
        born = "her birth date on record" if not history.birth_date_estimated else "the birth her recorded age allows"
        raise RuleBroken("before_birth", f"{what} {day.isoformat()} is before {born}.")


def check_alive(history: ClientHistory, day: date) -> None:
    died = death_day(history)
    if died is not None and day > died:
        raise RuleBroken(
            "event_after_death", f"She died on {died.isoformat()}; nothing can happen to her on {day.isoformat()}."
        )


def check_age(age_years: int) -> None:
    low, high = AGE_YEARS
    if not low <= age_years <= high:
        raise RuleBroken("age_out_of_range", f"Age at enrolment {age_years} is outside {low}–{high} years.")


def check_gestation(weeks: int | None) -> None:
    low, high = GESTATION_WEEKS
    if weeks is not None and not low <= weeks <= high:
        raise RuleBroken("gestation_out_of_range", f"gestation_weeks {weeks} is outside {low}–{high} weeks.")


def check_enrolled_here(history: ClientHistory, facility_id: str, day: date) -> None:
    """Events at a facility need her enrolment there, and stop when she transfers out of it
    (until she enrols there again)."""
    enrolments = history.at(facility_id, ClientEnrolled)
    if not enrolments:
        raise RuleBroken(
            "not_enrolled_at_facility",
            f"She is not enrolled at {facility_id}; post a ClientEnrolled there first"
            " (her national_id links the records).",
        )
    left = [
        history.day_of(t.occurred_at)
        for t in history.at(facility_id, ClientTransferredOut)
        if history.day_of(t.occurred_at) < day
    ]
    if left:
        last_left = max(left)
        back = [e for e in enrolments if last_left <= history.day_of(e.occurred_at) <= day]
        if not back:
            raise RuleBroken(
                "transferred_out",
                f"She transferred out of {facility_id} on {last_left.isoformat()}; enrol her there again first.",
            )


def check_enrolment_dates(
    day: date,
    hiv_status: HivStatus,
    known_since: date | None,
    on_art: bool,
    art_start_date: date | None,
) -> None:
    """A ClientEnrolled must be consistent in itself."""
    if known_since is not None and hiv_status is HivStatus.unknown:
        raise RuleBroken("inconsistent_hiv_status", "hiv_status_known_since is given but hiv_status is unknown.")
    if art_start_date is not None and not on_art:
        raise RuleBroken("inconsistent_art", "art_start_date is given but on_art is false.")
    for name, value in (("hiv_status_known_since", known_since), ("art_start_date", art_start_date)):
        if value is not None and value > day:
            raise RuleBroken(
                "date_after_occurred_at", f"{name} {value.isoformat()} is after the enrolment on {day.isoformat()}."
            )
    if on_art and hiv_status is not HivStatus.positive:
        raise RuleBroken("art_before_positive_status", f"on_art is true but hiv_status is {hiv_status.value}.")
    if art_start_date is not None and known_since is not None and art_start_date < known_since:
        raise RuleBroken(
            "art_before_positive_status",
            f"art_start_date {art_start_date.isoformat()} is before her positive status was known"
            f" ({known_since.isoformat()}).",
        )


def check_edd(status: StatusAtEnrolment, edd: date | None, day: date) -> None:
    if edd is None or status != StatusAtEnrolment.pregnant:
        return
    low, high = (day + timedelta(days=d) for d in EDD_AFTER_DAYS)
    if not low <= edd <= high:
        raise RuleBroken(
            "edd_out_of_range",
            f"edd {edd.isoformat()} is not a due date for a pregnancy seen on {day.isoformat()}"
            f" (expected {low.isoformat()}–{high.isoformat()}).",
        )


def check_birth_dates_agree(history: ClientHistory, birth_date: date | None, age_years: int | None, day: date) -> None:
    """A second enrolment of the same woman must not contradict her recorded birth date."""
    if history.birth_date is None:
        return
    if birth_date is not None and not history.birth_date_estimated and birth_date != history.birth_date:
        raise RuleBroken(
            "identity_conflict",
            "data.birth_date differs from the birth date on record for this woman (neither is repeated here).",
        )
    recorded_age = age_on(history.birth_date, day)
    given_age = age_years if birth_date is None else age_on(birth_date, day)
    if given_age is not None and abs(given_age - recorded_age) > 1:
        raise RuleBroken(
            "identity_conflict", "data.age_years differs by more than a year from the age on record for this woman."
        )


def enrolment_opens_episode(history: ClientHistory, facility_id: str, event: ClientEnrolled) -> bool:
    """Another enrolment at a facility where she is already enrolled is accepted when she comes
    back after transferring out of it (a transfer in), or when it is the first enrolment here of
    its episode: a new pregnancy after a delivery or a pregnancy loss. Returns whether it is a
    transfer in (it opens no episode); raises `already_enrolled` otherwise."""
    day = history.day_of(event.occurred_at)
    enrolled = [history.day_of(e.occurred_at) for e in history.at(facility_id, ClientEnrolled)]
    found = episodes(history, event)
    mine = episode_of(found, event)
    opens = mine is not None and mine.opener is event
    last_enrolled = max(enrolled)
    left = [history.day_of(t.occurred_at) for t in history.at(facility_id, ClientTransferredOut)]
    if left and max(left) >= last_enrolled and day >= max(left):
        return not opens
    here = [e for e in history.at(facility_id, ClientEnrolled) if episode_of(found, e) is mine]
    if opens or not here:
        return not opens
    raise RuleBroken(
        "already_enrolled",
        f"She is already enrolled at {facility_id} for this pregnancy (since {min(enrolled).isoformat()}); post"
        " visits, tests and outcomes as their own events, and a new pregnancy after a delivery or a pregnancy"
        " loss as a new enrolment or its ANC1 visit.",
    )


def check_new_pregnancy_dates(history: ClientHistory, found: list[Episode], episode: Episode | None) -> None:
    """A pregnancy opened after an earlier one ended must have begun after it: its dating (an EDD,
    or the gestation at the visit that opened it) puts its last menstrual period no earlier than
    `PREGNANCY_DATING_TOLERANCE_DAYS` before the earlier pregnancy's end."""
    if episode is None or episode.edd is None or not episode.pregnant_at_entry or episode.number == 1:
        return
    before = found[episode.number - 2]
    if before.ended_on is None:
        return
    lmp = episode.edd - timedelta(days=PREGNANCY_DAYS)
    if lmp < before.ended_on - timedelta(days=PREGNANCY_DATING_TOLERANCE_DAYS):
        ended = "delivery" if before.ended_by == "delivery" else "pregnancy loss"
        raise RuleBroken(
            "overlapping_pregnancy",
            f"This pregnancy is dated from {lmp.isoformat()} (its EDD {episode.edd.isoformat()}), before her"
            f" previous pregnancy ended ({ended} on {before.ended_on.isoformat()}); check the gestation or the EDD.",
        )


def check_art_start(history: ClientHistory, day: date) -> None:
    if not known_positive_on(history, day):
        raise RuleBroken(
            "art_before_positive_status",
            f"ART start on {day.isoformat()} but no positive HIV status is recorded on or before that day;"
            " post the positive test (or the enrolment status) first.",
        )


def check_viral_load(history: ClientHistory, copies_per_ml: int, day: date) -> None:
    if not 0 <= copies_per_ml <= MAX_COPIES_PER_ML:
        raise RuleBroken(
            "viral_load_out_of_range", f"copies_per_ml {copies_per_ml} is outside 0–{MAX_COPIES_PER_ML:,}."
        )
    if not known_positive_on(history, day):
        raise RuleBroken(
            "viral_load_before_positive_status",
            f"Viral load on {day.isoformat()} but no positive HIV status is recorded on or before that day.",
        )


def check_anc_visit(history: ClientHistory, event: AncVisitRecorded) -> None:
    """An ANC visit needs an ongoing pregnancy, except ANC1 (`visit_number` 1), which opens the
    new pregnancy after a delivery or a pregnancy loss (`episodes`)."""
    found = episodes(history, event)
    mine = episode_of(found, event)
    if mine is None or mine.opener is event:
        check_new_pregnancy_dates(history, found, mine)
        return
    if not mine.pregnant_at(event.occurred_at):
        day = history.day_of(event.occurred_at).isoformat()
        state = "postnatal" if mine.period_at(event.occurred_at) is CarePeriod.postnatal else "not pregnant"
        raise RuleBroken(
            "not_pregnant",
            f"She is {state} on {day} (since {(mine.ended_on or history.day_of(mine.opened_at)).isoformat()});"
            " an ANC visit other than ANC1 needs an ongoing pregnancy (post the new pregnancy's ANC1 visit"
            " or enrolment first).",
        )


def check_loss_gestation(weeks: int | None) -> None:
    """A pregnancy loss is before 28 weeks; from 28 weeks on it is a stillbirth: a delivery with a
    stillborn infant (WHO definition of stillbirth)."""
    if weeks is not None and not GESTATION_WEEKS[0] <= weeks < STILLBIRTH_FROM_WEEKS:
        raise RuleBroken(
            "gestation_out_of_range",
            f"gestation_weeks {weeks} is outside {GESTATION_WEEKS[0]}–{STILLBIRTH_FROM_WEEKS - 1} weeks: a pregnancy"
            f" lost from {STILLBIRTH_FROM_WEEKS} weeks on is a stillbirth (post a DeliveryRecorded with the stillborn"
            " infant).",
        )


def check_pregnancy_loss(history: ClientHistory, event: PregnancyEnded) -> None:
    """A pregnancy loss ends an ongoing pregnancy, and no visit of that pregnancy is dated after it."""
    day = history.day_of(event.occurred_at)
    found = episodes(history)
    mine = episode_at(found, event.occurred_at)
    if mine is None or mine.opened_at > event.occurred_at or not mine.pregnant_at(event.occurred_at):
        raise RuleBroken(
            "not_pregnant",
            f"No ongoing pregnancy of hers is recorded on {day.isoformat()}; a pregnancy loss ends one"
            " (post its enrolment or ANC1 visit first).",
        )
    later = [
        e
        for e in history.events
        if isinstance(e, AncVisitRecorded) and e.occurred_at > event.occurred_at and episode_of(found, e) is mine
    ]
    if later:
        raise RuleBroken(
            "not_pregnant",
            f"An ANC visit of this pregnancy is recorded on {history.day_of(later[0].occurred_at).isoformat()},"
            f" after this loss on {day.isoformat()}.",
        )


def check_delivery(
    history: ClientHistory,
    moment: datetime,
    infant_outcomes: list[BirthOutcome],
    birth_weights: list[int | None],
    policy: Policy,
) -> None:
    day = history.day_of(moment)
    if not infant_outcomes:
        raise RuleBroken(
            "live_birth_without_infants",
            "A delivery lists every baby born in data.infants (live-born or stillborn); none were given.",
        )
    low, high = BIRTH_WEIGHT_G
    for i, weight in enumerate(birth_weights):
        if weight is not None and not low <= weight <= high:
            raise RuleBroken(
                "birth_weight_out_of_range", f"data.infants[{i}].birth_weight_g {weight} is outside {low}–{high} g."
            )
    enrolments = history.of(ClientEnrolled)
    if not any(history.day_of(e.occurred_at) <= day for e in enrolments):
        first = min(enrolments, key=lambda e: e.occurred_at)
        if first.status_at_enrolment is StatusAtEnrolment.pregnant:
            raise RuleBroken(
                "delivery_before_enrolment",
                f"Delivery on {day.isoformat()} is before she enrolled pregnant"
                f" on {history.day_of(first.occurred_at).isoformat()}.",
            )
    for loss in history.of(PregnancyEnded):
        apart = (day - history.day_of(loss.occurred_at)).days
        if 0 <= apart < policy.min_days_between_deliveries:
            raise RuleBroken(
                "delivery_too_soon",
                f"Her pregnancy loss on {history.day_of(loss.occurred_at).isoformat()} is {apart} days before this"
                f" delivery (at least {policy.min_days_between_deliveries} between a pregnancy's end and a delivery).",
            )
    for other in history.of(DeliveryRecorded):
        apart = abs((history.day_of(other.occurred_at) - day).days)
        if apart < policy.min_days_between_deliveries:
            raise RuleBroken(
                "delivery_too_soon",
                f"A delivery on {history.day_of(other.occurred_at).isoformat()} is already recorded, {apart} days apart"
                f" (at least {policy.min_days_between_deliveries}); is this the same delivery posted twice?",
            )


def check_death(history: ClientHistory, day: date) -> None:
    if history.of(ClientDied):
        died = min(history.day_of(e.occurred_at) for e in history.of(ClientDied))
        raise RuleBroken("death_already_recorded", f"Her death is already recorded (on {died.isoformat()}).")
    later = [history.day_of(e.occurred_at) for e in history.events if history.day_of(e.occurred_at) > day]
    if later:
        raise RuleBroken(
            "death_before_recorded_events",
            f"Events are recorded for her up to {max(later).isoformat()}, after this death on {day.isoformat()}.",
        )


def check_transfer(facility_id: str, to_facility_id: str | None, known_facility: bool) -> None:
    if to_facility_id is None:
        return
    if to_facility_id == facility_id:
        raise RuleBroken("transfer_to_same_facility", f"to_facility_id is the facility she leaves ({facility_id}).")
    if not known_facility:
        raise RuleBroken("unknown_facility", f"to_facility_id {to_facility_id!r} is not in the facility registry.")


# --- corrections (servicekit.corrections) ------------------------------------------------------------


def without(history: ClientHistory, voided: Event) -> ClientHistory:
    """Her history as if `voided` had never been posted (her state is derived from it afresh)."""
    return ClientHistory(
        history.birth_date,
        history.birth_date_estimated,
        [e for e in history.events if e is not voided],
        clock=history.clock,
    )


def dependents(history: ClientHistory, voided: Event) -> list[Event]:
    """Her standing events that could not stand without `voided` (they are voided first, or the void
    is refused `void_dependents_first`):

    - an enrolment: every event of hers after it, or, if it is her only enrolment, every other
      event of hers (none was recorded but because she was enrolled: `check_enrolled_here`);
    - a fact of her positive status (a test, an enrolment's status): an ART start or a viral load
      that no other positive status on or before its day allows (`check_art_start`,
      `check_viral_load`: WHO 2021 consolidated HIV guidelines, ART and viral load follow a diagnosis).

    Anything else (a visit, a delivery, a transfer, a death) is voided alone: what follows it is
    decided again from the facts that remain (a delivery's infants are voided with it)."""
    rest = without(history, voided)
    if isinstance(voided, ClientEnrolled):
        if not rest.of(ClientEnrolled):
            return list(rest.events)
        return [e for e in rest.events if e.occurred_at >= voided.occurred_at]
    return unsupported(rest)


def unsupported(history: ClientHistory) -> list[Event]:
    """Her ART starts and viral loads that no positive status on or before their day allows (what
    a void or a replacement of her positive test would leave standing on nothing)."""
    return [
        e
        for e in history.events
        if isinstance(e, ArtInitiated | ViralLoadRecorded)
        and not known_positive_on(history, history.day_of(e.occurred_at))
    ]
