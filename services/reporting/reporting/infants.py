"""An HIV-exposed infant's row, derived from its facts (pure): what the infant indicators count.

- **First virologic test** (MER 2.8 PMTCT_EID): the earliest NAT sample, whatever its result.
- **First positive virologic test** (MER 2.8 PMTCT_HEI): the earliest positive NAT that is not a
  confirmatory test (MER excludes the confirmatory sample).
- **Final outcome at 18 months** (MER 2.8 PMTCT_FO): computed here from the facts as they stood when
  the infant was 18 months old, not from an outcome follow-up writes, so a late fact (a result
  posted after the period was reported) revises it, and an infant nobody recorded anything about has
  no documented outcome (it is not "unknown" by the calendar). The facts counted are those sampled or
  dated on or before the 18-month birthday plus the 18-month visit's window (`FO_WINDOW_DAYS`,
  followup's `final_test_window_days`). In order:
  1. *HIV-infected*: a positive NAT, or a positive antibody test at 18 months or older;
  2. *HIV-uninfected*: a negative test taken at least 3 months after breastfeeding ended (the last
     feeding record before it is replacement feeding or breastfeeding stopped, WHO 2021 infant HIV
     diagnosis: the final test 3 months after cessation), an antibody test only at 18 months or older;
  3. *died without status known*: a recorded death;
  4. *HIV final status unknown*: a recorded transfer out, or lost to follow-up with no clinic
     contact after the loss.
  Nothing of these: no documented outcome (outside the numerator).
- **Outcome now** (`outcome_now`): the same definition over every fact known, at any age: a child
  traced at 25 months and found infected is infected now (WHO 2021: follow-up until the final
  diagnosis), though not "by 18 months". Counted by HEI_INFECTED (the programme's).

A pure function of the set of facts, so arrival order does not matter.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

#: the outcome is the one established by this age (MER PMTCT_FO: "by 18 months")
FO_AGE_MONTHS = 18
#: and the window of the 18-month visit after that birthday (followup's final_test_window_days)
FO_WINDOW_DAYS = 42
#: WHO 2021: the final test at least 3 months after breastfeeding ended
AFTER_BREASTFEEDING_MONTHS = 3
#: an antibody test tells infection only from 18 months of age (maternal antibodies before)
ANTIBODY_FROM_MONTHS = 18
BREASTFEEDING = ("exclusive_breastfeeding", "mixed_feeding")
CONTACTS = ("test", "feeding", "art_start", "contact")


@dataclass(frozen=True, slots=True)
class InfantFact:
    kind: str
    occurred_at: datetime
    on: date
    recorded_at: datetime
    facility_id: str
    birth_date: date | None = None
    age_days: int | None = None
    result: str | None = None
    confirmatory: bool | None = None
    outcome: str | None = None
    test: str | None = None
    method: str | None = None


@dataclass(frozen=True, slots=True)
class Infant:
    infant_id: UUID
    facility_id: str | None
    birth_date: date | None
    first_nat_on: date | None
    first_nat_age_days: int | None
    first_nat_result: str | None
    first_nat_facility_id: str | None
    first_pos_nat_on: date | None
    first_pos_nat_age_days: int | None
    first_pos_nat_facility_id: str | None
    art_started_on: date | None
    #: infected, uninfected, died, unknown, or None (no documented outcome) at 18 months
    fo_outcome: str | None
    #: the same over every fact known now, at any age
    outcome_now: str | None = None


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later (the month's last day if it has fewer days)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _age_days(f: InfantFact, birth: date | None) -> int | None:
    if f.age_days is not None:
        return f.age_days
    return (f.on - birth).days if birth is not None else None


def _breastfeeding_ended(feeding: list[InfantFact], before: date) -> date | None:
    """The day breastfeeding ended as recorded up to `before`: the first non-breastfeeding record
    after the last breastfeeding one; None while she is (or may be) breastfeeding."""
    ended: date | None = None
    for f in sorted((f for f in feeding if f.on <= before), key=lambda f: (f.on, f.occurred_at)):
        if f.method in BREASTFEEDING:
            ended = None
        elif ended is None:
            ended = f.on
    return ended


#: the outcomes that end an infant's follow-up at a facility until she is followed again
#: (follow-up's InfantFollowUpResumed: her transfer in, a contact after her discharge)
ENDS_FOLLOW_UP = ("transferred_out", "discharged")


def ended_standing(f: InfantFact, facts: Iterable[InfantFact]) -> bool:
    """`f` is a transfer out or a discharge that still stands: no resumption of her follow-up on or
    after its day (a transfer in at another facility the same day resumes it)."""
    return (
        f.kind == "outcome"
        and f.outcome in ENDS_FOLLOW_UP
        and not any(r.kind == "resumed" and r.on >= f.on for r in facts)
    )


def fo_outcome(birth: date, facts: list[InfantFact], at_any_age: bool = False) -> str | None:
    """The outcome by 18 months (the 18-month visit's window included), or `at_any_age`."""
    cutoff = add_months(birth, FO_AGE_MONTHS) + timedelta(days=FO_WINDOW_DAYS)
    antibody_from = add_months(birth, ANTIBODY_FROM_MONTHS)
    seen = [f for f in facts if at_any_age or f.on <= cutoff]
    tests = [f for f in seen if f.kind == "test"]
    if any(
        t.result == "positive" and (t.test == "NAT" or (t.test == "antibody" and t.on >= antibody_from)) for t in tests
    ):
        return "infected"
    feeding = [f for f in seen if f.kind == "feeding"]
    for t in tests:
        if t.result != "negative" or (t.test == "antibody" and t.on < antibody_from):
            continue
        ended = _breastfeeding_ended(feeding, t.on)
        if ended is not None and t.on >= add_months(ended, AFTER_BREASTFEEDING_MONTHS):
            return "uninfected"
    if any(f.kind == "outcome" and f.outcome == "died" for f in seen):
        return "died"
    if any(ended_standing(f, seen) for f in seen):
        return "unknown"  # transferred out, or discharged by the facility with no status the facts give
    withdrawn = {f.on for f in facts if f.kind == "lost_withdrawn"}
    lost = [f.on for f in seen if f.kind == "lost" and f.on not in withdrawn]
    if lost and not any(f.kind in CONTACTS and f.on > max(lost) for f in seen):
        return "unknown"
    return None


def derive(infant_id: UUID, facts: Iterable[InfantFact]) -> Infant:
    facts = list(facts)
    started = sorted((f for f in facts if f.kind == "hei"), key=lambda f: (f.occurred_at, f.facility_id))
    birth = min((f.birth_date for f in started if f.birth_date is not None), default=None)
    nats = sorted(
        (f for f in facts if f.kind == "test" and f.test == "NAT"),
        key=lambda f: (f.occurred_at, f.result or "", f.facility_id, f.age_days or 0),
    )
    first = nats[0] if nats else None
    positives = [f for f in nats if f.result == "positive" and not f.confirmatory]
    first_pos = positives[0] if positives else None
    arts = sorted(f.on for f in facts if f.kind == "art_start")
    return Infant(
        infant_id=infant_id,
        facility_id=started[0].facility_id if started else None,
        birth_date=birth,
        first_nat_on=first.on if first else None,
        first_nat_age_days=_age_days(first, birth) if first else None,
        first_nat_result=first.result if first else None,
        first_nat_facility_id=first.facility_id if first else None,
        first_pos_nat_on=first_pos.on if first_pos else None,
        first_pos_nat_age_days=_age_days(first_pos, birth) if first_pos else None,
        first_pos_nat_facility_id=first_pos.facility_id if first_pos else None,
        art_started_on=arts[0] if arts else None,
        fo_outcome=fo_outcome(birth, facts) if birth is not None else None,
        outcome_now=fo_outcome(birth, facts, at_any_age=True) if birth is not None else None,
    )
