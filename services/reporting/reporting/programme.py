"""The Mentor Mothers' programme figures, as pure functions of the counts `programme_store`
reads: what the programme reports about her work, beside the MER indicators (`indicators.py`).

Definitions (a period is one or more calendar months, days in the programme's time zone):

- **Client interactions** (the programme's headline figure, about 230,000 a month across m2m):
  every contact she records (one-to-one and couples education, home visits, phone follow-ups,
  adherence, infant-feeding, family-planning counselling, disclosure support), every person
  present at a group session or support group (its attendance), and every tracing visit that
  found the client (found and back in care, found and refusing). Per month by kind and per month
  by staff member. EMR events are not interactions: a clinic visit is not her work.
- **Clients reached**: clients with at least one interaction in the period, and with at least N
  (`PMTCT_MENTORING__REACHED_CONTACTS`, followup's setting, passed as `reached_contacts`).
- **Disclosure rate**, to partner and to family: of the clients with a disclosure status recorded
  by the end of the period, the share whose latest status is `disclosed`.
- **Partner and family (index) testing**, by relationship, counts in the period as PEPFAR MER 2.x
  HTS_INDEX counts them: contacts elicited, invited, tested (new negatives and new positives;
  known positives apart), linked to ART. Uptake = tested / elicited; yield = new positives /
  tested (known positives excluded from both).
- **Children tested**: the index testing counts of `child` contacts.
- **Tracing outcomes**: attempts by outcome, clients traced, returned to care (found and back in
  care: MER TX_RTT's sense), confirmed lost after the configured failed attempts; returned / traced.
- **Caseload per Mentor Mother** at the end of the period: the mothers whose latest assignment
  by then is hers.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from .programme_store import Counts


def ratio(numerator: int, denominator: int) -> float | None:
    """A share, rounded to 4 places; None when nothing is counted below it."""
    return round(numerator / denominator, 4) if denominator else None


class MonthCount(BaseModel):
    month: str
    key: str
    count: int


class Reached(BaseModel):
    at_least_one: int
    at_least_n: int
    n: int


class DisclosureRate(BaseModel):
    recorded: int
    disclosed: int
    rate: float | None


class IndexTesting(BaseModel):
    relationship: str
    elicited: int = 0
    invited: int = 0
    tested: int = Field(0, description="new negatives + new positives (known positives apart)")
    new_positive: int = 0
    known_positive: int = 0
    linked: int = 0
    uptake: float | None = None
    yield_: float | None = Field(None, alias="yield", serialization_alias="yield")

    model_config = {"populate_by_name": True}


class TracingFigures(BaseModel):
    attempts: dict[str, int]
    traced: int
    returned_to_care: int
    confirmed_lost: int
    returned_rate: float | None


class CaseloadSize(BaseModel):
    staff_id: str
    clients: int


class ProgrammeFigures(BaseModel):
    interactions_total: int
    interactions_by_kind: list[MonthCount]
    interactions_by_staff: list[MonthCount]
    reached: Reached
    disclosure: dict[str, DisclosureRate]
    index_testing: list[IndexTesting]
    children_tested: int
    tracing: TracingFigures
    caseloads: list[CaseloadSize]


def _month(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


def figures(c: Counts, reached_contacts: int) -> ProgrammeFigures:
    by_kind = [MonthCount(month=_month(m), key=k, count=n) for m, k, n in c.by_month_kind]
    by_staff = [MonthCount(month=_month(m), key=k, count=n) for m, k, n in c.by_month_staff]
    disclosure = {}
    for target in ("partner", "family"):
        rows = [(status, n) for kind, status, n in c.disclosure if kind == target]
        recorded = sum(n for _, n in rows)
        disclosed = sum(n for status, n in rows if status == "disclosed")
        disclosure[target] = DisclosureRate(recorded=recorded, disclosed=disclosed, rate=ratio(disclosed, recorded))
    index: dict[str, IndexTesting] = {}
    for type_, relationship, status, known, n in c.index_steps:
        f = index.setdefault(relationship, IndexTesting(relationship=relationship))
        if type_ == "IndexContactElicited":
            f.elicited += n
        elif type_ == "IndexContactInvited":
            f.invited += n
        elif type_ == "IndexContactLinked":
            f.linked += n
        elif known:
            f.known_positive += n
        elif status in ("positive", "negative"):
            f.tested += n
            f.new_positive += n if status == "positive" else 0
    for f in index.values():
        f.uptake, f.yield_ = ratio(f.tested, f.elicited), ratio(f.new_positive, f.tested)
    attempts: dict[str, int] = {}
    returned = confirmed = 0
    for outcome, confirmed_lost, n_attempts, subjects in c.tracing:
        attempts[outcome] = attempts.get(outcome, 0) + n_attempts
        if outcome == "found_back_in_care":
            returned += subjects
        if confirmed_lost:
            confirmed += subjects
    return ProgrammeFigures(
        interactions_total=sum(m.count for m in by_kind),
        interactions_by_kind=by_kind,
        interactions_by_staff=by_staff,
        reached=Reached(
            at_least_one=len(c.contacts_per_client),
            at_least_n=sum(1 for n in c.contacts_per_client if n >= reached_contacts),
            n=reached_contacts,
        ),
        disclosure=disclosure,
        index_testing=sorted(index.values(), key=lambda f: f.relationship),
        children_tested=index["child"].tested if "child" in index else 0,
        tracing=TracingFigures(
            attempts=dict(sorted(attempts.items())),
            traced=c.traced,
            returned_to_care=returned,
            confirmed_lost=confirmed,
            returned_rate=ratio(returned, c.traced),
        ),
        caseloads=[CaseloadSize(staff_id=s, clients=n) for s, n in c.caseloads],
    )
