"""The Mentor Mothers' programme facts in the reporting read model: one row per record of her
work (contacts, group sessions, tracing attempts, disclosure, index testing) and every caseload
assignment, from follow-up's `pmtct_events.mentoring` events; and the SQL that counts them for
`programme.py`. Ids, dates and codes only. Each row is keyed by the record's own id, so an event
delivered twice (or a batch the app posted twice: follow-up answered `duplicate` and published
nothing) counts once; every figure is a count over rows, so arrival order does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Boolean, Column, Date, DateTime, Integer, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import Event
from pmtct_events.mentoring import EVENTS as MENTORING_EVENTS
from pmtct_events.mentoring import (
    CaseloadAssigned,
    ContactRecorded,
    DisclosureRecorded,
    GroupSessionHeld,
    IndexContactEvent,
    IndexContactTested,
    StaffMemberChanged,
    TracingAttemptRecorded,
)
from servicekit.clock import Clock
from servicekit.consumer import Handler
from servicekit.uow import UnitOfWork

metadata = MetaData()
_UUID = PG_UUID(as_uuid=True)

programme_records = Table(
    "programme_records",
    metadata,
    #: the record's own id (the app's event_id; for an index contact's step, the CloudEvent id)
    Column("record_id", _UUID, primary_key=True),
    Column("type", Text, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("staff_id", Text, nullable=False),
    Column("client_id", _UUID),
    Column("subject_id", _UUID),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    #: the programme's local day of occurred_at
    Column("day", Date, nullable=False),
    #: contact / group kind, tracing outcome, disclosure target, index contact relationship
    Column("kind", Text, nullable=False),
    #: disclosure status, an index contact's test result
    Column("status", Text),
    Column("attendance", Integer),
    Column("client_ids", ARRAY(_UUID)),
    Column("flag", Boolean, nullable=False, server_default="false"),
)

programme_assignments = Table(
    "programme_assignments",
    metadata,
    Column("ce_id", _UUID, primary_key=True),
    Column("client_id", _UUID, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("staff_id", Text),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Column("day", Date, nullable=False),
)


def record_of(ce_id: UUID, event: Event, clock: Clock) -> dict[str, Any] | None:
    """The fact row of a Mentor Mothers' event (None: not one of hers)."""
    base = {
        "facility_id": event.facility_id,
        "occurred_at": event.occurred_at,
        "day": clock.local_day(event.occurred_at),
        "type": event.event_name,
        "status": None,
        "attendance": None,
        "client_ids": None,
        "flag": False,
        "subject_id": None,
    }
    match event:
        case ContactRecorded():
            return {
                **base,
                "record_id": event.contact_event_id,
                "staff_id": event.staff_id,
                "client_id": event.client_id,
                "subject_id": event.infant_id,
                "kind": event.kind.value,
            }
        case GroupSessionHeld():
            return {
                **base,
                "record_id": event.session_id,
                "staff_id": event.staff_id,
                "client_id": None,
                "kind": event.kind.value,
                "attendance": event.attendance,
                "client_ids": list(event.client_ids),
            }
        case TracingAttemptRecorded():
            return {
                **base,
                "record_id": event.attempt_event_id,
                "staff_id": event.staff_id,
                "client_id": event.client_id,
                "subject_id": event.subject_id,
                "kind": event.outcome.value,
                "flag": event.confirmed_lost,
            }
        case DisclosureRecorded():
            return {
                **base,
                "record_id": event.disclosure_event_id,
                "staff_id": event.staff_id,
                "client_id": event.client_id,
                "kind": event.to.value,
                "status": event.status.value,
            }
        case IndexContactEvent():
            tested = isinstance(event, IndexContactTested)
            return {
                **base,
                "record_id": ce_id,
                "staff_id": event.staff_id,
                "client_id": event.client_id,
                "subject_id": event.contact_id,
                "kind": event.relationship.value,
                "status": event.result.value if tested else None,
                "flag": event.known_positive if tested else False,
            }
    return None


def handlers(clock: Clock) -> dict[type[Event], Handler]:
    """The reporting consumer's handlers of the Mentor Mothers' events."""

    async def record(event: Event, uow: UnitOfWork) -> None:
        assert uow.cause is not None
        row = record_of(uow.cause.id, event, clock)
        if row is not None:
            await uow.session.execute(insert(programme_records).values(row).on_conflict_do_nothing())

    async def assigned(event: CaseloadAssigned, uow: UnitOfWork) -> None:
        assert uow.cause is not None
        row = {
            "ce_id": uow.cause.id,
            "client_id": event.client_id,
            "facility_id": event.facility_id,
            "staff_id": event.staff_id,
            "assigned_at": event.occurred_at,
            "day": clock.local_day(event.occurred_at),
        }
        await uow.session.execute(insert(programme_assignments).values(row).on_conflict_do_nothing())

    # every Mentor Mother's record is one row (`record_of`); the staff registry is not reported on
    types = tuple(t for t in MENTORING_EVENTS if t not in (StaffMemberChanged, CaseloadAssigned))
    return {**dict.fromkeys(types, record), CaseloadAssigned: assigned}  # type: ignore[dict-item]


# --- the counts ------------------------------------------------------------------------------------

#: a client interaction: a contact, a place at a group session, a tracing visit that found her
_INTERACTIONS = """
    SELECT day, staff_id, kind, client_id, 1 AS n FROM programme_records
     WHERE type = 'ContactRecorded' AND {scope}
    UNION ALL
    SELECT day, staff_id, kind, NULL, attendance FROM programme_records
     WHERE type = 'GroupSessionHeld' AND {scope}
    UNION ALL
    SELECT day, staff_id, 'tracing_visit', client_id, 1 FROM programme_records
     WHERE type = 'TracingAttemptRecorded' AND kind IN ('found_back_in_care', 'found_refused') AND {scope}
"""
_IN_PERIOD = "facility_id = ANY(:facilities) AND day >= :start AND day < :end"

_PERIOD_INTERACTIONS = _INTERACTIONS.format(scope=_IN_PERIOD)
INTERACTIONS_BY_MONTH_KIND = text(
    "SELECT date_trunc('month', day)::date AS month, kind, sum(n)::int AS n"
    f" FROM ({_PERIOD_INTERACTIONS}) i GROUP BY 1, 2 ORDER BY 1, 2"
)
INTERACTIONS_BY_MONTH_STAFF = text(
    "SELECT date_trunc('month', day)::date AS month, staff_id, sum(n)::int AS n"
    f" FROM ({_PERIOD_INTERACTIONS}) i GROUP BY 1, 2 ORDER BY 1, 2"
)
#: each client's interactions in the period: her contacts and found tracing visits, and the group
#: sessions she is named present at
CONTACTS_PER_CLIENT = text(
    f"""
    SELECT client_id, count(*)::int AS n FROM (
        SELECT client_id FROM programme_records
         WHERE type IN ('ContactRecorded', 'TracingAttemptRecorded') AND {_IN_PERIOD}
           AND (type = 'ContactRecorded' OR kind IN ('found_back_in_care', 'found_refused'))
        UNION ALL
        SELECT unnest(client_ids) FROM programme_records WHERE type = 'GroupSessionHeld' AND {_IN_PERIOD}
    ) c GROUP BY client_id
    """
)
#: her latest disclosure status to partner and to family, as of the period's end
DISCLOSURE_AT_END = text(
    """
    SELECT kind, status, count(*)::int AS n FROM (
        SELECT DISTINCT ON (client_id, kind) client_id, kind, status FROM programme_records
         WHERE type = 'DisclosureRecorded' AND facility_id = ANY(:facilities) AND day < :end
         ORDER BY client_id, kind, occurred_at DESC, record_id DESC
    ) latest GROUP BY kind, status
    """
)
#: index testing steps in the period, by relationship (a test: by result, and known positives)
INDEX_STEPS = text(
    f"""
    SELECT type, kind, coalesce(status, '') AS status, flag, count(DISTINCT subject_id)::int AS n
      FROM programme_records WHERE type LIKE 'IndexContact%' AND {_IN_PERIOD}
     GROUP BY 1, 2, 3, 4
    """
)
TRACING_OUTCOMES = text(
    f"""
    SELECT kind, flag, count(*)::int AS attempts, count(DISTINCT subject_id)::int AS subjects
      FROM programme_records WHERE type = 'TracingAttemptRecorded' AND {_IN_PERIOD}
     GROUP BY 1, 2
    """
)
TRACED_SUBJECTS = text(
    "SELECT count(DISTINCT subject_id)::int FROM programme_records"
    f" WHERE type = 'TracingAttemptRecorded' AND {_IN_PERIOD}"
)
#: each mother's latest assignment as of the period's end; the Mentor Mothers' caseload sizes
CASELOAD_AT_END = text(
    """
    SELECT staff_id, count(*)::int AS n FROM (
        SELECT DISTINCT ON (client_id) client_id, facility_id, staff_id FROM programme_assignments
         WHERE day < :end ORDER BY client_id, assigned_at DESC, ce_id DESC
    ) latest WHERE staff_id IS NOT NULL AND facility_id = ANY(:facilities) GROUP BY staff_id ORDER BY staff_id
    """
)


@dataclass(frozen=True)
class Counts:
    """What `programme.figures` is computed from (all of the scope and period)."""

    by_month_kind: list[tuple[date, str, int]]
    by_month_staff: list[tuple[date, str, int]]
    contacts_per_client: list[int]
    disclosure: list[tuple[str, str, int]]
    index_steps: list[tuple[str, str, str, bool, int]]
    tracing: list[tuple[str, bool, int, int]]
    traced: int
    caseloads: list[tuple[str, int]]


async def counts(session: AsyncSession, facilities: Sequence[str], start: date, end: date) -> Counts:
    params = {"facilities": list(facilities), "start": start, "end": end}

    async def rows(statement: Any) -> list[tuple]:
        return [tuple(r) for r in await session.execute(statement, params)]

    return Counts(
        by_month_kind=await rows(INTERACTIONS_BY_MONTH_KIND),  # type: ignore[arg-type]
        by_month_staff=await rows(INTERACTIONS_BY_MONTH_STAFF),  # type: ignore[arg-type]
        contacts_per_client=[r[1] for r in await rows(CONTACTS_PER_CLIENT)],
        disclosure=await rows(DISCLOSURE_AT_END),  # type: ignore[arg-type]
        index_steps=await rows(INDEX_STEPS),  # type: ignore[arg-type]
        tracing=await rows(TRACING_OUTCOMES),  # type: ignore[arg-type]
        traced=int(await session.scalar(TRACED_SUBJECTS, params) or 0),
        caseloads=await rows(CASELOAD_AT_END),  # type: ignore[arg-type]
    )
