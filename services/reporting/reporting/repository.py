"""All SQL of the reporting service.

Writes merge one fact into a subject's row with a rule that gives the same row whatever order
the facts arrive in (earliest, latest, highest version; ties broken by value), so a replay in a
different order rebuilds the same read model. Reads count rows per facility and month.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .episodes import ArtStart, Enrolled, HivTest, MotherFact, episodes
from .indicators import CLIENT_INTERACTIONS_COUNT, COUNTS, POPULATIONS
from .models import READ_MODEL


def _keep_earliest(alias: str, prefix: str, order: tuple[str, ...], carried: tuple[str, ...] = ()) -> str:
    """SET clauses that keep the fact `prefix` whose (`order`...) tuple is the smallest, beginning with its
    time: a total order, so the row ends the same whichever fact arrived first. `carried` columns follow."""
    mine = ", ".join(f"{alias}.{prefix}_{c}" for c in order)
    theirs = ", ".join(f"excluded.{prefix}_{c}" for c in order)
    smaller = f"{alias}.{prefix}_at IS NULL OR ROW({theirs}) < ROW({mine})"
    return ",\n".join(
        f"{prefix}_{c} = CASE WHEN {smaller} THEN excluded.{prefix}_{c} ELSE {alias}.{prefix}_{c} END"
        for c in (*order, *carried)
    )


Cells = dict[tuple[str, date], dict[str, int]]

_SUBJECT_CELLS = {p.name: text(p.cells_sql(f"{p.subject_column} = :subject")) for p in POPULATIONS}


async def _subject_cells(session: AsyncSession, table: str, subject: UUID) -> Cells:
    """What one subject adds to each (facility, month) cell, through every population of `table`."""
    cells: Cells = defaultdict(lambda: defaultdict(int))
    for population in POPULATIONS:
        if population.table != table:
            continue
        for row in await session.execute(_SUBJECT_CELLS[population.name], {"subject": subject}):
            for key, value in zip(population.count_keys, row[2:], strict=True):
                cells[(row[0], row[1])][key] += value
    return cells


@asynccontextmanager
async def _moving(session: AsyncSession, table: str, subject: UUID) -> AsyncIterator[None]:
    """Around a change of one subject's row: take its old counts out of the cells, put the new ones in."""
    before = await _subject_cells(session, table, subject)
    yield
    after = await _subject_cells(session, table, subject)
    delta: Cells = defaultdict(lambda: defaultdict(int))
    for sign, cells in ((-1, before), (1, after)):
        for cell, counts in cells.items():
            for key, value in counts.items():
                delta[cell][key] += sign * value
    await _add_to_cells(session, delta)


async def _add_to_cells(session: AsyncSession, delta: Cells) -> None:
    # in (facility, month) order, so that two transactions lock shared cells in the same order
    for (facility_id, month), counts in sorted(delta.items()):
        changed = {k: v for k, v in counts.items() if v}
        if not changed:
            continue
        names = ", ".join(changed)
        values = ", ".join(f":{k}" for k in changed)
        sums = ", ".join(f"{k} = c.{k} + excluded.{k}" for k in changed)
        await session.execute(
            text(
                f"INSERT INTO monthly_counts AS c (facility_id, month, {names}) VALUES (:facility_id, :month, {values})"
                f" ON CONFLICT (facility_id, month) DO UPDATE SET {sums}"
            ),
            {"facility_id": facility_id, "month": month, **changed},
        )


_MOTHER_FACT = text(
    """
    INSERT INTO mother_facts (event_id, client_id, kind, occurred_at, facility_id, status_at_enrolment, hiv_status,
                              on_art, transfer_in, result, setting)
    VALUES (:event_id, :client_id, :kind, :occurred_at, :facility_id, :status_at_enrolment, :hiv_status,
            :on_art, :transfer_in, :result, :setting)
    ON CONFLICT (event_id) DO NOTHING
    """
)
_MOTHER_FACTS = text("SELECT * FROM mother_facts WHERE client_id = :client_id")
_FORGET_EPISODES = text("DELETE FROM enrolments WHERE client_id = :client_id")
_EPISODE = text(
    """
    INSERT INTO enrolments (client_id, enrolled_on, facility_id, status_at_enrolment, hiv_status_at_enrolment,
                            on_art_at_enrolment, first_test_result, first_test_setting, first_positive_on,
                            art_started_on)
    VALUES (:client_id, :enrolled_on, :facility_id, :status_at_enrolment, :hiv_status_at_enrolment,
            :on_art_at_enrolment, :first_test_result, :first_test_setting, :first_positive_on, :art_started_on)
    """
)
_FACT_COLUMNS = ("status_at_enrolment", "hiv_status", "on_art", "transfer_in", "result", "setting")


async def record_mother_fact(
    session: AsyncSession, event_id: UUID, client_id: UUID, facility_id: str, fact: MotherFact
) -> None:
    """Keep the fact, then derive her enrolment episodes again from all her facts."""
    values = dict.fromkeys(_FACT_COLUMNS)
    if isinstance(fact, Enrolled):
        kind = "enrolled"
        values.update(
            status_at_enrolment=fact.status_at_enrolment,
            hiv_status=fact.hiv_status,
            on_art=fact.on_art,
            transfer_in=fact.transfer_in,
        )
    elif isinstance(fact, HivTest):
        kind = "hiv_test"
        values.update(result=fact.result, setting=fact.setting)
    else:
        kind = "art_start"
    async with _moving(session, "enrolments", client_id):
        await session.execute(
            _MOTHER_FACT,
            {
                "event_id": event_id,
                "client_id": client_id,
                "kind": kind,
                "occurred_at": fact.occurred_at,
                "facility_id": facility_id,
                **values,
            },
        )
        rows = (await session.execute(_MOTHER_FACTS, {"client_id": client_id})).mappings().all()
        await session.execute(_FORGET_EPISODES, {"client_id": client_id})
        derived = episodes(client_id, [_fact(r) for r in rows])
        if derived:
            await session.execute(_EPISODE, [asdict(e) for e in derived])


def _fact(row) -> MotherFact:
    if row["kind"] == "enrolled":
        return Enrolled(
            row["occurred_at"],
            row["facility_id"],
            row["status_at_enrolment"],
            row["hiv_status"],
            row["on_art"],
            row["transfer_in"],
        )
    if row["kind"] == "hiv_test":
        return HivTest(row["occurred_at"], row["result"], row["setting"])
    return ArtStart(row["occurred_at"])


_DELIVERY = text(
    """
    INSERT INTO deliveries (client_id, delivered_on, facility_id, skilled_attendant, mother_hiv_status, live_births)
    VALUES (:client_id, :delivered_on, :facility_id, :skilled_attendant, :mother_hiv_status, :live_births)
    ON CONFLICT (client_id, delivered_on) DO NOTHING
    """
)


async def record_delivery(
    session: AsyncSession,
    client_id: UUID,
    delivered_on: date,
    facility_id: str,
    skilled_attendant: bool,
    mother_hiv_status: str,
    live_births: int,
) -> None:
    async with _moving(session, "deliveries", client_id):
        await session.execute(
            _DELIVERY,
            {
                "client_id": client_id,
                "delivered_on": delivered_on,
                "facility_id": facility_id,
                "skilled_attendant": skilled_attendant,
                "mother_hiv_status": mother_hiv_status,
                "live_births": live_births,
            },
        )


_HEI = text(
    """
    INSERT INTO infants AS i (infant_id, facility_id, birth_date) VALUES (:infant_id, :facility_id, :birth_date)
    ON CONFLICT (infant_id) DO UPDATE SET
        facility_id = COALESCE(i.facility_id, excluded.facility_id),
        birth_date = COALESCE(i.birth_date, excluded.birth_date)
    """
)


async def record_hei(session: AsyncSession, infant_id: UUID, facility_id: str, birth_date: date) -> None:
    async with _moving(session, "infants", infant_id):
        await session.execute(_HEI, {"infant_id": infant_id, "facility_id": facility_id, "birth_date": birth_date})


_FIRST_NAT = text(
    f"""
    INSERT INTO infants AS i (infant_id, first_nat_at, first_nat_on, first_nat_age_days, first_nat_result,
                              first_nat_facility_id)
    VALUES (:infant_id, :sampled_at, :sampled_on, :age_days, :result, :facility_id)
    ON CONFLICT (infant_id) DO UPDATE SET
        {_keep_earliest("i", "first_nat", ("at", "result", "facility_id", "age_days"), ("on",))}
    """
)

_FIRST_POSITIVE_NAT = text(
    f"""
    INSERT INTO infants AS i (infant_id, first_pos_nat_at, first_pos_nat_on, first_pos_nat_age_days,
                              first_pos_nat_facility_id)
    VALUES (:infant_id, :sampled_at, :sampled_on, :age_days, :facility_id)
    ON CONFLICT (infant_id) DO UPDATE SET
        {_keep_earliest("i", "first_pos_nat", ("at", "facility_id", "age_days"), ("on",))}
    """
)


async def record_infant_nat(
    session: AsyncSession,
    infant_id: UUID,
    facility_id: str,
    sampled_at: datetime,
    age_days: int,
    result: str,
    confirmatory: bool,
) -> None:
    """A virologic test of an infant: a candidate first NAT, and a candidate first positive one."""
    params = {
        "infant_id": infant_id,
        "facility_id": facility_id,
        "sampled_at": sampled_at,
        "sampled_on": sampled_at.date(),
        "age_days": age_days,
        "result": result,
    }
    async with _moving(session, "infants", infant_id):
        await session.execute(_FIRST_NAT, params)
        if result == "positive" and not confirmatory:
            await session.execute(_FIRST_POSITIVE_NAT, params)


_INFANT_ART = text(
    """
    INSERT INTO infants AS i (infant_id, art_started_on) VALUES (:infant_id, :started_on)
    ON CONFLICT (infant_id) DO UPDATE SET art_started_on = LEAST(i.art_started_on, excluded.art_started_on)
    """
)


async def record_infant_art(session: AsyncSession, infant_id: UUID, started_on: date) -> None:
    async with _moving(session, "infants", infant_id):
        await session.execute(_INFANT_ART, {"infant_id": infant_id, "started_on": started_on})


_OUTCOME = text(
    """
    INSERT INTO infants AS i (infant_id, outcome, outcome_recorded_at) VALUES (:infant_id, :outcome, :recorded_at)
    ON CONFLICT (infant_id) DO UPDATE SET outcome = excluded.outcome, outcome_recorded_at = excluded.outcome_recorded_at
    -- the outcome recorded last stands; two at the same instant: the larger code, so order never matters
    WHERE i.outcome_recorded_at IS NULL
       OR ROW(excluded.outcome_recorded_at, excluded.outcome) > ROW(i.outcome_recorded_at, i.outcome)
    """
)


async def record_infant_outcome(session: AsyncSession, infant_id: UUID, outcome: str, recorded_at: datetime) -> None:
    """`recorded_at` is when follow-up recorded it (the CloudEvent time), not the outcome's own date:
    follow-up may correct an outcome when a late fact arrives, and its correction must win."""
    async with _moving(session, "infants", infant_id):
        await session.execute(_OUTCOME, {"infant_id": infant_id, "outcome": outcome, "recorded_at": recorded_at})


_REFERRAL = text(
    """
    INSERT INTO referrals AS r (referral_id, facility_id, referral_service, due_by, status, version)
    VALUES (:referral_id, :facility_id, :referral_service, :due_by, :status, :version)
    ON CONFLICT (referral_id) DO UPDATE SET
        facility_id = excluded.facility_id,
        referral_service = excluded.referral_service,
        due_by = excluded.due_by,
        status = excluded.status,
        version = excluded.version
    WHERE excluded.version > r.version
    """
)


async def record_referral(
    session: AsyncSession,
    referral_id: UUID,
    facility_id: str,
    referral_service: str,
    due_by: date,
    status: str,
    version: int,
) -> None:
    """Referral events carry the whole state: the highest version is the current one."""
    async with _moving(session, "referrals", referral_id):
        await session.execute(
            _REFERRAL,
            {
                "referral_id": referral_id,
                "facility_id": facility_id,
                "referral_service": referral_service,
                "due_by": due_by,
                "status": status,
                "version": version,
            },
        )


async def count_interaction(session: AsyncSession, facility_id: str, month: date) -> None:
    await _add_to_cells(session, {(facility_id, month): {CLIENT_INTERACTIONS_COUNT.key: 1}})


_READ_CELLS = text(
    f"SELECT facility_id, month, {', '.join(COUNTS)} FROM monthly_counts"
    " WHERE facility_id = ANY(:facility_ids) AND month >= :start AND month < :end"
)


async def read_cells(session: AsyncSession, facility_ids: Sequence[str], start: date, end: date) -> Cells:
    """Every count per (facility, month) with any data, for months in [start, end)."""
    rows = await session.execute(_READ_CELLS, {"facility_ids": list(facility_ids), "start": start, "end": end})
    return {(r[0], r[1]): dict(zip(COUNTS, r[2:], strict=True)) for r in rows}


_ALL_CELLS = text(f"SELECT facility_id, month, {', '.join(COUNTS)} FROM monthly_counts")


async def all_cells(session: AsyncSession) -> Cells:
    return {(r[0], r[1]): dict(zip(COUNTS, r[2:], strict=True)) for r in await session.execute(_ALL_CELLS)}


async def cells_from_facts(session: AsyncSession) -> Cells:
    """Every subject count per (facility, month), counted afresh from the facts (the rebuild's check
    that moving counts subject by subject added up to the same cells)."""
    cells: Cells = defaultdict(lambda: defaultdict(int))
    for population in POPULATIONS:
        for row in await session.execute(text(population.cells_sql("TRUE"))):
            for key, value in zip(population.count_keys, row[2:], strict=True):
                cells[(row[0], row[1])][key] += value
    return cells


async def lock_and_empty_read_model(session: AsyncSession, consumer: str) -> None:
    """For a rebuild, in the caller's transaction: hold off the live consumer's writes until the commit
    (EXCLUSIVE still lets readers read the old numbers; inbox first, the order the consumer takes them
    in, so the two cannot deadlock), then forget every fact and the inbox entries of `consumer`, so that
    every event on the topics is applied again."""
    names = ", ".join(t.name for t in READ_MODEL)
    await session.execute(text(f"LOCK TABLE inbox, {names} IN EXCLUSIVE MODE"))
    await session.execute(text("DELETE FROM inbox WHERE consumer = :consumer"), {"consumer": consumer})
    for table in READ_MODEL:
        await session.execute(text(f"DELETE FROM {table.name}"))
