"""All SQL of the enrolment service. Callers own the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import RowMapping, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import BY_NAME, Event
from servicekit.corrections import EVENT_VOIDED
from servicekit.db import any_of, insert_rows, pairs_in

from .models import client_events, clients, infants, personal_data_reads, registrations

PERSONAL_COLUMNS = ("given_name", "family_name", "phone", "national_id")


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    event_id: UUID
    content_hash: str
    result: dict
    #: what it published (its catalog event), and whether it was voided since
    payload: dict | None = None
    voided: bool = False


@dataclass(slots=True)
class ClientRow:
    client_id: UUID
    national_id_hash: str | None
    birth_date: date | None
    birth_date_estimated: bool
    personal: dict[str, bytes | None]
    personal_as_of: datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> ClientRow:
        return cls(
            client_id=row["client_id"],
            national_id_hash=row["national_id_hash"],
            birth_date=row["birth_date"],
            birth_date_estimated=row["birth_date_estimated"],
            personal={c: row[c] for c in PERSONAL_COLUMNS},
            personal_as_of=row["personal_as_of"],
        )

    def as_row(self) -> dict:
        return {
            "client_id": self.client_id,
            "national_id_hash": self.national_id_hash,
            "birth_date": self.birth_date,
            "birth_date_estimated": self.birth_date_estimated,
            "personal_as_of": self.personal_as_of,
            **self.personal,
        }


# --- lookups before a batch is applied ------------------------------------------------------------


async def recorded_events(session: AsyncSession, event_ids: Collection[UUID]) -> dict[UUID, RecordedEvent]:
    if not event_ids:
        return {}
    rows = await session.execute(
        select(
            client_events.c.event_id,
            client_events.c.content_hash,
            client_events.c.result,
            client_events.c.payload,
            client_events.c.voided_at,
        ).where(any_of(client_events.c.event_id, event_ids))
    )
    return {
        r.event_id: RecordedEvent(r.event_id, r.content_hash, r.result, r.payload, r.voided_at is not None)
        for r in rows
    }


async def recorded_event(session: AsyncSession, event_id: UUID) -> Any | None:
    """One recorded event: where, when, what, and what the EMR was told."""
    rows = await session.execute(
        select(
            client_events.c.event_id,
            client_events.c.facility_id,
            client_events.c.type,
            client_events.c.occurred_at,
            client_events.c.result,
        ).where(client_events.c.event_id == event_id)
    )
    return rows.first()


async def clients_by_ref(session: AsyncSession, refs: Collection[tuple[str, str]]) -> dict[tuple[str, str], UUID]:
    if not refs:
        return {}
    rows = await session.execute(
        select(registrations.c.facility_id, registrations.c.client_ref, registrations.c.client_id).where(
            pairs_in((registrations.c.facility_id, registrations.c.client_ref), refs)
        )
    )
    return {(r.facility_id, r.client_ref): r.client_id for r in rows}


async def clients_by_national_id(session: AsyncSession, hashes: Collection[str]) -> dict[str, UUID]:
    if not hashes:
        return {}
    rows = await session.execute(
        select(clients.c.national_id_hash, clients.c.client_id).where(any_of(clients.c.national_id_hash, hashes))
    )
    return {r.national_id_hash: r.client_id for r in rows}


async def lock_clients(session: AsyncSession, client_ids: Collection[UUID]) -> dict[UUID, ClientRow]:
    """Lock the women a batch touches, in id order so concurrent batches cannot deadlock; their
    outbox rows then commit in per-client order."""
    if not client_ids:
        return {}
    rows = await session.execute(
        select(clients).where(any_of(clients.c.client_id, client_ids)).order_by(clients.c.client_id).with_for_update()
    )
    return {r["client_id"]: ClientRow.from_row(r) for r in rows.mappings()}


async def histories(session: AsyncSession, client_ids: Collection[UUID]) -> dict[UUID, list[tuple[UUID, Event]]]:
    """Every recorded catalog event of these women that stands (the facts their state is derived
    from: not voided, and not a void), with the EMR's event_id of each."""
    out: dict[UUID, list[tuple[UUID, Event]]] = defaultdict(list)
    if not client_ids:
        return out
    rows = await session.execute(
        select(client_events.c.client_id, client_events.c.event_id, client_events.c.type, client_events.c.payload)
        .where(
            any_of(client_events.c.client_id, client_ids),
            client_events.c.voided_at.is_(None),
            client_events.c.type != EVENT_VOIDED,
        )
        .order_by(client_events.c.occurred_at)
    )
    for r in rows:
        out[r.client_id].append((r.event_id, BY_NAME[r.type].model_validate(r.payload)))
    return out


async def taken_infant_refs(session: AsyncSession, refs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (facility_id, infant ref_hash) pairs already name an infant."""
    if not refs:
        return set()
    rows = await session.execute(
        select(infants.c.facility_id, infants.c.ref_hash).where(
            pairs_in((infants.c.facility_id, infants.c.ref_hash), refs), infants.c.voided_at.is_(None)
        )
    )
    return {(r.facility_id, r.ref_hash) for r in rows}


# --- writes of an applied batch -----------------------------------------------------------------


async def insert_clients(session: AsyncSession, rows: list[ClientRow]) -> None:
    await insert_rows(session, clients, [r.as_row() for r in rows])


async def update_clients(session: AsyncSession, rows: list[ClientRow]) -> None:
    if not rows:
        return
    values = {k: bindparam(k) for k in rows[0].as_row() if k != "client_id"}
    statement = update(clients).where(clients.c.client_id == bindparam("key")).values(**values, updated_at=func.now())
    params = [{**{k: v for k, v in r.as_row().items() if k != "client_id"}, "key": r.client_id} for r in rows]
    await session.execute(statement, params)


async def insert_registrations(session: AsyncSession, rows: list[dict]) -> None:
    await insert_rows(session, registrations, rows)


async def insert_events(session: AsyncSession, rows: list[dict]) -> None:
    await insert_rows(session, client_events, rows)


async def insert_infants(session: AsyncSession, rows: list[dict]) -> None:
    await insert_rows(session, infants, rows)


async def voided_infant_refs(
    session: AsyncSession, refs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[UUID, UUID]]:
    """Of these (facility_id, infant ref_hash) pairs, those whose infant's delivery was voided and
    no standing infant holds: (client_id, infant_id) of that infant."""
    if not refs:
        return {}
    rows = await session.execute(
        select(infants.c.facility_id, infants.c.ref_hash, infants.c.client_id, infants.c.infant_id)
        .where(pairs_in((infants.c.facility_id, infants.c.ref_hash), refs), infants.c.voided_at.is_not(None))
        .order_by(infants.c.voided_at)
    )
    return {(r.facility_id, r.ref_hash): (r.client_id, r.infant_id) for r in rows}


async def register_again(session: AsyncSession, rows: list[dict]) -> None:
    """Infants of a voided delivery that its corrected delivery names again: theirs once more."""
    for row in rows:
        await session.execute(
            update(infants)
            .where(infants.c.infant_id == row["infant_id"])
            .values(
                voided_at=None,
                delivery_event_id=row["delivery_event_id"],
                born_at=row["born_at"],
                outcome=row["outcome"],
                facility_id=row["facility_id"],
                ref_hash=row["ref_hash"],
            )
        )


async def void_infants(session: AsyncSession, delivery_event_ids: Collection[UUID], at: datetime) -> None:
    """The infants of voided deliveries: kept, marked voided; their record numbers are free again."""
    if not delivery_event_ids:
        return
    await session.execute(
        update(infants)
        .where(any_of(infants.c.delivery_event_id, delivery_event_ids), infants.c.voided_at.is_(None))
        .values(voided_at=at)
    )


# --- reads of one client ------------------------------------------------------------------------


async def client(session: AsyncSession, client_id: UUID) -> ClientRow | None:
    row = (await session.execute(select(clients).where(clients.c.client_id == client_id))).mappings().first()
    return ClientRow.from_row(row) if row else None


async def client_id_by_ref(session: AsyncSession, facility_id: str, client_ref: str) -> UUID | None:
    return await session.scalar(
        select(registrations.c.client_id).where(
            registrations.c.facility_id == facility_id, registrations.c.client_ref == client_ref
        )
    )


async def registrations_of(session: AsyncSession, client_id: UUID) -> list[RowMapping]:
    rows = await session.execute(
        select(registrations.c.facility_id, registrations.c.client_ref, registrations.c.registered_at)
        .where(registrations.c.client_id == client_id)
        .order_by(registrations.c.registered_at)
    )
    return list(rows.mappings())


async def history(session: AsyncSession, client_id: UUID) -> list[Event]:
    return [e for _, e in (await histories(session, [client_id])).get(client_id, [])]


# --- the personal-data audit ----------------------------------------------------------------------


async def record_read(session: AsyncSession, client_id: UUID, caller: str, purpose: str, access: str) -> None:
    await session.execute(
        insert(personal_data_reads).values(client_id=client_id, caller=caller, purpose=purpose, access=access)
    )


async def personal_data_reads_of(
    session: AsyncSession, client_id: UUID | None, caller: str | None, limit: int
) -> list[RowMapping]:
    query = select(personal_data_reads).order_by(personal_data_reads.c.read_at.desc(), personal_data_reads.c.id.desc())
    if client_id is not None:
        query = query.where(personal_data_reads.c.client_id == client_id)
    if caller is not None:
        query = query.where(personal_data_reads.c.caller == caller)
    return list((await session.execute(query.limit(limit))).mappings())
