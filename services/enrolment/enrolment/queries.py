"""Reads of the enrolment service: a client (her personal data through an audited read), the
audit. Mother events from EMRs (`POST /v1/events`) are taken in `intake.py`."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import enrolment
from servicekit import pending
from servicekit.auth import Principal
from servicekit.clock import Clock
from servicekit.problems import Problem

from . import domain, repository
from .domain import ClientHistory
from .personal_data import PersonalDataCipher
from .schemas import (
    ClientPublic,
    ClinicalStatus,
    EpisodePublic,
    PersonalData,
    PersonalDataRead,
    Registration,
    ViralLoadPublic,
)

# --- reading a client ----------------------------------------------------------------------------


async def read_client(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    principal: Principal,
    client_id: UUID,
    purpose: str,
    access: str,
    clock: Clock,
) -> ClientPublic:
    """A client's record with her personal data, for a caller that may act for one of her
    facilities. The read is audited in the caller's unit of work, which commits it before the
    answer leaves (`endpoints.py`), so no data leaves unrecorded."""
    row = await repository.client(session, client_id)
    registrations = await repository.registrations_of(session, client_id) if row else []
    visible = [r for r in registrations if principal.may_act_for(r["facility_id"])]
    if row is None or not visible:
        raise Problem(404, "unknown_client", f"No client {client_id} at a facility this caller may act for.")
    history = ClientHistory(
        row.birth_date, row.birth_date_estimated, await repository.history(session, client_id), clock=clock
    )
    await repository.record_read(session, client_id, principal.client_id, purpose, access)
    personal = {c: cipher.decrypt(client_id, c, row.personal[c]) for c in repository.PERSONAL_COLUMNS}
    return ClientPublic(
        client_id=client_id,
        registrations=[Registration(**r) for r in visible],
        personal=PersonalData(**personal, birth_date=row.birth_date, birth_date_estimated=row.birth_date_estimated),
        status=clinical_status(history, clock.now()),
    )


async def find_client(
    session: AsyncSession,
    cipher: PersonalDataCipher,
    principal: Principal,
    facility_id: str,
    client_ref: str,
    purpose: str,
    clock: Clock,
) -> ClientPublic:
    principal.require_facility(facility_id)
    client_id = await repository.client_id_by_ref(session, facility_id, client_ref)
    if client_id is None:
        raise Problem(404, "unknown_client", f"No client has client_ref {client_ref!r} at {facility_id}.")
    return await read_client(session, cipher, principal, client_id, purpose, "by_client_ref", clock)


def clinical_status(history: ClientHistory, now: datetime) -> ClinicalStatus:
    load = domain.latest_viral_load(history, now)
    return ClinicalStatus(
        hiv_status=domain.hiv_status_at(history, now),
        diagnosed_on=domain.diagnosed_on(history, now),
        art_start_date=domain.art_started_on(history, now),
        latest_viral_load=(
            ViralLoadPublic(copies_per_ml=load.copies_per_ml, on=history.day_of(load.occurred_at)) if load else None
        ),
        pregnancy=domain.pregnancy_at(history, now),
        deliveries=len(history.of(enrolment.DeliveryRecorded)),
        died_on=domain.death_day(history),
        episodes=[
            EpisodePublic(
                episode_id=ep.episode_id(history.clock),
                pregnancy_number=ep.number,
                opened_on=history.day_of(ep.opened_at),
                pregnant_at_entry=ep.pregnant_at_entry,
                edd=ep.edd,
                ended_on=ep.ended_on,
                ended_by=ep.ended_by,
            )
            for ep in domain.episodes(history)
        ],
    )


async def personal_data_reads(
    session: AsyncSession, client_id: UUID | None, caller: str | None, limit: int
) -> list[PersonalDataRead]:
    rows = await repository.personal_data_reads_of(session, client_id, caller, limit)
    return [PersonalDataRead(**{k: r[k] for k in PersonalDataRead.model_fields}) for r in rows]


# --- what became of a posted event (GET /v1/events/{event_id}) -------------------------------------


async def accepted_event(session: AsyncSession, event_id: UUID) -> pending.EventState | None:
    """A mother event recorded here, with the ids it was answered with."""
    row = await repository.recorded_event(session, event_id)
    if row is None:
        return None
    ids: dict[str, object] = {"client_id": row.result["client_id"]}
    if row.result.get("infant_ids"):
        ids["infant_ids"] = row.result["infant_ids"]
    return pending.EventState(
        event_id=row.event_id,
        type=row.type,
        facility_id=row.facility_id,
        occurred_at=row.occurred_at,
        status="accepted",
        ids=ids,
    )
