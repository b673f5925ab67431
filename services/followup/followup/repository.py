"""All SQL of the followup service: load and save the cases under their row locks, the EMR event
record, the timer scan and the reads.

Lock order, everywhere: a mother before her infants, and several rows of one table in id order.
Handlers, the POST path and the timers all follow it, so they cannot deadlock one another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, Table, TextClause, column, literal_column, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import Event
from pmtct_events.enrolment import HivStatus, HivTestResult
from pmtct_events.followup import FinalOutcome, HighRiskReason, InfantTest, ProphylaxisPlan, ScheduleKind
from servicekit.db import any_of, insert_rows
from servicekit.uow import Repository, UnitOfWork

from .cases import MOTHER_FACT_FIELDS, InfantCase, MotherCase, Pregnancy, RecordedEvent, with_events
from .eid_schedule import InfantFacts
from .mentoring.repository import Caseloads
from .models import SHOWN_ITEM_COLUMNS as _SHOWN
from .models import URGENT_ITEMS as _URGENT
from .models import infant_events, infants, mothers, schedule_items
from .schedule import Attendance, Item, Status

# --- mothers -------------------------------------------------------------------------------------


_LOCK_MOTHERS = text(
    "INSERT INTO mothers (client_id, facility_id)"
    " SELECT client_id, facility_id FROM unnest(CAST(:client_ids AS uuid[]), CAST(:facility_ids AS text[]))"
    " AS seen (client_id, facility_id) ORDER BY client_id"
    " ON CONFLICT (client_id) DO UPDATE SET client_id = EXCLUDED.client_id"
    " RETURNING *, ARRAY(SELECT infant_id FROM infants WHERE infants.client_id = mothers.client_id"
    " AND infants.voided_at IS NULL) AS infant_ids"
).columns(*mothers.c, column("infant_ids", ARRAY(PG_UUID(as_uuid=True))))


_SELECT_MOTHERS = text(
    "SELECT *, ARRAY(SELECT infant_id FROM infants WHERE infants.client_id = mothers.client_id"
    " AND infants.voided_at IS NULL) AS infant_ids"
    " FROM mothers WHERE client_id = ANY(CAST(:client_ids AS uuid[])) ORDER BY client_id FOR UPDATE"
).columns(*mothers.c, column("infant_ids", ARRAY(PG_UUID(as_uuid=True))))


class Mothers(Repository[UUID, MotherCase]):
    """The mothers of a unit of work's events, created on first sight (at the facility of their
    first event) and locked for the rest of the transaction, in id order, in one statement for all
    those not held yet; their schedule items too (retests, ART start, viral loads). A consumer
    batch holds its mothers up front (`ConsumerSpec.preload`); a lone event holds its own. Their
    rows are written once, by `flush`, and only where they changed.

    Lock order, as everywhere in this module: a mother before her infants."""

    def __init__(self, session: AsyncSession, infants: Infants) -> None:
        super().__init__(session)
        self.infants = infants
        #: each held mother's row as the database has it (what `flush` compares with)
        self.stored: dict[UUID, dict[str, Any]] = {}
        #: the ids of each held mother's live-born infants (a mother's lock guards the list: infants
        #: are added only by her delivery events, under it)
        self.infant_ids: dict[UUID, list[UUID]] = {}
        #: the mothers an event touched: client_id -> (next_timer_on, settle_s) to write at commit
        self.touched: dict[UUID, tuple[date | None, float | None]] = {}
        #: the mother events of this unit, to keep (`keep`), in the order they came
        self.kept: list[dict[str, Any]] = []
        #: the stored events that stand of held mothers, as `standing_events` read them: (event id,
        #: type, data as JSON text), in the order they came; read for every held mother at once
        self.stored_events: dict[UUID, list[tuple[UUID, str, str]]] = {}

    async def hold(self, subjects: Iterable[tuple[UUID, str]]) -> dict[UUID, MotherCase]:
        """The mothers of (client_id, facility_id) pairs, held (see the class)."""
        wanted: dict[UUID, str] = {}
        for client_id, facility_id in subjects:
            wanted.setdefault(client_id, facility_id)
        new = {c: f for c, f in wanted.items() if c not in self.seen}
        if new:
            rows = await self.session.execute(
                _LOCK_MOTHERS, {"client_ids": list(new), "facility_ids": list(new.values())}
            )
            for client_id, case in (await self._cases(rows.all())).items():
                self.remember(client_id, case)
        return {c: self.seen[c] for c in wanted}

    async def _load(self, keys: list[UUID]) -> dict[UUID, MotherCase]:
        """Mothers known already (the timers', an infant event's), locked in id order."""
        rows = (await self.session.execute(_SELECT_MOTHERS, {"client_ids": sorted(keys)})).all()
        return await self._cases(rows)

    async def _cases(self, rows: Sequence[Any]) -> dict[UUID, MotherCase]:
        """The cases of locked mother rows (with their items), noting each row as stored and her
        infants; the caller makes them known (`get_many` does for `_load`)."""
        ids = [r.client_id for r in rows]
        items = await load_items(self.session, ids) if ids else {}
        cases: dict[UUID, MotherCase] = {}
        for r in rows:
            case = cases[r.client_id] = _mother(r._mapping, items.get(r.client_id, []))
            self.stored[case.client_id] = _mother_values(case, r.next_timer_on)
            self.infant_ids[case.client_id] = list(r.infant_ids)
        return cases

    def touch(self, case: MotherCase, next_timer_on: date | None, settle_s: float | None) -> None:
        """A held mother changed (or an input restarts her settle delay, `settle_s`; None from the
        timers): her row and items are written by `flush`."""
        self.touched[case.client_id] = (next_timer_on, settle_s)

    def keep(self, client_id: UUID, event_id: UUID, event: Event) -> None:
        """Keep a mother event with the CloudEvent id it came in with (written by `flush`): what her
        case is recomputed from when one of them is voided (`corrections`)."""
        self.kept.append(
            {
                "event_id": event_id,
                "client_id": client_id,
                "type": event.event_name,
                "data": event.model_dump_json(),
                "voided_by": None,
            }
        )

    async def void_events(self, client_id: UUID, event_ids: Iterable[UUID], voided_by: UUID) -> set[UUID]:
        """Mark her kept events of `event_ids` voided by `voided_by` (a ClientEventVoided); the
        ones this marked (none when the void was applied already)."""
        ids = set(event_ids)
        marked = {
            r[0]
            for r in await self.session.execute(
                _VOID_MOTHER_EVENTS, {"client_id": client_id, "ids": sorted(ids), "voided_by": voided_by}
            )
        }
        if client_id in self.stored_events:
            self.stored_events[client_id] = [e for e in self.stored_events[client_id] if e[0] not in marked]
        for row in self.kept:
            if row["client_id"] == client_id and row["event_id"] in ids and row["voided_by"] is None:
                row["voided_by"] = voided_by
                marked.add(row["event_id"])
        return marked

    async def standing_events(self, client_id: UUID) -> list[tuple[UUID, str, dict[str, Any]]]:
        """Her kept events that are not voided, in the order they came: (event id, type, data).

        The first ask reads the stored ones of every mother held and not read yet, in one statement
        (a rebuild per out-of-order event was a statement each), as text, parsed only when asked."""
        if client_id not in self.stored_events:
            wanted = [c for c in self.seen if c not in self.stored_events]
            if client_id not in wanted:
                wanted.append(client_id)
            for c in wanted:
                self.stored_events[c] = []
            for r in await self.session.execute(_STANDING_EVENTS, {"client_ids": wanted}):
                self.stored_events[r.client_id].append((r.event_id, r.type, r.data))
        out = [(event_id, type_, json.loads(data)) for event_id, type_, data in self.stored_events[client_id]]
        out += [
            (r["event_id"], r["type"], json.loads(r["data"]))
            for r in self.kept
            if r["client_id"] == client_id and r["voided_by"] is None
        ]
        return out

    async def void_infants(self, client_id: UUID, infant_ids: Sequence[UUID], voided_by: UUID) -> None:
        """Infants a voided delivery had registered: never born on the platform. They leave her
        list (a later event of hers does not see them) and intake refuses their events."""
        if not infant_ids:
            return
        await self.session.execute(_VOID_INFANTS, {"ids": list(infant_ids), "voided_by": voided_by})
        gone = set(infant_ids)
        self.infant_ids[client_id] = [i for i in self.infant_ids[client_id] if i not in gone]

    async def add_infants(self, client_id: UUID, rows: Sequence[dict[str, Any]], tz: str) -> None:
        """New live-born infants (not in follow-up yet) of a held mother; a redelivered delivery
        adds nothing. An infant a voided delivery had registered, registered again (a corrected
        delivery naming the same infant), is born again: with the facts of this delivery, not
        in follow-up yet, its history and items kept (loaded under the lock its update took)."""
        added = (await self.session.execute(_ADD_INFANTS, list(rows))).all()
        again: list[UUID] = []
        for row in added:
            self.infant_ids[client_id].append(row.infant_id)
            if row.inserted:
                # locked by its insert, with no history or items yet: no need to load it
                self.infants.add(row.infant_id, _infant(row._mapping, [], []))
            else:
                again.append(row.infant_id)
        for key, case in (await lock_infants(self.session, again, tz)).items():
            self.infants.remember(key, case)

    async def infants_of(self, client_id: UUID, tz: str) -> dict[UUID, InfantCase]:
        """A held mother's infants, locked, in id order (`Infants.lock`)."""
        return await self.infants.lock(self.infant_ids[client_id], tz)

    async def flush(self) -> None:
        """Write the held mothers the unit's events touched: the rows that changed in full, a
        touch of the settle delay for the others (an input restarts it even when it changed
        nothing), and every changed schedule item; a few statements per batch."""
        if self.kept:
            await self.session.execute(_KEEP_MOTHER_EVENTS, _by_column(self.kept))
            self.kept = []
        if not self.touched:
            return
        changed: list[dict[str, Any]] = []
        settled: dict[float, list[UUID]] = {}
        item_rows: list[dict[str, Any]] = []
        dropped: list[UUID] = []
        for client_id, (next_timer_on, settle_s) in self.touched.items():
            case = self.seen[client_id]
            values = _mother_values(case, next_timer_on)
            if values != self.stored[client_id]:
                changed.append({**values, "key": client_id, "settle_s": settle_s})
            elif settle_s is not None:
                settled.setdefault(settle_s, []).append(client_id)
            item_rows += _item_rows("client", client_id, client_id, case.facility_id, case.items)
            dropped += _dropped(case.dropped, case.items)
        if changed:
            await self.session.execute(_SAVE_MOTHER, _by_column(changed))
        for settle_s, ids in settled.items():
            await self.session.execute(_SETTLE_MOTHERS, {"ids": ids, "settle_s": settle_s})
        await drop_items(self.session, dropped)
        if item_rows:
            await save_items(self.session, item_rows)
        self.touched.clear()


class Infants(Repository[UUID, InfantCase]):
    """The infant cases of a unit of work, locked in id order with their history and items, each
    loaded once (`lock`); `save` notes the case's next timer day and settle delay, and `flush` writes
    the saved ones in a statement per table. Infants are locked after their mothers (the lock order
    of this module)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.saved: dict[UUID, tuple[date | None, float | None]] = {}

    async def lock(self, infant_ids: Iterable[UUID], tz: str) -> dict[UUID, InfantCase]:
        """`tz`: the programme's zone, in which the history's days are read."""
        ids = sorted(set(infant_ids))
        missing = [i for i in ids if i not in self.seen]
        if missing:
            for key, case in (await lock_infants(self.session, missing, tz)).items():
                self.remember(key, case)
        return {i: self.seen[i] for i in ids if i in self.seen}

    def save(self, case: InfantCase, next_timer_on: date | None, settle_s: float | None) -> None:
        """`settle_s` is set when an input changed the case (timers then wait); None from the timers."""
        self.saved[case.infant_id] = (next_timer_on, settle_s)

    async def flush(self) -> None:
        if not self.saved:
            return
        cases = [(self.seen[i], wake, settle) for i, (wake, settle) in sorted(self.saved.items())]
        await self.session.execute(
            _SAVE_INFANT, _by_column([_infant_values(c, wake, settle) for c, wake, settle in cases])
        )
        item_rows = [
            row for c, _, _ in cases for row in _item_rows("infant", c.infant_id, c.client_id, c.facility_id, c.items)
        ]
        await drop_items(self.session, [i for c, _, _ in cases for i in _dropped(c.dropped, c.items)])
        if item_rows:
            await save_items(self.session, item_rows)
        self.saved.clear()


class FollowupUnit(UnitOfWork):
    """The followup service's unit of work: the mothers and infants it holds, locked (a mother
    before her infants) and written once, as it commits."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.infants = Infants(session)
        self.mothers = self.track(Mothers(session, self.infants))
        self.track(self.infants)
        #: the Mentor Mothers' caseloads (written as assigned: nothing to flush)
        self.caseloads = Caseloads(session)


#: a batch's kept events in one statement (one per event was a statement per consumed event), in
#: the order given (`seq` is drawn in the arrays' order)
_KEEP_MOTHER_EVENTS = text(
    "INSERT INTO mother_events (event_id, client_id, type, data, voided_by, voided_at)"
    " SELECT event_id, client_id, type, CAST(data AS jsonb), voided_by,"
    " CASE WHEN voided_by IS NULL THEN NULL ELSE now() END"
    " FROM unnest(CAST(:event_id AS uuid[]), CAST(:client_id AS uuid[]), CAST(:type AS text[]),"
    " CAST(:data AS text[]), CAST(:voided_by AS uuid[])) WITH ORDINALITY"
    " AS e(event_id, client_id, type, data, voided_by, n) ORDER BY n"
    " ON CONFLICT (event_id) DO NOTHING"
)
_VOID_MOTHER_EVENTS = text(
    "UPDATE mother_events SET voided_by = :voided_by, voided_at = now()"
    " WHERE client_id = :client_id AND event_id = ANY(CAST(:ids AS uuid[])) AND voided_by IS NULL"
    " RETURNING event_id"
)
_STANDING_EVENTS = text(
    "SELECT client_id, event_id, type, CAST(data AS text) AS data FROM mother_events"
    " WHERE client_id = ANY(CAST(:client_ids AS uuid[])) AND voided_by IS NULL ORDER BY seq"
)
_DROP_ITEMS = text(
    "DELETE FROM schedule_items WHERE item_id = ANY(CAST(:ids AS uuid[]))"
    " AND due_announced_at IS NULL AND overdue_announced_at IS NULL"
)
_VOID_INFANTS = text(
    "UPDATE infants SET voided_at = now(), voided_by = :voided_by WHERE infant_id = ANY(CAST(:ids AS uuid[]))"
)


_SETTLE_MOTHERS = text(
    "UPDATE mothers SET updated_at = now(), settle_until = now() + make_interval(secs => CAST(:settle_s AS float8))"
    " WHERE client_id = ANY(CAST(:ids AS uuid[]))"
)


def _mother(row: Any, items: list[Item]) -> MotherCase:
    return MotherCase(
        client_id=row["client_id"],
        facility_id=row["facility_id"],
        hiv_status=HivStatus(row["hiv_status"]),
        positive_since=row["positive_since"],
        positive_seen_on=row["positive_seen_on"],
        art_start_date=row["art_start_date"],
        edd=row["edd"],
        delivered_on=row["delivered_on"],
        breastfeeding_until=row["breastfeeding_until"],
        viral_loads=[(date.fromisoformat(v["on"]), v["copies"]) for v in row["viral_loads"]],
        hiv_tests=[(date.fromisoformat(t["on"]), HivTestResult(t["result"])) for t in row["hiv_tests"]],
        pregnancies={key: Pregnancy.from_json(p) for key, p in row["pregnancies"].items()},
        died_on=row["died_on"],
        enrolled_on=row["enrolled_on"],
        transferred_out_on=row["transferred_out_on"],
        items=items,
        attendance=_attendance(row),
        facts_from_events=row["facts_from_events"],
    )


def _update(table: Table, key: str, columns: Sequence[str], jsonb: Sequence[str] = ()) -> TextClause:
    """UPDATE of case rows, built once (the hot path of the consumer and the timers): every row of a
    flush in one statement, one array per column (`_by_column`). A `settle_s` restarts the row's
    settle delay; None (from the timers) leaves it alone."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sets = [f"{c} = CAST(v.{c} AS jsonb)" if c in jsonb else f"{c} = v.{c}" for c in columns]
    sets += [
        "updated_at = now()",
        "settle_until = CASE WHEN v.settle_s IS NULL THEN t.settle_until"
        " ELSE now() + make_interval(secs => v.settle_s) END",
    ]
    kinds = ["text" if c in jsonb else table.c[c].type.compile(dialect=dialect) for c in columns]
    kinds += ["float8", table.c[key].type.compile(dialect=dialect)]
    names = [*columns, "settle_s", "key"]
    arrays = ", ".join(f"CAST(:{n} AS {k}[])" for n, k in zip(names, kinds, strict=True))
    return text(
        f"UPDATE {table.name} AS t SET {', '.join(sets)}"
        f" FROM unnest({arrays}) AS v({', '.join(names)}) WHERE t.{key} = v.key"
    )


def _by_column(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows with the same keys as one list per key: the parameters of an `_update`."""
    return {k: [r[k] for r in rows] for k in rows[0]}


_ATTENDANCE = ("last_seen_on", "lost_since", "lost_last_seen_on", "next_timer_on")
#: what is saved of a mother: the fold of her events, and how long she breastfeeds (from her infants)
_MOTHER_FACTS = (*MOTHER_FACT_FIELDS, "breastfeeding_until")
_SAVE_MOTHER = _update(
    mothers, "client_id", _MOTHER_FACTS + _ATTENDANCE, jsonb=("viral_loads", "hiv_tests", "pregnancies")
)


def _mother_values(case: MotherCase, next_timer_on: date | None) -> dict[str, Any]:
    """The columns of a mother's row, as `_SAVE_MOTHER` takes them (less its key and settle delay)."""
    a = case.attendance
    return {
        "facility_id": case.facility_id,
        "hiv_status": case.hiv_status.value,
        "positive_since": case.positive_since,
        "positive_seen_on": case.positive_seen_on,
        "art_start_date": case.art_start_date,
        "edd": case.edd,
        "delivered_on": case.delivered_on,
        "breastfeeding_until": case.breastfeeding_until,
        "viral_loads": json.dumps([{"on": on.isoformat(), "copies": n} for on, n in sorted(case.viral_loads)]),
        "hiv_tests": json.dumps([{"on": on.isoformat(), "result": r.value} for on, r in sorted(case.hiv_tests)]),
        "pregnancies": json.dumps({key: p.as_json() for key, p in sorted(case.pregnancies.items())}),
        "died_on": case.died_on,
        "enrolled_on": case.enrolled_on,
        "transferred_out_on": case.transferred_out_on,
        "last_seen_on": a.last_seen_on,
        "lost_since": a.lost_since,
        "lost_last_seen_on": a.lost_last_seen_on,
        "next_timer_on": next_timer_on,
    }


# --- infants -------------------------------------------------------------------------------------


_NEW_INFANT = insert(infants)
#: a redelivered delivery adds nothing; a voided infant registered again is born again (`add_infants`)
_ADD_INFANTS = _NEW_INFANT.on_conflict_do_update(
    index_elements=[infants.c.infant_id],
    set_={
        "voided_at": None,
        "voided_by": None,
        "delivery_event_id": _NEW_INFANT.excluded.delivery_event_id,
        "facility_id": _NEW_INFANT.excluded.facility_id,
        "ref_hash": _NEW_INFANT.excluded.ref_hash,
        "birth_date": _NEW_INFANT.excluded.birth_date,
        "sex": _NEW_INFANT.excluded.sex,
        "birth_weight_g": _NEW_INFANT.excluded.birth_weight_g,
        "in_follow_up": False,
        "follow_up_from": None,
        "high_risk": False,
        "high_risk_reasons": text("'[]'::jsonb"),
        "prophylaxis": text("'[]'::jsonb"),
        "final_outcome": None,
        "final_outcome_on": None,
        "next_timer_on": None,
    },
    where=infants.c.voided_at.is_not(None),
).returning(*infants.c, literal_column("(xmax = 0)").label("inserted"))


@dataclass(frozen=True, slots=True)
class InfantKey:
    infant_id: UUID
    client_id: UUID
    ref_hash: str | None
    #: its delivery was voided: never born on the platform
    voided: bool = False


async def resolve_infants(
    session: AsyncSession, infant_ids: Iterable[UUID], ref_hashes: Iterable[str]
) -> tuple[dict[UUID, InfantKey], dict[str, InfantKey]]:
    """Infants named by id or by the keyed hash of their EMR reference."""
    ids, hashes = list(set(infant_ids)), list(set(ref_hashes))
    if not ids and not hashes:
        return {}, {}
    rows = await session.execute(
        select(infants.c.infant_id, infants.c.client_id, infants.c.ref_hash, infants.c.voided_at).where(
            any_of(infants.c.infant_id, ids) | any_of(infants.c.ref_hash, hashes)
        )
    )
    keys = [InfantKey(r.infant_id, r.client_id, r.ref_hash, r.voided_at is not None) for r in rows]
    # a record number of a voided infant registered again (a corrected delivery) names the new one
    by_hash = {k.ref_hash: k for k in sorted(keys, key=lambda k: not k.voided) if k.ref_hash}
    return {k.infant_id: k for k in keys}, by_hash


async def lock_infants(session: AsyncSession, infant_ids: Iterable[UUID], tz: str) -> dict[UUID, InfantCase]:
    """Infant cases with their history and items, locked in id order."""
    ids = sorted(set(infant_ids))
    if not ids:
        return {}
    rows = (
        await session.execute(
            select(infants).where(any_of(infants.c.infant_id, ids)).order_by(infants.c.infant_id).with_for_update()
        )
    ).all()
    history = await _histories(session, ids, tz)
    items = await load_items(session, ids)
    return {r.infant_id: _infant(r._mapping, history.get(r.infant_id, []), items.get(r.infant_id, [])) for r in rows}


async def _histories(session: AsyncSession, ids: list[UUID], tz: str) -> dict[UUID, list[RecordedEvent]]:
    rows = await session.execute(
        text(
            "SELECT event_id, infant_id, type, data, (occurred_at AT TIME ZONE :tz)::date AS occurred_on,"
            " (received_at AT TIME ZONE :tz)::date AS reported_on FROM infant_events"
            " WHERE infant_id = ANY(:ids) AND voided_at IS NULL AND type <> 'EventVoided'"
            " ORDER BY occurred_at, received_at, event_id"
        ),
        {"ids": ids, "tz": tz},
    )
    out: dict[UUID, list[RecordedEvent]] = {}
    for r in rows:
        out.setdefault(r.infant_id, []).append(RecordedEvent(r.type, r.occurred_on, r.reported_on, r.data, r.event_id))
    return out


def _infant(row: Any, history: list[RecordedEvent], items: list[Item]) -> InfantCase:
    facts = InfantFacts(
        birth_date=row["birth_date"],
        high_risk=row["high_risk"],
        follow_up_from=row["follow_up_from"] or row["birth_date"],
        mother_died_on=row["mother_died_on"],
    )
    case = InfantCase(
        infant_id=row["infant_id"],
        client_id=row["client_id"],
        facility_id=row["facility_id"],
        facts=facts,
        in_follow_up=row["in_follow_up"],
        high_risk_reasons=[HighRiskReason(r) for r in row["high_risk_reasons"]],
        prophylaxis=[ProphylaxisPlan.model_validate(p) for p in row["prophylaxis"]],
        items=items,
        attendance=_attendance(row),
        final_outcome=FinalOutcome(row["final_outcome"]) if row["final_outcome"] else None,
        final_outcome_on=row["final_outcome_on"],
        delivery_event_id=row["delivery_event_id"],
        voided=row["voided_at"] is not None,
    )
    if history:
        case.events = list(history)
        case.facts = with_events(case.facts, history)
    return case


_INFANT_FACTS = (
    "facility_id",
    "in_follow_up",
    "follow_up_from",
    "high_risk",
    "high_risk_reasons",
    "prophylaxis",
    "mother_died_on",
    "died_on",
    "transferred_out_on",
    "transferred_in_on",
    "art_started_on",
    "breastfeeding_stopped_on",
    "art_needed",
    "pending_feeding_status",
    "final_outcome",
    "final_outcome_on",
)
_SAVE_INFANT = _update(infants, "infant_id", _INFANT_FACTS + _ATTENDANCE, jsonb=("high_risk_reasons", "prophylaxis"))


def _infant_values(case: InfantCase, next_timer_on: date | None, settle_s: float | None) -> dict[str, Any]:
    """The parameters of `_SAVE_INFANT` for a case."""
    plan = case.plan
    values: dict[str, Any] = {
        "key": case.infant_id,
        "facility_id": case.facility_id,
        "in_follow_up": case.in_follow_up,
        "follow_up_from": case.facts.follow_up_from if case.in_follow_up else None,
        "high_risk": case.facts.high_risk,
        "high_risk_reasons": json.dumps([r.value for r in case.high_risk_reasons]),
        "prophylaxis": json.dumps([p.model_dump(mode="json") for p in case.prophylaxis]),
        "mother_died_on": case.facts.mother_died_on,
        "died_on": case.facts.died_on,
        "transferred_out_on": case.facts.transferred_out_on,
        "transferred_in_on": case.facts.transferred_in_on,
        "art_started_on": case.facts.art_started_on,
        "breastfeeding_stopped_on": plan.breastfeeding_stopped_on if plan else None,
        "art_needed": bool(plan and plan.art_needed),
        "pending_feeding_status": bool(plan and plan.pending_feeding_status),
        "final_outcome": case.final_outcome.value if case.final_outcome else None,
        "final_outcome_on": case.final_outcome_on,
        **_attendance_values(case.attendance, next_timer_on, settle_s),
    }
    return values


# --- schedule items ------------------------------------------------------------------------------


async def load_items(session: AsyncSession, subject_ids: Sequence[UUID]) -> dict[UUID, list[Item]]:
    rows = await session.execute(
        select(schedule_items)
        .where(any_of(schedule_items.c.subject_id, subject_ids))
        .order_by(schedule_items.c.window_start, schedule_items.c.kind)
    )
    out: dict[UUID, list[Item]] = {}
    for r in rows:
        out.setdefault(r.subject_id, []).append(
            Item(
                item_id=r.item_id,
                kind=ScheduleKind(r.kind),
                test=InfantTest(r.test) if r.test else None,
                window_start=r.window_start,
                window_end=r.window_end,
                overdue_on=r.overdue_on,
                status=Status(r.status),
                satisfied_on=r.satisfied_on,
                cancel_reason=r.cancel_reason,
                label=r.label,
                announced=r.due_announced_at is not None or r.overdue_announced_at is not None,
            )
        )
    return out


async def drop_items(session: AsyncSession, item_ids: Sequence[UUID]) -> None:
    """Delete schedule items a recompute left out (`schedule.reconcile`: no longer called for, and
    never announced); the statement keeps any whose announcement was committed meanwhile."""
    if item_ids:
        await session.execute(_DROP_ITEMS, {"ids": sorted(item_ids)})


def _dropped(dropped: set[UUID], items: list[Item]) -> list[UUID]:
    """A case's dropped item ids, less any it has again (noted as written from then on)."""
    out = sorted(dropped - {i.item_id for i in items})
    dropped.clear()
    return out


#: a changed item is written whole (`_item_rows`), once it exists only its state moves: all the
#: changed items of a flush in one statement (`insert_rows`), not one per item
_UPSERT_ITEMS = """
    ON CONFLICT (item_id) DO UPDATE SET
        facility_id = EXCLUDED.facility_id,
        window_end = EXCLUDED.window_end,
        overdue_on = EXCLUDED.overdue_on,
        status = EXCLUDED.status,
        satisfied_on = EXCLUDED.satisfied_on,
        cancel_reason = EXCLUDED.cancel_reason,
        label = EXCLUDED.label,
        due_announced_at = coalesce(
            schedule_items.due_announced_at, CASE WHEN EXCLUDED.status IN ('due', 'overdue') THEN now() END),
        overdue_announced_at = coalesce(
            schedule_items.overdue_announced_at, CASE WHEN EXCLUDED.status = 'overdue' THEN now() END),
        updated_at = now()
"""


async def save_items(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write changed schedule items (rows of `_item_rows`, of distinct items) in one statement."""
    await insert_rows(session, schedule_items, rows, on_conflict=" ".join(_UPSERT_ITEMS.split()))


def _item_rows(
    subject_type: str, subject_id: UUID, client_id: UUID, facility_id: str, items: list[Item]
) -> list[dict[str, Any]]:
    """The rows of the items that changed, which count as written from then on."""
    changed = [i for i in items if i.changed]
    rows = [
        {
            "item_id": i.item_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "client_id": client_id,
            "facility_id": facility_id,
            "kind": i.kind.value,
            "test": i.test.value if i.test else None,
            "window_start": i.window_start,
            "window_end": i.window_end,
            "overdue_on": i.overdue_on,
            "status": i.status.value,
            "satisfied_on": i.satisfied_on,
            "cancel_reason": i.cancel_reason,
            "label": i.label,
        }
        for i in changed
    ]
    for i in changed:
        i.changed = False
    return rows


# --- attendance and timers -----------------------------------------------------------------------


def _attendance(row: Any) -> Attendance:
    return Attendance(row["last_seen_on"], row["lost_since"], row["lost_last_seen_on"])


def _attendance_values(a: Attendance, next_timer_on: date | None, settle_s: float | None) -> dict[str, Any]:
    return {
        "last_seen_on": a.last_seen_on,
        "lost_since": a.lost_since,
        "lost_last_seen_on": a.lost_last_seen_on,
        "next_timer_on": next_timer_on,
        "settle_s": settle_s,
    }


async def claim_due_infants(
    session: AsyncSession, today: date, limit: int, only: Sequence[UUID] | None = None
) -> list[UUID]:
    """Infants with timer work due by `today` whose last input has settled, locked; rows another
    replica holds are skipped (`SKIP LOCKED`), so replicas share the work without waiting."""
    return await _claim(session, "infants", "infant_id", today, limit, only)


async def claim_due_mothers(
    session: AsyncSession, today: date, limit: int, only: Sequence[UUID] | None = None
) -> list[UUID]:
    return await _claim(session, "mothers", "client_id", today, limit, only)


async def _claim(
    session: AsyncSession, table: str, key: str, today: date, limit: int, only: Sequence[UUID] | None
) -> list[UUID]:
    params: dict[str, Any] = {"today": today, "limit": limit}
    restrict = ""
    if only is not None:
        restrict, params["only"] = f" AND {key} = ANY(:only)", list(only)
    rows = await session.execute(
        text(
            f"SELECT {key} FROM {table} WHERE next_timer_on <= :today AND settle_until <= now(){restrict}"
            f" ORDER BY next_timer_on, {key} LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        params,
    )
    return [r[0] for r in rows]


# --- EMR infant events ---------------------------------------------------------------------------


async def known_events(session: AsyncSession, event_ids: Iterable[UUID]) -> dict[UUID, tuple[str, UUID]]:
    """Already accepted events: event_id -> (content hash, infant_id)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(infant_events.c.event_id, infant_events.c.content_hash, infant_events.c.infant_id).where(
            any_of(infant_events.c.event_id, ids)
        )
    )
    return {r.event_id: (r.content_hash, r.infant_id) for r in rows}


async def recorded_event(session: AsyncSession, event_id: UUID) -> Any | None:
    """One accepted infant event: where, when, what, and its infant."""
    rows = await session.execute(
        select(
            infant_events.c.event_id,
            infant_events.c.facility_id,
            infant_events.c.type,
            infant_events.c.occurred_at,
            infant_events.c.infant_id,
        ).where(infant_events.c.event_id == event_id)
    )
    return rows.first()


async def add_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """A batch's accepted infant events, in one statement (an executemany was one per event)."""
    await insert_rows(session, infant_events, rows)


# --- reads ---------------------------------------------------------------------------------------


async def infant_record(session: AsyncSession, infant_id: UUID) -> tuple[Any, list[Any], list[Any]] | None:
    """The infant row, its items and its accepted events, for GET /v1/infants/{id}."""
    row = (await session.execute(select(infants).where(infants.c.infant_id == infant_id))).first()
    if row is None:
        return None
    items = (
        await session.execute(
            select(schedule_items)
            .where(schedule_items.c.subject_id == infant_id)
            .order_by(schedule_items.c.window_start, schedule_items.c.kind)
        )
    ).all()
    events = (
        await session.execute(
            select(infant_events)
            .where(
                (infant_events.c.infant_id == infant_id)
                & infant_events.c.voided_at.is_(None)
                & (infant_events.c.type != "EventVoided")
            )
            .order_by(infant_events.c.occurred_at, infant_events.c.received_at)
        )
    ).all()
    return row, items, events


WORKLIST_SQL = text(
    f"""
    WITH urgent AS (
        SELECT {_SHOWN} FROM schedule_items
        WHERE facility_id = :facility_id AND status IN ('planned', 'due', 'overdue') AND {_URGENT}
          AND window_start <= :as_of
        ORDER BY overdue_on <= :as_of DESC, overdue_on, window_end, item_id LIMIT :limit
    ), overdue AS (
        SELECT {_SHOWN} FROM schedule_items
        WHERE facility_id = :facility_id AND status IN ('planned', 'due', 'overdue') AND NOT {_URGENT}
          AND overdue_on <= :as_of
        ORDER BY overdue_on, item_id LIMIT :limit
    ), pending AS (
        SELECT {_SHOWN} FROM schedule_items
        WHERE facility_id = :facility_id AND status IN ('planned', 'due') AND NOT {_URGENT}
          AND window_start <= :as_of AND overdue_on > :as_of
        ORDER BY window_end, item_id LIMIT :limit
    ), marked_later AS (
        SELECT {_SHOWN} FROM schedule_items
        WHERE facility_id = :facility_id AND status = 'overdue' AND NOT {_URGENT}
          AND overdue_on > :as_of AND window_start <= :as_of
        ORDER BY window_end, item_id LIMIT :limit
    )
    SELECT * FROM (
        SELECT * FROM urgent UNION ALL SELECT * FROM overdue
        UNION ALL SELECT * FROM pending UNION ALL SELECT * FROM marked_later
    ) AS worklist
    ORDER BY overdue_on <= :as_of DESC, {_URGENT} DESC, overdue_on, window_end, item_id
    LIMIT :limit
    """
)


async def worklist(session: AsyncSession, facility_id: str, as_of: date, limit: int) -> list[Any]:
    """A facility's open items whose window has opened by `as_of`, most urgent first: overdue
    before due; within each, the "at once" actions (ART start, confirmatory and repeat tests),
    then the longest overdue / the soonest closing window.

    Four parts, each a bounded scan of its own partial index (migration 0003): the at-once actions
    (the mothers' too since migration 0006: at most `limit` of them, in the worklist's order), the
    overdue items in overdue order (stops at `limit`), the items still planned or due whose window
    is open, and items the timers marked overdue after `as_of` (asking about a past day). Callable
    directly by the benchmark."""
    rows = await session.execute(WORKLIST_SQL, {"facility_id": facility_id, "as_of": as_of, "limit": limit})
    return list(rows)
