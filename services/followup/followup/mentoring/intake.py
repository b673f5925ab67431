"""What a Mentor Mother's app posts (`POST /v1/contacts`), through the one intake pipeline
(`servicekit.intake`: strict parsing, facility checks, duplicates and conflicts by event_id,
retries, per-record results, the same code vocabulary as the EMR endpoints).

Her records are taken in the order they happened (`occurred_at`), whatever order the app sends
them in (a backfill of last week's after today's), so a contact's test follows its invitation
and tracing attempts are counted in order. Each accepted record is kept (the idempotency record
and her work's history) and becomes one event on `pmtct.followup.v1`, ids and codes only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias
from uuid import UUID

from pmtct_events import Event
from pmtct_events.enrolment import HivStatus
from pmtct_events.followup import SubjectType, TestResult
from pmtct_events.mentoring import (
    ContactRecorded,
    DisclosureRecorded,
    GroupSessionHeld,
    IndexContactElicited,
    IndexContactInvited,
    IndexContactLinked,
    IndexContactTested,
    TracingAttemptRecorded,
    TracingOutcome,
)
from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.intake import Accept, Attempt, Candidate, Code, Intake, IntakeBatch, Recorded, Reject
from servicekit.staff import StaffMember
from servicekit.uow import UnitOfWork

from ..cases import InfantCase, MotherCase
from ..repository import FollowupUnit
from ..settings import Settings
from . import repository as repo
from . import rules
from .schemas import RECORD, RECORD_TYPES, RecordReply, RecordResult

INTAKE = Intake(
    service="followup-contacts",
    events=RECORD,
    event_types=RECORD_TYPES,
    describes="a Mentor Mother's record",
    result=RecordResult,
    reply=RecordReply,
)

RecordCandidate: TypeAlias = Candidate[Any]  # the event is one of schemas.RecordIn
INDEX_TYPES = ("IndexContactElicited", "IndexContactInvited", "IndexContactTested", "IndexContactLinked")


async def record(
    units: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    settings: Settings,
    registry: FacilityRegistry,
    principal: Principal,
    member: StaffMember,
    raw_events: Sequence[Any],
    now: datetime | None = None,
) -> RecordReply:
    """A posted batch of her records, through the pipeline."""
    reply = await INTAKE.record(
        lambda attempt: RecordsBatch(attempt, settings, member), units, settings, registry, principal, raw_events, now
    )
    assert isinstance(reply, RecordReply)
    return reply


@dataclass
class Tracing:
    """A subject's tracing count in this batch (from the table, then as this batch's attempts change it)."""

    lost_since: date | None
    attempts: int = 0
    failed_attempts: int = 0
    confirmed_lost_on: date | None = None


@dataclass
class RecordsBatch(IntakeBatch[Any]):
    """One batch of a staff member's records against the clients, infants and contacts it names."""

    attempt: Attempt
    settings: Settings
    member: StaffMember
    mothers: dict[UUID, MotherCase] = field(default_factory=dict)
    infants: dict[UUID, InfantCase] = field(default_factory=dict)
    contacts: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    tracing: dict[UUID, Tracing] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    changed_contacts: set[UUID] = field(default_factory=set)
    changed_tracing: set[UUID] = field(default_factory=set)
    back_in_care: dict[UUID, date] = field(default_factory=dict)

    def contact_of(self, e: Any) -> UUID | None:
        key = self.settings.hmac_key
        return rules.contact_id(key, e.facility_id, e.data.contact_ref) if key else None

    async def resolve(self, uow: FollowupUnit, candidates: Sequence[RecordCandidate]) -> Mapping[UUID, Recorded]:
        client_ids: set[UUID] = set()
        infant_ids: set[UUID] = set()
        for c in candidates:
            e = c.event
            if e.type == "GroupSessionHeld":
                client_ids.update(e.data.client_ids)
                continue
            client_ids.add(e.client_id)
            infant = getattr(e.data, "infant_id", None)
            if infant is not None:
                infant_ids.add(infant)
        # follow-up's lock order: mothers, then infants, each in id order
        self.mothers = await uow.mothers.get_many(sorted(client_ids))
        self.infants = await uow.infants.lock(infant_ids, self.settings.timezone)
        contact_ids = [self.contact_of(c.event) for c in candidates if c.event.type in INDEX_TYPES]
        self.contacts = await repo.index_contacts_of(uow.session, (i for i in contact_ids if i is not None))
        traced = [self.traced(c.event) for c in candidates if c.event.type == "TracingAttemptRecorded"]
        for subject_id, row in (await repo.tracing_counts(uow.session, (s for s, _ in traced))).items():
            self.tracing[subject_id] = Tracing(row.lost_since, row.attempts, row.failed_attempts, row.confirmed_lost_on)
        known = await repo.known_records(uow.session, (c.event.event_id for c in candidates))
        return {eid: Recorded(h, result) for eid, (h, result) in known.items()}

    @staticmethod
    def traced(e: Any) -> tuple[UUID, SubjectType]:
        if e.data.infant_id is not None:
            return e.data.infant_id, SubjectType.infant
        return e.client_id, SubjectType.client

    def order(self, candidate: RecordCandidate) -> Any:
        return (candidate.event.occurred_at, candidate.index)

    def decide(self, c: RecordCandidate) -> Accept | Reject:
        e = c.event
        me = self.member
        if e.facility_id != me.facility_id:
            return Reject(
                Code.facility_forbidden,
                f"Staff member {me.staff_id} works at {me.facility_id}, not {e.facility_id}.",
            )
        day = self.settings.clock.local_day(e.occurred_at)
        if e.type == "GroupSessionHeld":
            return self.group(c, day)
        mother = self.mothers.get(e.client_id)
        if mother is None:
            return Reject(Code.unknown_client, f"No woman with client_id {e.client_id} is known to follow-up.")
        if mother.facility_id != me.facility_id:
            return Reject(
                Code.not_enrolled_at_facility,
                f"Client {e.client_id} is not followed at {me.facility_id}, where {me.staff_id} works.",
            )
        if mother.died_on is not None and day > mother.died_on:
            return Reject(Code.event_after_death, f"occurred_at is after her recorded death on {mother.died_on}.")
        infant_id = getattr(e.data, "infant_id", None)
        if infant_id is not None:
            infant = self.infants.get(infant_id)
            if infant is None or infant.client_id != mother.client_id:
                return Reject(Code.unknown_infant, f"Client {e.client_id} has no infant {infant_id} in follow-up.")
        match e.type:
            case "ContactRecorded":
                return self.contact(c, mother)
            case "TracingAttemptRecorded":
                return self.tracing_attempt(c, mother, day)
            case "DisclosureRecorded":
                return self.disclosure(c, mother)
        return self.index(c, mother, day)

    def common(self, c: RecordCandidate) -> dict[str, Any]:
        return {
            "facility_id": c.event.facility_id,
            "occurred_at": c.event.occurred_at,
            "staff_id": self.member.staff_id,
        }

    def accept(self, c: RecordCandidate, event: Event, client_id: UUID | None, **result: Any) -> Accept:
        answer = {"client_id": str(client_id) if client_id else None, **{k: str(v) for k, v in result.items()}}
        self.events.append(event)
        self.rows.append(
            {
                "event_id": c.event.event_id,
                "content_hash": c.fingerprint,
                "type": c.event.type,
                "facility_id": c.event.facility_id,
                "staff_id": self.member.staff_id,
                "client_id": client_id,
                "occurred_at": c.event.occurred_at,
                "payload": event.model_dump(mode="json"),
                "result": answer,
            }
        )
        return Accept(answer)

    def unknown_topics(self, topics: Sequence[str]) -> Reject | None:
        unknown = [t for t in topics if t not in self.settings.mentoring.topics]
        if not unknown:
            return None
        return Reject(
            Code.invalid_value,
            f"topic {unknown[0]!r} is not one of the programme's topics ({', '.join(self.settings.mentoring.topics)}).",
        )

    def contact(self, c: RecordCandidate, mother: MotherCase) -> Accept | Reject:
        d = c.event.data
        refused = self.unknown_topics(d.topics)
        if refused is not None:
            return refused
        event = ContactRecorded(
            **self.common(c),
            contact_event_id=c.event.event_id,
            client_id=mother.client_id,
            infant_id=d.infant_id,
            kind=d.kind,
            topics=list(d.topics),
        )
        return self.accept(c, event, mother.client_id)

    def group(self, c: RecordCandidate, day: date) -> Accept | Reject:
        d = c.event.data
        refused = self.unknown_topics([d.topic])
        if refused is not None:
            return refused
        for client_id in d.client_ids:
            mother = self.mothers.get(client_id)
            if mother is None or mother.facility_id != self.member.facility_id:
                return Reject(
                    Code.not_enrolled_at_facility,
                    f"Client {client_id} (in client_ids) is not followed at {self.member.facility_id}.",
                )
        if len(set(d.client_ids)) > d.attendance:
            return Reject(Code.invalid_value, "attendance is smaller than the number of enrolled clients present.")
        event = GroupSessionHeld(
            **self.common(c),
            session_id=c.event.event_id,
            kind=d.kind,
            topic_code=d.topic,
            attendance=d.attendance,
            client_ids=sorted(set(d.client_ids)),
        )
        return self.accept(c, event, None)

    def tracing_attempt(self, c: RecordCandidate, mother: MotherCase, day: date) -> Accept | Reject:
        d = c.event.data
        subject_id, subject_type = self.traced(c.event)
        attendance = self.infants[subject_id].attendance if subject_type is SubjectType.infant else mother.attendance
        returned_on = None
        if d.outcome is TracingOutcome.found_back_in_care:
            returned_on = d.returned_on or day
            if returned_on > self.settings.clock.today():
                return Reject(Code.occurred_in_future, f"returned_on {returned_on} is after today.")
        elif d.returned_on is not None:
            return Reject(Code.invalid_value, "returned_on is given only when she was found and is back in care.")
        count = self.tracing.get(subject_id)
        if count is None or count.lost_since != attendance.lost_since:
            count = Tracing(attendance.lost_since)  # a new episode: counted afresh
        verdict = rules.tracing_verdict(
            d.outcome,
            count.failed_attempts,
            count.confirmed_lost_on is not None,
            self.settings.mentoring.tracing_attempts,
        )
        count.attempts += 1
        count.failed_attempts = verdict.failed_attempts
        if verdict.confirmed_lost:
            count.confirmed_lost_on = day
        self.tracing[subject_id] = count
        self.changed_tracing.add(subject_id)
        if returned_on is not None:
            self.back_in_care[subject_id] = max(returned_on, self.back_in_care.get(subject_id, returned_on))
        event = TracingAttemptRecorded(
            **self.common(c),
            attempt_event_id=c.event.event_id,
            subject_type=subject_type,
            subject_id=subject_id,
            client_id=mother.client_id,
            outcome=d.outcome,
            attempt=count.attempts,
            returned_on=returned_on,
            confirmed_lost=verdict.confirmed_lost,
        )
        return self.accept(c, event, mother.client_id)

    def disclosure(self, c: RecordCandidate, mother: MotherCase) -> Accept:
        d = c.event.data
        event = DisclosureRecorded(
            **self.common(c), disclosure_event_id=c.event.event_id, client_id=mother.client_id, to=d.to, status=d.status
        )
        return self.accept(c, event, mother.client_id)

    def index(self, c: RecordCandidate, mother: MotherCase, day: date) -> Accept | Reject:
        e = c.event
        contact_id = self.contact_of(e)
        if contact_id is None:
            return Reject(
                Code.invalid_value,
                "This deployment has no identifier key (PMTCT_HMAC_KEY) to keep contact_ref private.",
            )
        known = self.contacts.get(contact_id)
        if known is not None and known["client_id"] != mother.client_id:
            return Reject(Code.invalid_value, "This contact_ref names a contact of another client.")
        if e.type == "IndexContactElicited":
            if mother.hiv_status is not HivStatus.positive:
                return Reject(
                    Code.not_hiv_positive, f"Client {mother.client_id} is not known HIV-positive: not an index client."
                )
            if known is None:
                known = {
                    "contact_id": contact_id,
                    "client_id": mother.client_id,
                    "facility_id": e.facility_id,
                    "relationship": e.data.relationship.value,
                    "elicited_on": day,
                    "invited_on": None,
                    "tested_on": None,
                    "result": None,
                    "known_positive": False,
                    "linked_on": None,
                }
            known["relationship"] = e.data.relationship.value
            known["elicited_on"] = min(known["elicited_on"] or day, day)
        elif known is None:
            return Reject(
                Code.unknown_index_contact, f"Client {mother.client_id} has named no contact by this contact_ref."
            )
        elif e.type == "IndexContactInvited":
            known["invited_on"] = known["invited_on"] or day
        elif e.type == "IndexContactTested":
            known["tested_on"], known["result"] = day, e.data.result.value
            known["known_positive"] = e.data.known_positive and e.data.result is TestResult.positive
        elif known["result"] != TestResult.positive.value:
            return Reject(Code.invalid_value, "Only a contact who tested HIV-positive is linked to ART.")
        else:
            known["linked_on"] = known["linked_on"] or day
        self.contacts[contact_id] = known
        self.changed_contacts.add(contact_id)
        common = {
            **self.common(c),
            "contact_id": contact_id,
            "client_id": mother.client_id,
            "relationship": known["relationship"],
        }
        event: Event
        match e.type:
            case "IndexContactElicited":
                event = IndexContactElicited(**common)
            case "IndexContactInvited":
                event = IndexContactInvited(**common)
            case "IndexContactTested":
                event = IndexContactTested(**common, result=e.data.result, known_positive=known["known_positive"])
            case _:
                event = IndexContactLinked(**common)
        return self.accept(c, event, mother.client_id, contact_id=contact_id)

    async def write(self, uow: FollowupUnit) -> None:
        """Her records and their events; contacts and tracing counts as they now stand; a client
        found and back in care is seen that day (her lost-to-follow-up episode ends)."""
        settings = self.settings
        await repo.add_records(uow.session, self.rows)
        await repo.save_index_contacts(uow.session, [self.contacts[i] for i in sorted(self.changed_contacts)])
        await repo.save_tracing(
            uow.session,
            [
                {
                    "subject_id": s,
                    "lost_since": t.lost_since,
                    "attempts": t.attempts,
                    "failed_attempts": t.failed_attempts,
                    "confirmed_lost_on": t.confirmed_lost_on,
                }
                for s, t in sorted(self.tracing.items())
                if s in self.changed_tracing
            ],
        )
        for subject_id, on in sorted(self.back_in_care.items()):
            if subject_id in self.infants:
                infant = self.infants[subject_id]
                infant.seen(on)
                infant.withdraw(settings.clock)
                wake = infant.next_wakeup(settings.eid, settings.lost_to_follow_up_days)
                uow.infants.save(infant, wake, settings.timer_settle_s)
            else:
                mother = self.mothers[subject_id]
                mother.seen(on)
                mother.withdraw(settings.clock)
                uow.mothers.touch(mother, mother.next_wakeup(settings.lost_to_follow_up_days), settings.timer_settle_s)
        uow.publish(*self.events)
