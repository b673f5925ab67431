"""All SQL of the reporting service.

Facts are stored per event; each subject's row (a mother's enrolment episodes, an infant, a
referral) is derived from all its facts by one definition, used for one subject as events arrive
and for every subject at once by a rebuild. The derivations pick "first" and "latest" by total
orders over the facts' own values, so the rows do not depend on the order the facts came in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import date
from itertools import groupby
from operator import itemgetter
from uuid import UUID

from sqlalchemy import ARRAY, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from servicekit.db import rows_insert
from servicekit.uow import Repository, UnitOfWork

from . import episodes as mothers
from . import infants as babies
from . import models
from .episodes import (
    AncVisit,
    ArtStart,
    Delivered,
    Enrolled,
    Episode,
    HivTest,
    MotherFact,
    PostAnc1Test,
    PregnancyEnded,
)
from .facts import COLUMNS, INTERACTION_COLUMNS, Fact, Table
from .indicators import CLIENT_INTERACTIONS_COUNT, COUNTS, POPULATIONS
from .models import READ_MODEL

Cells = dict[tuple[str, date], dict[str, int]]
#: the subjects to derive again: their ids, or None for every subject (a rebuild)
Subjects = Sequence[UUID] | None

# -- facts ---------------------------------------------------------------------------------------

_STORED = (Table.mother_facts, Table.deliveries, Table.infant_facts, Table.referral_facts)
_TABLES = {t.name: t for t in READ_MODEL}
#: a fact is stored once (an event read twice counts once)
_ONCE = "ON CONFLICT (event_id) DO NOTHING"


def _insert_rows(session: Session, table: str, rows: Sequence[dict]) -> None:
    """Rows of a read-model table in one statement (`servicekit.db.rows_insert`): a batch's facts and
    derived rows cost PostgreSQL a statement per table, not one per row. A table with an array
    column (a delivery's infant ids), which one array per column cannot carry, a statement per row."""
    if not rows:
        return
    once = _ONCE if table in _FACT_TABLES else ""
    if table in _WITH_ARRAYS:
        columns = list(rows[0])
        values = ", ".join(":" + c for c in columns)
        session.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) {once}"), rows)
    else:
        session.execute(*rows_insert(_TABLES[table], rows, once))


_WITH_ARRAYS = frozenset(name for name, t in _TABLES.items() if any(isinstance(c.type, ARRAY) for c in t.c))
_FACT_TABLES = frozenset(t.value for t in _STORED)


def _where(column: str, subjects: Subjects) -> str:
    return "TRUE" if subjects is None else f"{column} = ANY(:subjects)"


def _params(subjects: Subjects) -> dict:
    return {} if subjects is None else {"subjects": list(subjects)}


# -- derived subject rows ------------------------------------------------------------------------


def _referrals_sql(where: str) -> str:
    """A referral at its highest version: its events carry its whole state."""
    return f"""
    INSERT INTO referrals (referral_id, facility_id, referral_service, due_by, status, version)
    SELECT DISTINCT ON (referral_id) referral_id, facility_id, referral_service, due_by, status, version
    FROM referral_facts WHERE {where} ORDER BY referral_id, version DESC, status DESC
    """


_DERIVED_SQL = {"referrals": (_referrals_sql, "referral_id")}
#: what a derived row holds besides its key (what `_replace_changed` compares)
_DERIVED_COLUMNS = {t.name: tuple(c.name for c in t.columns if not c.primary_key) for t in (models.referrals,)}


def _replace_changed(derived: str, key: str) -> str:
    """Some subjects derived again: each has facts, so each has its row, replaced only if it changed."""
    columns = _DERIVED_COLUMNS[derived]
    ours = ", ".join(f"{derived}.{c}" for c in columns)
    theirs = ", ".join(f"excluded.{c}" for c in columns)
    return (
        f" ON CONFLICT ({key}) DO UPDATE SET ({', '.join(columns)}) = ROW({theirs})"
        f" WHERE ROW({ours}) IS DISTINCT FROM ROW({theirs})"
    )


_EPISODE_COLUMNS = tuple(f.name for f in fields(Episode))
_TEST_COLUMNS = tuple(f.name for f in fields(PostAnc1Test))
_INFANT_COLUMNS = tuple(f.name for f in fields(babies.Infant))


def _mother_fact(row) -> MotherFact | None:
    """The fact as the episodes read it; None for the kinds they do not (today's overdue and lost)."""
    if row.kind == "enrolled":
        return Enrolled(
            row.occurred_at,
            row.occurred_on,
            row.facility_id,
            row.status_at_enrolment,
            row.hiv_status,
            row.on_art,
            row.transfer_in,
            age_years=row.age_years,
            art_start_date=row.art_start_date,
            known_since=row.known_since,
            gestation_weeks=row.gestation_weeks,
            edd=row.edd,
        )
    if row.kind == "anc_visit":
        return AncVisit(
            row.occurred_at,
            row.occurred_on,
            row.visit_number,
            row.gestation_weeks,
            facility_id=row.facility_id,
            age_years=row.age_years,
        )
    if row.kind == "hiv_test":
        return HivTest(
            row.occurred_at,
            row.occurred_on,
            row.result,
            row.setting,
            event_id=row.event_id,
            facility_id=row.facility_id,
            age_years=row.age_years,
        )
    if row.kind == "delivery":
        return Delivered(row.occurred_at, row.occurred_on)
    if row.kind == "pregnancy_ended":
        return PregnancyEnded(row.occurred_at, row.occurred_on)
    if row.kind == "art_start":
        return ArtStart(row.occurred_at, row.occurred_on)
    return None


def _mothers_of(session: Session, clients: Subjects) -> tuple[list[Episode], list[PostAnc1Test]]:
    rows = session.execute(
        text(f"SELECT * FROM mother_facts WHERE {_where('client_id', clients)} ORDER BY client_id"), _params(clients)
    )
    found: tuple[list[Episode], list[PostAnc1Test]] = ([], [])
    for client, facts in groupby(rows, key=lambda r: r.client_id):
        episodes, tests = mothers.derive(client, [f for f in map(_mother_fact, facts) if f is not None])
        found[0].extend(episodes)
        found[1].extend(tests)
    return found


def _infant_fact(row) -> babies.InfantFact:
    return babies.InfantFact(
        row.kind,
        row.occurred_at,
        row.occurred_on,
        row.recorded_at,
        row.facility_id,
        birth_date=row.birth_date,
        age_days=row.age_days,
        result=row.result,
        confirmatory=row.confirmatory,
        outcome=row.outcome,
        test=row.test,
        method=row.method,
    )


def _infants_of(session: Session, infants: Subjects) -> list[babies.Infant]:
    rows = session.execute(
        text(f"SELECT * FROM infant_facts WHERE {_where('infant_id', infants)} ORDER BY infant_id"), _params(infants)
    )
    return [
        babies.derive(infant, map(_infant_fact, facts)) for infant, facts in groupby(rows, key=lambda r: r.infant_id)
    ]


def _rows(records: Sequence, columns: Sequence[str]) -> list[dict]:
    return [{c: getattr(r, c) for c in columns} for r in records]


#: the mother facts that say whether she was known positive at a moment (`mothers.known_positive_at`)
_STATUS_KINDS = "('enrolled', 'hiv_test', 'art_start', 'delivery')"


def _positive_at_deliveries(session: Session, clients: Subjects) -> None:
    """Each delivery's `positive_at_delivery`, from her facts dated on or before it (the delivery's
    `mother_hiv_status` is as enrolment knew it on arrival: a positive test dated before the delivery
    and posted after it is not in it); set where it changed."""
    rows = session.execute(
        text(
            f"SELECT * FROM mother_facts WHERE kind IN {_STATUS_KINDS} AND client_id IN"
            f" (SELECT client_id FROM deliveries WHERE {_where('client_id', clients)}) ORDER BY client_id"
        ),
        _params(clients),
    )
    ids: list[UUID] = []
    positive: list[bool] = []
    for _, group in groupby(rows, key=lambda r: r.client_id):
        records = list(group)
        facts = [f for f in map(_mother_fact, records) if f is not None]
        for r in records:
            if r.kind == "delivery":
                ids.append(r.event_id)
                positive.append(mothers.known_positive_at(facts, r.occurred_at, r.occurred_on))
    if ids:
        session.execute(_SET_POSITIVE_AT_DELIVERY, {"ids": ids, "positive": positive})


_SET_POSITIVE_AT_DELIVERY = text(
    "UPDATE deliveries d SET positive_at_delivery = v.positive"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:positive AS boolean[])) AS v (event_id, positive)"
    " WHERE d.event_id = v.event_id AND d.positive_at_delivery IS DISTINCT FROM v.positive"
)


def derive(session: Session, derived: str, subjects: Subjects) -> None:
    """Derive the rows of `derived` again for `subjects` (all of them if None) from their facts."""
    if derived == "voids":
        return  # a void: its own fact
    if derived == "deliveries":
        # a delivery is its own fact, but her status at it is derived from her facts
        _positive_at_deliveries(session, subjects)
        return
    if derived == "enrolments":
        # a mother's episodes may come and go (a same-day enrolment, a transfer), so hers are replaced
        # whole, with her post-ANC1 tests
        for table in ("enrolments", "mother_tests"):
            session.execute(text(f"DELETE FROM {table} WHERE {_where('client_id', subjects)}"), _params(subjects))
        episodes, tests = _mothers_of(session, subjects)
        _insert_rows(session, "enrolments", _rows(episodes, _EPISODE_COLUMNS))
        _insert_rows(session, "mother_tests", _rows(tests, _TEST_COLUMNS))
        return
    if derived == "infants":
        session.execute(text(f"DELETE FROM infants WHERE {_where('infant_id', subjects)}"), _params(subjects))
        _insert_rows(session, "infants", _rows(_infants_of(session, subjects), _INFANT_COLUMNS))
        return
    sql, column = _DERIVED_SQL[derived]
    if subjects is None:
        session.execute(text(f"DELETE FROM {derived}"))
        session.execute(text(sql("TRUE")))
        return
    session.execute(text(sql(_where(column, subjects)) + _replace_changed(derived, column)), _params(subjects))


# -- per-facility-month counts -------------------------------------------------------------------


def _add(cells: Cells, more: Cells, sign: int = 1) -> None:
    for cell, counts in more.items():
        target = cells.setdefault(cell, defaultdict(int))
        for key, value in counts.items():
            target[key] += sign * value


#: derived tables written by another's derivation (a mother's post-ANC1 tests with her episodes)
_DERIVED_WITH = {"mother_tests": "enrolments"}


def _cells_of(session: Session, touched: dict[str, Subjects]) -> Cells:
    """What the subjects of each derived table in `touched` (every subject of it if None) add to each
    (facility, month) cell: one statement for all their populations (a statement per population was a
    tenth of the live consumer's time)."""
    parts: list[str] = []
    params: dict[str, list[UUID]] = {}
    for index, population in enumerate(POPULATIONS):
        source = _DERIVED_WITH.get(population.table, population.table)
        if source not in touched:
            continue
        subjects = touched[source]
        name = f"subjects_{population.table}"
        where = "TRUE" if subjects is None else f"{population.subject_column} = ANY(:{name})"
        if subjects is not None:
            params[name] = list(subjects)
        counts = ", ".join(population.count_keys)
        parts.append(
            f"SELECT {index} AS population, facility_id, month, ARRAY[{counts}] AS counts"
            f" FROM ({population.cells_sql(where)}) AS p{index}"
        )
    cells: Cells = {}
    if not parts:
        return cells
    for index, facility_id, month, counts in session.execute(text("\nUNION ALL\n".join(parts)), params):
        _add(cells, {(facility_id, month): dict(zip(POPULATIONS[index].count_keys, counts, strict=True))})
    return cells


#: a batch's changed cells in one statement: every count moves by its delta (zero for the unchanged ones)
_ADD_TO_CELLS = text(
    f"INSERT INTO monthly_counts AS c (facility_id, month, {', '.join(COUNTS)})"
    f" SELECT facility_id, month, {', '.join(COUNTS)}"
    " FROM unnest(CAST(:facility_ids AS text[]), CAST(:months AS date[]), "
    + ", ".join(f"CAST(:{k} AS bigint[])" for k in COUNTS)
    + ") WITH ORDINALITY AS d (facility_id, month, "
    + ", ".join(COUNTS)
    + ", position) ORDER BY position"
    f" ON CONFLICT (facility_id, month) DO UPDATE SET {', '.join(f'{k} = c.{k} + excluded.{k}' for k in COUNTS)}"
)


def _add_to_cells(session: Session, delta: Cells) -> None:
    # in (facility, month) order, so that two transactions lock shared cells in the same order
    moved = [(cell, counts) for cell, counts in sorted(delta.items()) if any(counts.values())]
    if not moved:
        return
    params: dict[str, list] = {"facility_ids": [f for (f, _), _ in moved], "months": [m for (_, m), _ in moved]}
    for key in COUNTS:
        params[key] = [counts.get(key, 0) for _, counts in moved]
    session.execute(_ADD_TO_CELLS, params)


class ReadModel(Repository[None, None]):
    """The facts of a unit of work's events, kept as the events arrive and applied at once by
    `flush` (`_apply_facts`): the consumer applies a batch of events per unit, so this costs a few
    statements per batch, not per event."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.pending: list[Fact] = []

    def add_facts(self, facts: Iterable[Fact]) -> None:
        self.pending.extend(facts)

    async def flush(self) -> None:
        if self.pending:
            facts, self.pending = self.pending, []
            await self.session.run_sync(_apply_facts, facts)


class ReportingUnit(UnitOfWork):
    """The reporting service's unit of work: its read model (it publishes nothing)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.read_model = self.track(ReadModel(session))


def _apply_facts(session: Session, facts: list[Fact]) -> None:
    """Store the facts, derive the subjects they touch again, and move those subjects' counts (out
    with their old rows, in with the new). Runs in `ReadModel.flush`, on the session's synchronous
    face (the derivations are written against it).

    A void (a fact of `Table.voids`) takes out the facts of its `voided_ids` in every table (and, for a
    voided delivery, every fact of the infants it registered); it is kept as a tombstone, so that such
    a fact arriving later (another topic, a redelivery, the same batch) is not stored either: the end
    state is that of the events less the voided ones, in any order."""
    if not facts:
        return
    voids = [f.row for f in facts if f.table is Table.voids]
    voided_ids = sorted({i for v in voids for i in v["voided_ids"]})
    touched: dict[str, set[UUID]] = defaultdict(set)
    for f in facts:
        if f.subject is not None:
            touched[f.subject[0]].add(f.subject[1])
    dropped: dict[UUID, UUID] = {}
    if voids:
        voided_by = {i: v["event_id"] for v in voids for i in v["voided_ids"]}
        for derived, subject in _voided_subjects(session, voided_ids):
            touched[derived].add(subject)
        # the infants of a voided delivery, stored or in this batch
        for delivery_id, infant_ids in _delivery_infants(session, voided_ids):
            dropped.update(dict.fromkeys(infant_ids or (), voided_by[delivery_id]))
        for f in facts:
            if f.table is Table.deliveries and f.row["event_id"] in voided_by:
                dropped.update(dict.fromkeys(f.row["infant_ids"] or (), voided_by[f.row["event_id"]]))
        touched["infants"].update(dropped)
        touched["voids"].update(v["event_id"] for v in voids)
    if "enrolments" in touched:
        # her status at each of her deliveries is read from her facts (`_positive_at_deliveries`)
        touched["deliveries"].update(touched["enrolments"])
    subjects: dict[str, Subjects] = {derived: list(ids) for derived, ids in touched.items()}
    delta: Cells = {}
    _add(delta, _cells_of(session, subjects), -1)
    if voids:
        session.execute(_INSERT_VOID, [{c: v[c] for c in COLUMNS[Table.voids]} for v in voids])
        session.execute(_INSERT_VOIDED_FACT, [{"event_id": i, "voided_by": b} for i, b in voided_by.items()])
        if dropped:
            session.execute(_INSERT_VOIDED_INFANT, [{"infant_id": i, "voided_by": b} for i, b in dropped.items()])
    for table in _STORED:
        columns = COLUMNS[table]
        _insert_rows(session, table.value, [{c: f.row[c] for c in columns} for f in facts if f.table is table])
    contacts = [f.row for f in facts if f.table is Table.interactions]
    if contacts:
        params = {f"{c}s": [row[c] for row in contacts] for c in INTERACTION_COLUMNS}
        added = session.execute(_INSERT_INTERACTION, params).all()
        _add(delta, _contact_cells(added))
    # take out what any void names, among this batch's facts and what the voids of this batch name
    ids = sorted({*voided_ids, *(f.row["event_id"] for f in facts if f.table is not Table.voids)})
    infants = sorted({*touched.get("infants", ()), *(c["infant_id"] for c in contacts if c["infant_id"])})
    removed = session.execute(_TAKE_OUT_VOIDED, {"ids": ids, "infants": infants}).all()
    _add(delta, _contact_cells(removed), -1)
    for derived, subject_ids in subjects.items():
        derive(session, derived, subject_ids)
    _add(delta, _cells_of(session, subjects))
    _add_to_cells(session, delta)


_FACT_SUBJECTS = {
    Table.mother_facts: ("enrolments", "client_id"),
    Table.deliveries: ("deliveries", "client_id"),
    Table.infant_facts: ("infants", "infant_id"),
    Table.referral_facts: ("referrals", "referral_id"),
}
_VOIDED_SUBJECTS = text(
    "\nUNION ALL\n".join(
        f"SELECT '{derived}' AS derived, {column} AS subject FROM {table.value} WHERE event_id = ANY(:ids)"
        for table, (derived, column) in _FACT_SUBJECTS.items()
    )
)


def _voided_subjects(session: Session, ids: Sequence[UUID]) -> list[tuple[str, UUID]]:
    """The subjects whose stored facts `ids` name (the ones a void changes)."""
    return [(r[0], r[1]) for r in session.execute(_VOIDED_SUBJECTS, {"ids": list(ids)})]


def _delivery_infants(session: Session, ids: Sequence[UUID]) -> list[tuple[UUID, list[UUID] | None]]:
    rows = session.execute(text("SELECT event_id, infant_ids FROM deliveries WHERE event_id = ANY(:ids)"), {"ids": ids})
    return [(r[0], r[1]) for r in rows]


def _contact_cells(rows: Iterable) -> Cells:
    cells: Cells = {}
    for facility_id, month in rows:
        _add(cells, {(facility_id, month): {CLIENT_INTERACTIONS_COUNT.key: 1}})
    return cells


_INSERT_VOID = text(
    f"INSERT INTO voids ({', '.join(COLUMNS[Table.voids])}) VALUES ({', '.join(':' + c for c in COLUMNS[Table.voids])})"
    " ON CONFLICT (event_id) DO NOTHING"
)
# the first void of a fact is the one that took it out (a second one is refused at the intake anyway)
_INSERT_VOIDED_FACT = text(
    "INSERT INTO voided_facts (event_id, voided_by) VALUES (:event_id, :voided_by) ON CONFLICT (event_id) DO NOTHING"
)
_INSERT_VOIDED_INFANT = text(
    "INSERT INTO voided_infants (infant_id, voided_by) VALUES (:infant_id, :voided_by)"
    " ON CONFLICT (infant_id) DO NOTHING"
)
#: a contact is counted when it is first stored (so a redelivered event counts once)
_INSERT_INTERACTION = text(
    f"INSERT INTO interactions ({', '.join(INTERACTION_COLUMNS)})"
    " SELECT * FROM unnest(CAST(:event_ids AS uuid[]), CAST(:facility_ids AS text[]), CAST(:months AS date[]),"
    " CAST(:infant_ids AS uuid[]))"
    " ON CONFLICT (event_id) DO NOTHING RETURNING facility_id, month"
)
#: one statement: the facts among `ids` that a void names, every fact and contact of the `infants` a
#: voided delivery registered; answers the contacts taken out (their cells move down)
_TAKE_OUT_VOIDED = text(
    "WITH "
    + ", ".join(
        f"d_{t.value} AS (DELETE FROM {t.value} f USING voided_facts v"
        " WHERE f.event_id = v.event_id AND f.event_id = ANY(:ids))"
        for t in _STORED
    )
    + ", d_infants AS (DELETE FROM infant_facts f USING voided_infants v"
    " WHERE f.infant_id = v.infant_id AND f.infant_id = ANY(:infants))"
    " DELETE FROM interactions i"
    " WHERE (i.event_id = ANY(:ids) AND i.event_id IN (SELECT event_id FROM voided_facts))"
    " OR (i.infant_id = ANY(:infants) AND i.infant_id IN (SELECT infant_id FROM voided_infants))"
    " RETURNING i.facility_id, i.month"
)


_READ_CELLS = text(
    f"SELECT facility_id, month, {', '.join(COUNTS)} FROM monthly_counts"
    " WHERE facility_id = ANY(:facility_ids) AND month >= :start AND month < :end"
)


async def read_cells(session: AsyncSession, facility_ids: Sequence[str], start: date, end: date) -> Cells:
    """Every count per (facility, month) with any data, for months in [start, end)."""
    rows = await session.execute(_READ_CELLS, {"facility_ids": list(facility_ids), "start": start, "end": end})
    return {(r[0], r[1]): dict(zip(COUNTS, r[2:], strict=True)) for r in rows}


def _all_cells(session: Session) -> Cells:
    return _cells_of(session, dict.fromkeys(_DERIVED_WITH.get(p.table, p.table) for p in POPULATIONS))


async def cells_from_facts(session: AsyncSession) -> Cells:
    """Every subject count per (facility, month), counted afresh over every subject row."""
    return await session.run_sync(_all_cells)


# -- rebuild -------------------------------------------------------------------------------------


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


async def _copy(session: AsyncSession, table: str, columns: Sequence[str], records: list[tuple]) -> None:
    """Bulk-load rows with PostgreSQL COPY on the session's own connection (and transaction)."""
    if not records:
        return
    connection = (await (await session.connection()).get_raw_connection()).driver_connection
    assert connection is not None, "the session's connection is open inside its transaction"
    await connection.copy_records_to_table(table, records=records, columns=list(columns))


async def create_staging(session: AsyncSession) -> None:
    """Temporary tables the rebuild copies facts and applied event ids into, dropped at the commit.
    Their sorts (an event read twice counts once; the inbox in key order) are of every event on the
    topics: the transaction may sort them in memory, not in temporary files."""
    await session.execute(text("SET LOCAL work_mem = '256MB'"))
    for t in _REBUILT:
        await session.execute(text(f"CREATE TEMPORARY TABLE stage_{t.value} (LIKE {t.value}) ON COMMIT DROP"))
    await session.execute(text("CREATE TEMPORARY TABLE stage_applied (event_id uuid) ON COMMIT DROP"))


#: what a rebuild stages and copies in: the stored facts, the contacts and the voids
_REBUILT = (*_STORED, Table.interactions, Table.voids)
#: the tombstones of every void (a fact named twice: the earliest void's), the infants of voided
#: deliveries, then every fact and contact they take out
_REBUILD_VOIDED = (
    "INSERT INTO voided_facts (event_id, voided_by) SELECT DISTINCT ON (voided) voided, event_id"
    " FROM voids, unnest(voided_ids) AS voided ORDER BY voided, occurred_at, event_id",
    "INSERT INTO voided_infants (infant_id, voided_by) SELECT DISTINCT ON (infant) infant, v.voided_by"
    " FROM deliveries d JOIN voided_facts v ON v.event_id = d.event_id, unnest(d.infant_ids) AS infant"
    " ORDER BY infant, v.voided_by",
    *(f"DELETE FROM {t.value} f USING voided_facts v WHERE f.event_id = v.event_id" for t in _STORED),
    "DELETE FROM infant_facts f USING voided_infants v WHERE f.infant_id = v.infant_id",
    "DELETE FROM interactions i USING voided_facts v WHERE i.event_id = v.event_id",
    "DELETE FROM interactions i USING voided_infants v WHERE i.infant_id = v.infant_id",
)

#: a fact's row as a record in its table's column order (every table has more than one column, so a tuple)
_RECORD = {t: itemgetter(*columns) for t, columns in COLUMNS.items()}


async def stage(session: AsyncSession, facts: list[Fact], applied: list[UUID]) -> None:
    by_table: dict[Table, list[tuple]] = defaultdict(list)
    for f in facts:
        by_table[f.table].append(_RECORD[f.table](f.row))
    for table, records in by_table.items():
        await _copy(session, f"stage_{table.value}", COLUMNS[table], records)
    await _copy(session, "stage_applied", ("event_id",), [(i,) for i in applied])


async def load_staged(session: AsyncSession, consumer: str) -> None:
    """Move the staged facts in (an event read twice counts once, as the inbox would have it), claim
    every applied event in `consumer`'s inbox, take out what the voids name (as the live consumer
    does, `_apply_facts`), derive every subject and count every cell."""
    for t in _REBUILT:
        columns = ", ".join(COLUMNS[t])
        await session.execute(
            text(f"INSERT INTO {t.value} ({columns}) SELECT DISTINCT ON (event_id) {columns} FROM stage_{t.value}")
        )
    for statement in _REBUILD_VOIDED:
        await session.execute(text(statement))
    # in key order: each index page is visited once, not once per random id (a third of this statement)
    await session.execute(
        text(
            "INSERT INTO inbox (consumer, event_id)"
            " SELECT DISTINCT :consumer, event_id FROM stage_applied ORDER BY event_id"
        ),
        {"consumer": consumer},
    )
    # the read model was emptied: every episode, post-ANC1 test and infant is new, so they go in with COPY
    every_episode, every_test = await session.run_sync(_mothers_of, None)
    await _copy(
        session, "enrolments", _EPISODE_COLUMNS, [tuple(getattr(e, c) for c in _EPISODE_COLUMNS) for e in every_episode]
    )
    await _copy(
        session, "mother_tests", _TEST_COLUMNS, [tuple(getattr(t, c) for c in _TEST_COLUMNS) for t in every_test]
    )
    every_infant = await session.run_sync(_infants_of, None)
    await _copy(
        session, "infants", _INFANT_COLUMNS, [tuple(getattr(i, c) for c in _INFANT_COLUMNS) for i in every_infant]
    )
    await session.run_sync(derive, "referrals", None)
    await session.run_sync(derive, "deliveries", None)
    cells = await cells_from_facts(session)
    rows = await session.execute(text("SELECT facility_id, month, count(*) FROM interactions GROUP BY 1, 2"))
    _add(cells, {(r[0], r[1]): {CLIENT_INTERACTIONS_COUNT.key: r[2]} for r in rows})
    records = [(f, m, *(counts.get(k, 0) for k in COUNTS)) for (f, m), counts in cells.items()]
    await _copy(session, "monthly_counts", ("facility_id", "month", *COUNTS), records)


# -- today's follow-up status --------------------------------------------------------------------

_INFANT_CONTACT = "('test', 'contact', 'feeding', 'art_start')"
_MOTHER_CONTACT = "('enrolled', 'anc_visit', 'hiv_test', 'art_start', 'delivery', 'viral_load', 'pregnancy_ended')"

#: per facility: subjects with an announced overdue item (dated by its overdue day) and nothing since that
#: resolves it (an infant's test result, a mother's viral load or HIV test), and subjects declared lost (from the
#: day they became lost) with no clinic contact since; an announcement follow-up withdrew does not count; infants
#: who died, were transferred out or discharged (and not followed again since), and mothers who died, are
#: neither
_FOLLOWUP_STATUS = text(
    f"""
    WITH infant_closed AS (
        SELECT DISTINCT infant_id FROM infant_facts e
        WHERE e.kind = 'outcome' AND (e.outcome = 'died' OR e.outcome IN ('transferred_out', 'discharged')
          AND NOT EXISTS (SELECT 1 FROM infant_facts r WHERE r.infant_id = e.infant_id AND r.kind = 'resumed'
                          AND r.occurred_on >= e.occurred_on))
    ), mother_closed AS (
        SELECT DISTINCT client_id FROM mother_facts WHERE kind = 'died'
    ), overdue AS (
        SELECT o.facility_id, 'i' || o.infant_id AS subject FROM infant_facts o
        WHERE o.kind = 'overdue' AND o.facility_id = ANY(:facility_ids)
          AND o.infant_id NOT IN (SELECT infant_id FROM infant_closed)
          AND NOT EXISTS (SELECT 1 FROM infant_facts t WHERE t.infant_id = o.infant_id AND t.kind = 'test'
                          AND t.occurred_on >= o.occurred_on)
          AND NOT EXISTS (SELECT 1 FROM infant_facts w WHERE w.infant_id = o.infant_id
                          AND w.kind = 'overdue_withdrawn' AND w.occurred_on = o.occurred_on)
        UNION
        SELECT o.facility_id, 'm' || o.client_id FROM mother_facts o
        -- a mother's overdue announcement, the fact that meets it, and its withdrawal
        JOIN (VALUES ('vl_overdue', 'viral_load', 'vl_overdue_withdrawn'),
                     ('hiv_test_overdue', 'hiv_test', 'hiv_test_overdue_withdrawn')) AS k(overdue, meets, withdrawn)
          ON o.kind = k.overdue
        WHERE o.facility_id = ANY(:facility_ids)
          AND o.client_id NOT IN (SELECT client_id FROM mother_closed)
          AND NOT EXISTS (SELECT 1 FROM mother_facts t WHERE t.client_id = o.client_id AND t.kind = k.meets
                          AND t.occurred_on >= o.occurred_on)
          AND NOT EXISTS (SELECT 1 FROM mother_facts w WHERE w.client_id = o.client_id
                          AND w.kind = k.withdrawn AND w.occurred_on = o.occurred_on)
    ), lost AS (
        SELECT l.facility_id, 'i' || l.infant_id AS subject FROM infant_facts l
        WHERE l.kind = 'lost' AND l.facility_id = ANY(:facility_ids)
          AND l.infant_id NOT IN (SELECT infant_id FROM infant_closed)
          AND NOT EXISTS (SELECT 1 FROM infant_facts c WHERE c.infant_id = l.infant_id AND c.kind IN {_INFANT_CONTACT}
                          AND c.occurred_on > l.occurred_on)
          AND NOT EXISTS (SELECT 1 FROM infant_facts w WHERE w.infant_id = l.infant_id
                          AND w.kind = 'lost_withdrawn' AND w.occurred_on = l.occurred_on)
        UNION
        SELECT l.facility_id, 'm' || l.client_id FROM mother_facts l
        WHERE l.kind = 'lost' AND l.facility_id = ANY(:facility_ids)
          AND l.client_id NOT IN (SELECT client_id FROM mother_closed)
          AND NOT EXISTS (SELECT 1 FROM mother_facts c WHERE c.client_id = l.client_id AND c.kind IN {_MOTHER_CONTACT}
                          AND c.occurred_on > l.occurred_on)
          AND NOT EXISTS (SELECT 1 FROM mother_facts w WHERE w.client_id = l.client_id
                          AND w.kind = 'lost_withdrawn' AND w.occurred_on = l.occurred_on)
    )
    SELECT facility_id, count(DISTINCT subject) FILTER (WHERE what = 'overdue'),
           count(DISTINCT subject) FILTER (WHERE what = 'lost')
    FROM (SELECT facility_id, subject, 'overdue' AS what FROM overdue
          UNION ALL SELECT facility_id, subject, 'lost' FROM lost) AS s
    GROUP BY facility_id
    """
)


async def followup_status(session: AsyncSession, facility_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Today's (overdue, lost to follow-up) subjects per facility, from the facts as they stand."""
    rows = await session.execute(_FOLLOWUP_STATUS, {"facility_ids": list(facility_ids)})
    return {r[0]: (r[1], r[2]) for r in rows}


# -- DHIS2 submissions ---------------------------------------------------------------------------


async def add_submission(session: AsyncSession, row: models.SubmissionRow) -> None:
    session.add(row)
    await session.flush()
    await session.refresh(row)


async def submissions(
    session: AsyncSession, data_set: str | None, period: str | None, limit: int
) -> list[models.SubmissionRow]:
    """The submission history, newest first, of a data set and a period (either may be None: all)."""
    where = ["TRUE"]
    params: dict[str, object] = {"limit": limit}
    if data_set is not None:
        where.append("data_set = :data_set")
        params["data_set"] = data_set
    if period is not None:
        where.append("period = :period")
        params["period"] = period
    rows = await session.execute(
        text(f"SELECT * FROM dhis2_submissions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit"), params
    )
    return [models.SubmissionRow.model_validate(dict(r._mapping)) for r in rows]


async def last_accepted_submission(
    session: AsyncSession, data_set: str, period: str, accepted: Sequence[str]
) -> models.SubmissionRow | None:
    row = (
        await session.execute(
            text(
                "SELECT * FROM dhis2_submissions WHERE data_set = :ds AND period = :period AND NOT dry_run"
                " AND outcome = ANY(:accepted) ORDER BY id DESC LIMIT 1"
            ),
            {"ds": data_set, "period": period, "accepted": list(accepted)},
        )
    ).first()
    return models.SubmissionRow.model_validate(dict(row._mapping)) if row else None


async def accepted_submissions(session: AsyncSession, accepted: Sequence[str]) -> list[tuple[int, str, str]]:
    """(id, data set, period) of every push DHIS2 accepted (not dry runs), oldest first."""
    rows = await session.execute(
        text(
            "SELECT id, data_set, period FROM dhis2_submissions WHERE NOT dry_run AND outcome = ANY(:accepted)"
            " ORDER BY id"
        ),
        {"accepted": list(accepted)},
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def try_push_lock(session: AsyncSession) -> bool:
    """The scheduled push's lock for this transaction: one replica pushes, the others skip."""
    return bool((await session.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('dhis2-push'))"))).scalar())
