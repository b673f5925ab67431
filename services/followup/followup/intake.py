"""Infant events from EMRs (`POST /v1/events`): what follow-up supplies to the intake pipeline.

The pipeline (`servicekit.intake`) parses, authorises, refuses the future, tells duplicates from
conflicts, retries and counts; this module resolves the infants the events name (by platform
`infant_id` or by the keyed hash of the EMR's `infant_ref`), locks them and their mothers (mother
before infants), decides each event against the infant's case, and writes the accepted ones: the
infants' and mothers' new state, the events, and their catalog events for the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any, TypeAlias
from uuid import UUID

from pmtct_events import Event
from pmtct_events.followup import (
    InfantArtInitiated,
    InfantCotrimoxazoleRecorded,
    InfantEventVoided,
    InfantFeedingRecorded,
    InfantProphylaxisRecorded,
    InfantTest,
    InfantTestResulted,
    InfantVisitRecorded,
)
from servicekit import pending
from servicekit.auth import Principal
from servicekit.corrections import EVENT_VOIDED, EventStore, Void
from servicekit.facilities import FacilityRegistry
from servicekit.identifiers import ref_hash
from servicekit.intake import Accept, Attempt, Candidate, Code, Hold, Intake, IntakeBatch, Recorded, Reject
from servicekit.uow import UnitOfWork

from . import repository as repo
from .cases import INFANT_OUTCOME_RECORDED, InfantCase, MotherCase, RecordedEvent, breastfeeding_until
from .eid_schedule import EidRules, TestFact, is_diagnostic
from .repository import FollowupUnit, InfantKey
from .schemas import INFANT_EVENT, POSTED_TYPES, EventResult, InfantEventBase, IngestReply
from .settings import Settings

#: where follow-up records the infant events it accepted (and the voids of them): what a void names
STORE = EventStore("infant_events", subject="infant_id", result=None)

INTAKE = Intake(
    service="followup",
    events=INFANT_EVENT,
    event_types=POSTED_TYPES,
    describes="an infant event",
    result=EventResult,
    reply=IngestReply,
)

InfantCandidate: TypeAlias = Candidate[Any]  # the event is one of schemas.InfantEventIn


async def record(
    units: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    settings: Settings,
    registry: FacilityRegistry,
    principal: Principal,
    raw_events: Sequence[Any],
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    counted: bool = True,
) -> IngestReply:
    """A posted batch of infant events, through the pipeline (`dry_run`: answered, not recorded;
    `counted=False`: a dry run the front door runs for itself, kept out of the metrics)."""
    reply = await INTAKE.record(
        lambda attempt: InfantBatch(attempt, settings),
        units,
        settings,
        registry,
        principal,
        raw_events,
        now,
        dry_run=dry_run,
        counted=counted,
    )
    assert isinstance(reply, IngestReply)
    return reply


def infant_keys(infant_id: UUID, ref_hash: str | None) -> set[str]:
    """What a held infant event waits for: its infant, by id or by the keyed hash of its record
    number (servicekit.pending); the consumer releases these when the infant is in follow-up."""
    keys = {f"infant:{infant_id}"}
    if ref_hash:
        keys.add(f"infant_ref:{ref_hash}")
    return keys


class InfantBatch(IntakeBatch[Any]):
    """One batch of infant events against the cases of the infants it names.

    An event for an infant follow-up does not know yet (its delivery is on its way, or not posted
    yet), or for one not in follow-up yet (its mother's positive status is not recorded yet), is
    held (`awaiting_infant`); the enrolment stream releases it when the infant is followed
    (`stream.release_held`). Events are decided in the order they happened.

    Corrections (servicekit.corrections): an EventVoided naming an infant event recorded here, or a
    corrected event with `replaces`, takes the voided event out of the infant's facts (`void`);
    the case is recomputed without it in `write` (what it no longer plans and had announced is
    withdrawn `entered_in_error`), and InfantEventVoided is published with the CloudEvent ids the
    voided event's acceptance published (its catalog event and the outcome its recompute raised)."""

    holds = True
    store = STORE

    #: an EMR names the infant by either: a resend naming it the other way is a duplicate
    subject_fields = ("infant_id", "infant_ref")

    def subject_of(self, c: InfantCandidate) -> UUID | None:
        key = self.keys.get(c.index)
        return key.infant_id if key is not None else None

    def __init__(self, attempt: Attempt, settings: Settings) -> None:
        self.attempt = attempt
        self.settings = settings
        self.keys: dict[int, InfantKey | None] = {}
        self.mothers: dict[UUID, MotherCase] = {}
        self.cases: dict[UUID, InfantCase] = {}
        self.rows: list[dict[str, Any]] = []
        self.touched: dict[UUID, InfantCase] = {}
        #: what each accepted event publishes (its catalog event; then the outcome its recompute raises)
        self.produced: dict[UUID, list[Event]] = {}
        #: the last event accepted for each touched infant (what its recompute's outcome is part of)
        self.last: dict[UUID, UUID] = {}
        #: voids decided in memory: voided event_id -> (its case, what was taken out, the catalog event)
        self.voids: dict[UUID, tuple[InfantCase, list[RecordedEvent], InfantEventVoided]] = {}

    def order(self, c: InfantCandidate) -> tuple[datetime, int]:
        return (c.event.occurred_at, c.index)

    def pending_keys(self, candidates: Sequence[InfantCandidate]) -> set[str]:
        keys: set[str] = set()
        for c in candidates:
            key = self.keys.get(c.index)
            case = self.cases.get(key.infant_id) if key is not None else None
            if key is not None and case is not None and case.in_follow_up:
                keys |= infant_keys(key.infant_id, key.ref_hash)
        return keys

    def hold_keys(self, candidates: Sequence[InfantCandidate]) -> set[str]:
        """What each event names its infant by: locked before the look-up, as the enrolment stream
        locks an infant's keys when it starts her follow-up (servicekit.pending.lock_keys)."""
        keys: set[str] = set()
        for c in candidates:
            e = c.event
            if e.infant_id is not None:
                keys.add(f"infant:{e.infant_id}")
            elif (hashed := self.ref_hash(e)) is not None:
                keys.add(f"infant_ref:{hashed}")
        return keys

    def stored(self, c: InfantCandidate) -> dict[str, Any]:
        """A held event without its record number (they stay in enrolment's schema): the keyed
        hash in its `subject_keys` finds its infant when it is released."""
        body = c.event.model_dump(mode="json")
        body.pop("infant_ref", None)
        return body

    async def restore(self, uow: FollowupUnit, held: Sequence[pending.Held]) -> list[dict[str, Any] | None]:
        hashes = {
            h.event_id: k.removeprefix("infant_ref:")
            for h in held
            for k in h.subject_keys
            if k.startswith("infant_ref:")
        }
        _, by_hash = await repo.resolve_infants(uow.session, (), hashes.values())
        out: list[dict[str, Any] | None] = []
        for h in held:
            body = dict(h.body)
            if body.get("infant_id") is None:
                found = by_hash.get(hashes.get(h.event_id, ""))
                if found is None:
                    out.append(None)  # its infant is not known yet after all
                    continue
                body["infant_id"] = str(found.infant_id)
            body.pop("infant_ref", None)
            out.append(body)
        return out

    def ref_hash(self, e: InfantEventBase) -> str | None:
        """The keyed hash of the event's infant_ref; None without one, or without the key (a
        deployment without it takes infant_id only: its events hold no record number to hide)."""
        if e.infant_ref is None or not self.settings.hmac_key:
            return None
        return ref_hash(self.settings.hmac_key, e.facility_id, e.infant_ref)

    async def resolve(self, uow: FollowupUnit, candidates: Sequence[InfantCandidate]) -> Mapping[UUID, Recorded]:
        session = uow.session
        named = [c for c in candidates if (c.event.infant_id is None) != (c.event.infant_ref is None)]
        hashes = {c.index: self.ref_hash(c.event) for c in named}
        by_id, by_hash = await repo.resolve_infants(
            session,
            [*(c.event.infant_id for c in named if c.event.infant_id is not None), *self.target_subjects()],
            (h for h in hashes.values() if h is not None),
        )
        for c in named:
            e = c.event
            self.keys[c.index] = by_id.get(e.infant_id) if e.infant_id else by_hash.get(hashes[c.index] or "")
        found = [k for k in self.keys.values() if k is not None]
        found += [by_id[i] for i in self.target_subjects() if i in by_id]
        self.mothers = await uow.mothers.get_many(sorted({k.client_id for k in found}))
        self.cases = await uow.infants.lock((k.infant_id for k in found), self.settings.timezone)
        # read under the locks: a concurrent post of the same events has committed or not started
        known = await repo.known_events(session, (c.event.event_id for c in candidates))
        return {eid: Recorded(h, {"infant_id": infant_id}) for eid, (h, infant_id) in known.items()}

    def decide(self, c: InfantCandidate) -> Accept | Reject | Hold:
        e = c.event
        if e.infant_id is None and e.infant_ref is None:
            return Reject(Code.subject_identifier_missing, "Name the infant by infant_id or infant_ref.")
        if e.infant_id is not None and e.infant_ref is not None:
            return Reject(Code.subject_identifier_ambiguous, "Name the infant by infant_id or infant_ref, not both.")
        if e.infant_ref is not None and not self.settings.hmac_key:
            return Reject(Code.infant_ref_unsupported, "This deployment cannot resolve infant_ref; use infant_id.")
        key = self.keys.get(c.index)
        case = self.cases.get(key.infant_id) if key is not None else None
        if case is None:
            named = f"infant_id {e.infant_id}" if e.infant_id else f"infant_ref at {e.facility_id}"
            keys = {f"infant:{e.infant_id}"} if e.infant_id else {f"infant_ref:{self.ref_hash(e)}"}
            return Hold(
                tuple(sorted(keys)),
                Code.awaiting_infant,
                f"No delivery with this {named} is known to follow-up yet: held until it is (and its mother's"
                " positive status, if the infant is not followed yet).",
            )
        if case.voided:
            return Reject(
                Code.unknown_infant,
                "This infant was registered by a delivery the EMR voided (entered in error): the platform has no"
                " such infant. Post its events for the infant of the corrected delivery.",
            )
        if not case.in_follow_up:
            return Hold(
                tuple(sorted(infant_keys(case.infant_id, key.ref_hash if key else None))),
                Code.awaiting_infant,
                "This infant is not HIV-exposed as far as the platform knows yet (its mother's positive status is"
                " not recorded): held until it is.",
                extra={"infant_id": case.infant_id},
            )
        day = self.settings.clock.local_day(e.occurred_at)
        problem = domain_problem(case, e, day)
        if problem is not None:
            return Reject(*problem, extra={"infant_id": case.infant_id})
        catalog = catalog_event(case, e, day, self.settings.eid)
        if catalog is not None:
            case.raise_event(catalog)
        self.produced[e.event_id] = [catalog] if catalog is not None else []
        self.last[case.infant_id] = e.event_id
        case.record(RecordedEvent(e.type, day, self.settings.clock.today(), e.data.model_dump(mode="json"), e.event_id))
        if e.type == INFANT_OUTCOME_RECORDED and e.data.outcome == "transferred_in":
            case.facility_id = e.facility_id  # the receiving facility's worklist has her from now on
        self.touched[case.infant_id] = case
        self.rows.append(
            {
                "event_id": e.event_id,
                "content_hash": c.fingerprint,
                "infant_id": case.infant_id,
                "facility_id": e.facility_id,
                "type": e.type,
                "occurred_at": e.occurred_at,
                "data": e.data.model_dump(mode="json"),
            }
        )
        return Accept({"infant_id": case.infant_id})

    def void(self, v: Void) -> Accept | Reject:
        """Take the voided event out of its infant's facts (recomputed in `write`) and plan
        InfantEventVoided; a plain void is recorded like an accepted event."""
        case = self.cases.get(v.target.subject_id)
        if case is None or case.voided:
            return Reject(
                Code.unknown_infant,
                "The infant of this event was registered by a delivery the EMR voided: there is nothing to void.",
            )
        e = v.event
        removed = case.take_back(v.target.event_id, self.settings.clock.local_day(e.occurred_at))
        voided = InfantEventVoided(
            facility_id=e.facility_id,
            occurred_at=e.occurred_at,
            infant_id=case.infant_id,
            client_id=case.client_id,
            **v.voiding(),
        )
        case.raise_event(voided)
        self.voids[v.target.event_id] = (case, removed, voided)
        self.touched[case.infant_id] = case
        if v.replaced_by is None:
            self.produced[e.event_id] = [voided]
            self.rows.append(
                {
                    "event_id": e.event_id,
                    "content_hash": v.candidate.fingerprint,
                    "infant_id": case.infant_id,
                    "facility_id": e.facility_id,
                    "type": EVENT_VOIDED,
                    "occurred_at": e.occurred_at,
                    "data": e.data.model_dump(mode="json"),
                }
            )
        return Accept({"infant_id": case.infant_id})

    def unvoid(self, v: Void) -> None:
        case, removed, voided = self.voids.pop(v.target.event_id)
        case.put_back(removed)
        case.new_events = [x for x in case.new_events if x is not voided]

    async def write(self, uow: FollowupUnit) -> None:
        """Recompute the touched infants (a final outcome they now have is raised, as part of what
        the last event accepted for it published), save them and their mothers' breastfeeding end
        through the unit, record the posted events and what each published."""
        settings = self.settings
        for case in self.touched.values():
            before = len(case.new_events)
            case.conclude(case.recompute(settings.eid), settings.clock)
            last = self.last.get(case.infant_id)
            if last is not None:
                self.produced[last] += case.new_events[before:]
            case.withdraw(settings.clock)
            case.correcting = None
            uow.infants.save(
                case, case.next_wakeup(settings.eid, settings.lost_to_follow_up_days), settings.timer_settle_s
            )
        for client_id in sorted({c.client_id for c in self.touched.values()}):
            mother = self.mothers[client_id]
            siblings = [c for c in self.cases.values() if c.client_id == client_id and not c.voided]
            until = breastfeeding_until(mother, siblings)
            if until != mother.breastfeeding_until:
                mother.breastfeeding_until = until
                mother.recompute(settings.mother_viral_load)
                mother.withdraw(settings.clock)
                uow.mothers.touch(mother, mother.next_wakeup(settings.lost_to_follow_up_days), None)
        await repo.add_events(uow.session, self.rows)
        for event_id, events in self.produced.items():
            if events:
                self.published(event_id, *events)


def domain_problem(case: InfantCase, e: InfantEventBase, day: date) -> tuple[Code, str] | None:
    if not case.in_follow_up:
        return (
            Code.infant_not_in_follow_up,
            "This infant is not HIV-exposed as far as the platform knows (its mother was not HIV-positive "
            "at delivery), so follow-up takes no events for it.",
        )
    if day < case.facts.birth_date:
        return Code.before_birth, f"occurred_at is before the infant's birth on {case.facts.birth_date}."
    if case.facts.died_on is not None and day > case.facts.died_on:
        return Code.event_after_death, f"occurred_at is after the infant's recorded death on {case.facts.died_on}."
    return None


def catalog_event(case: InfantCase, e: Any, day: date, rules: EidRules) -> Event | None:
    """The catalog event of a posted infant event; an outcome becomes InfantFinalOutcomeRecorded
    through the recompute instead (at most once per infant)."""
    common = {
        "facility_id": e.facility_id,
        "occurred_at": e.occurred_at,
        "infant_id": case.infant_id,
        "client_id": case.client_id,
    }
    data = e.data
    match e.type:
        case "InfantProphylaxisRecorded":
            return InfantProphylaxisRecorded(
                **common,
                drug=data.drug,
                duration_weeks=data.duration_weeks,
                started_on=data.started_on,
                stopped_on=data.stopped_on,
            )
        case "InfantFeedingRecorded":
            return InfantFeedingRecorded(**common, method=data.method)
        case "InfantTestResulted":
            earlier_nat = any(r.test is InfantTest.NAT and r.sampled_on <= day for r in case.facts.results)
            return InfantTestResulted(
                **common,
                test=data.test,
                result=data.result,
                confirmatory=data.confirmatory,
                age_days=(day - case.facts.birth_date).days,
                first_virologic=data.test is InfantTest.NAT and not earlier_nat,
                diagnostic=is_diagnostic(case.facts.birth_date, TestFact(day, data.test, data.result), rules),
            )
        case "InfantArtInitiated":
            return InfantArtInitiated(**common)
        case "InfantVisitRecorded":
            return InfantVisitRecorded(**common)
        case "InfantCotrimoxazoleRecorded":
            return InfantCotrimoxazoleRecorded(**common, started_on=data.started_on, stopped_on=data.stopped_on)
    return None
