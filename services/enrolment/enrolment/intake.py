"""Mother events from EMRs (`POST /v1/events`): what enrolment supplies to the intake pipeline.

The pipeline (`servicekit.intake`) parses, authorises, refuses the future, tells duplicates from
conflicts, retries and counts; this module resolves the women a batch names (loaded and row-locked
up front, with their histories), decides each event in memory against `domain.py` in the order the
events *happened* (a new woman's first enrolment first), and writes only the accepted ones, with
their catalog events, in a few bulk statements. A rejected event therefore writes nothing and
cannot disturb its neighbours, and a 1000-event batch costs a handful of round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID, uuid4

from pmtct_events import Event, enrolment
from servicekit.auth import Principal
from servicekit.clock import Clock
from servicekit.corrections import EventStore, Void
from servicekit.facilities import FacilityRegistry
from servicekit.identifiers import national_id_hash, ref_hash
from servicekit.intake import Accept, Attempt, Candidate, Code, Hold, Intake, IntakeBatch, Recorded, Reject
from servicekit.uow import UnitOfWork

from . import domain, repository
from .domain import ClientHistory, RuleBroken
from .personal_data import PersonalDataCipher
from .repository import ClientRow
from .schemas import (
    EMR_EVENT,
    INTAKE_TYPES,
    BatchResult,
    ClientEnrolledIn,
    DeliveryRecordedIn,
    EmrEventBase,
    EventResult,
)
from .settings import Settings

INTAKE = Intake(
    service="enrolment",
    events=EMR_EVENT,
    event_types=INTAKE_TYPES,
    describes="an enrolment event",
    result=EventResult,
    reply=BatchResult,
)

MotherCandidate: TypeAlias = Candidate[Any]  # the event is one of schemas.EmrEvent

#: where enrolment records the mother events it accepted (servicekit.corrections)
STORE = EventStore("client_events", subject="client_id")


async def record_batch(
    units: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    settings: Settings,
    registry: FacilityRegistry,
    principal: Principal,
    cipher: PersonalDataCipher,
    raw_events: Sequence[Any],
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    intake: Intake[Any, EventResult] = INTAKE,
    counted: bool = True,
) -> BatchResult:
    """A posted batch of mother events, through the pipeline (`dry_run`: answered, not recorded;
    `intake`: the front door's, which names every type it takes in an `unknown_event_type`)."""
    reply = await intake.record(
        lambda attempt: MotherBatch(attempt, settings, cipher),
        units,
        settings,
        registry,
        principal,
        raw_events,
        now,
        dry_run=dry_run,
        counted=counted,
    )
    assert isinstance(reply, BatchResult)
    return reply


@dataclass
class ClientRecord:
    """A woman as the batch sees her: her row, her history, and whether the batch changed them."""

    row: ClientRow
    history: ClientHistory
    is_new: bool = False
    changed: bool = False
    #: her standing events by the EMR's event_id (what a void names)
    posted: dict[UUID, Event] = field(default_factory=dict)

    def event_id_of(self, event: Event) -> UUID | None:
        return next((k for k, v in self.posted.items() if v is event), None)


@dataclass
class Accepted:
    """What an accepted event adds: decided first, applied only if every rule held."""

    client: ClientRecord
    event: Event
    result: dict
    registration: tuple[str, str] | None = None
    infants: list[dict] = field(default_factory=list)
    #: recorded in client_events (False: the void a replacement makes, only published)
    stored: bool = True


class Waits(Exception):
    """The event waits for something not recorded yet: held (`pending`) until a key is known."""

    def __init__(self, code: Code, reason: str, keys: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.code, self.reason, self.keys = code, reason, keys


#: rules broken only because an earlier fact is not recorded *yet* (a backlog in any order): the
#: event is held until her next event, then decided again (servicekit.pending)
WAITS_FOR_EARLIER = {
    "ArtInitiated": Code.art_before_positive_status,
    "ViralLoadRecorded": Code.viral_load_before_positive_status,
}


#: the order of events of one instant (`MotherBatch.order`)
#: at one instant: the enrolment, then the visit, then the test done at it, then what depends on them
SAME_INSTANT = {"ClientEnrolled": 0, "AncVisitRecorded": 1, "HivTestRecorded": 2}


def client_key(client_id: UUID) -> str:
    """What a held event of a known woman waits for: her next event."""
    return f"client:{client_id}"


def policy_of(settings: Settings) -> domain.Policy:
    return domain.Policy(
        vl_suppression_threshold=settings.vl_suppression_threshold,
        min_days_between_deliveries=settings.min_days_between_deliveries,
    )


class MotherBatch(IntakeBatch[Any]):
    """Decides each event of one batch against the state of the women it names, then writes.

    An event for a `client_ref` not enrolled at its facility yet is held (`awaiting_client`) until
    her enrolment there; one that needs an earlier fact not recorded yet (`WAITS_FOR_EARLIER`) is
    held (`awaiting_earlier_event`) until her next event. Held events are decided with the batch
    that names their woman, merged with its events in the order they happened."""

    holds = True
    store = STORE

    #: an EMR names the woman by either: a resend naming her the other way is a duplicate
    subject_fields = ("client_id", "client_ref")

    def subject_of(self, c: MotherCandidate) -> UUID | None:
        """The woman the event names, as `resolve` found her (None: not known before this batch,
        or named both ways, which `decide` refuses)."""
        e = c.event
        if e.client_id is not None and e.client_ref is not None:
            return None
        if e.client_id is not None:
            return e.client_id if e.client_id in self.clients else None
        if e.client_ref is not None:
            return self.by_ref.get((e.facility_id, e.client_ref))
        return None

    def __init__(self, attempt: Attempt, settings: Settings, cipher: PersonalDataCipher) -> None:
        self.ctx = attempt
        self.settings = settings
        self.cipher = cipher
        self.policy = policy_of(settings)
        self.by_ref: dict[tuple[str, str], UUID] = {}
        self.by_national_id: dict[str, UUID] = {}
        self.clients: dict[UUID, ClientRecord] = {}
        self.taken_infants: set[tuple[str, str]] = set()
        #: (facility_id, ref_hash) -> (client_id, infant_id) of an infant of a voided delivery: the
        #: corrected delivery that names the same baby gives her the same infant_id again
        self.voided_infants: dict[tuple[str, str], tuple[UUID, UUID]] = {}
        self.accepted: list[tuple[MotherCandidate, Accepted]] = []
        self.creating: set[int] = set()
        #: the deliveries voided by this batch, whose infants are voided with them
        self.freed: list[UUID] = []
        #: a replacement's event_id -> the event it replaces (taken out of her history by `void`)
        self.replacing: dict[UUID, Event] = {}
        #: what `forget_identity` cleared, by the voided enrolment's event_id (for `unvoid`)
        self.forgotten: dict[UUID, tuple[str | None, Any, bool, datetime | None]] = {}
        #: the batch's event_ids recorded before, as recorded (`amend` compares an enrolment with it)
        self.enrolments_recorded: dict[UUID, repository.RecordedEvent] = {}
        #: women whose personal data a resent enrolment updated (`amend`): written with the batch
        self.amended: list[ClientRecord] = []

    @property
    def clock(self) -> Clock:
        return self.settings.clock

    @property
    def hmac_key(self) -> str:
        assert self.settings.hmac_key
        return self.settings.hmac_key

    async def resolve(self, uow: UnitOfWork, candidates: Sequence[MotherCandidate]) -> Mapping[UUID, Recorded]:
        """The women the events name, row-locked with their histories; the infant record numbers
        already taken; the event_ids recorded before."""
        session = uow.session
        events: list[Any] = [c.event for c in candidates]
        recorded = await repository.recorded_events(session, {e.event_id for e in events})
        self.enrolments_recorded = dict(recorded)
        refs = {(e.facility_id, e.client_ref) for e in events if e.client_ref is not None}
        self.by_ref = await repository.clients_by_ref(session, refs)
        nids = {self.national_id_hash(e) for e in events if isinstance(e, ClientEnrolledIn) and e.data.national_id}
        self.by_national_id = await repository.clients_by_national_id(session, nids)
        ids = set(self.by_ref.values()) | set(self.by_national_id.values())
        ids |= {e.client_id for e in events if e.client_id is not None}
        ids |= self.target_subjects()  # the women whose events the batch's voids name
        rows = await repository.lock_clients(session, ids)
        stored = await repository.histories(session, list(rows))
        for cid, row in rows.items():
            pairs = stored.get(cid, [])
            history = ClientHistory(row.birth_date, row.birth_date_estimated, [e for _, e in pairs], clock=self.clock)
            self.clients[cid] = ClientRecord(row, history, posted=dict(pairs))
        infant_refs = {
            (e.facility_id, self.infant_ref_hash(e.facility_id, i.infant_ref))
            for e in events
            if isinstance(e, DeliveryRecordedIn)
            for i in e.data.infants
        }
        self.taken_infants = await repository.taken_infant_refs(session, infant_refs)
        self.voided_infants = await repository.voided_infant_refs(session, infant_refs)
        self.creating = self.first_enrolments(candidates)
        return {eid: Recorded(r.content_hash, r.result) for eid, r in recorded.items()}

    def ref_key(self, facility_id: str, client_ref: str) -> str:
        """What an event for a woman not enrolled yet waits for: her record number at the facility
        (keyed hash, as everywhere a record number is a key)."""
        return f"client_ref:{ref_hash(self.hmac_key, facility_id, client_ref)}"

    def pending_keys(self, candidates: Sequence[MotherCandidate]) -> set[str]:
        keys: set[str] = set()
        for c in candidates:
            e = c.event
            if e.client_ref is not None:
                keys.add(self.ref_key(e.facility_id, e.client_ref))
                known = self.by_ref.get((e.facility_id, e.client_ref))
                if known is not None:
                    keys.add(client_key(known))
            if e.client_id is not None and e.client_id in self.clients:
                keys.add(client_key(e.client_id))
        return keys

    def hold_keys(self, candidates: Sequence[MotherCandidate]) -> set[str]:
        """Her record number at the facility, for every event naming her by it: locked before the
        look-up, so a batch enrolling her and one holding an event for her do not miss each other."""
        return {self.ref_key(c.event.facility_id, c.event.client_ref) for c in candidates if c.event.client_ref}

    def first_enrolments(self, candidates: Sequence[MotherCandidate]) -> set[int]:
        """The earliest enrolment of each record number the platform does not know yet."""
        first: dict[tuple[str, str | None], MotherCandidate] = {}
        for c in candidates:
            e = c.event
            key = (e.facility_id, e.client_ref)
            if isinstance(e, ClientEnrolledIn) and key not in self.by_ref:
                if key not in first or e.occurred_at < first[key].event.occurred_at:
                    first[key] = c
        return {c.index for c in first.values()}

    def order(self, c: MotherCandidate) -> tuple[bool, datetime, int]:
        """By when it happened, so state follows occurred_at within a batch too; an enrolment that
        creates a registration goes first, so a test dated just before it is not orphaned. At one
        instant, an enrolment, then a test, before what may depend on them (whatever the posted order)."""
        return (c.index not in self.creating, c.event.occurred_at, SAME_INSTANT.get(c.event.type, 3))

    def national_id_hash(self, e: ClientEnrolledIn) -> str:
        assert e.data.national_id
        return national_id_hash(self.hmac_key, e.data.national_id)

    def infant_ref_hash(self, facility_id: str, infant_ref: str) -> str:
        return ref_hash(self.hmac_key, facility_id, infant_ref)

    def decide(self, c: MotherCandidate) -> Accept | Reject | Hold:
        try:
            accepted = self.plan(c.event)
            if c.event.event_id in self.replacing:
                self.check_replacement(accepted)
        except Waits as waits:
            return Hold(waits.keys, waits.code, waits.reason)
        except RuleBroken as broken:
            e = c.event
            if WAITS_FOR_EARLIER.get(e.type) is broken.code:  # her record was found: she is known
                cid = e.client_id or self.by_ref[(e.facility_id, e.client_ref)]
                return Hold(
                    (client_key(cid),),
                    Code.awaiting_earlier_event,
                    f"Held until an earlier event of hers is posted: {broken.reason}",
                )
            return Reject(broken.code, broken.reason)
        self.apply(c, accepted)
        made_up = [str(accepted.client.row.client_id)] if accepted.client.is_new else []
        made_up += [str(infant["infant_id"]) for infant in accepted.infants]
        return Accept(accepted.result, assigned=tuple(made_up))

    def answer(self, event: EmrEventBase, result: Mapping[str, Any]) -> dict[str, Any]:
        return _public(event, result)

    def amend(self, c: MotherCandidate) -> bool:
        """An enrolment posted again under its event_id with other names or phone and the same fact
        (a FHIR Patient saved again with a new name or number: a new `meta.versionId` of the same
        EpisodeOfCare's enrolment): her personal data is updated, encrypted, and the enrolment is a
        duplicate. Any other difference (the facility, the time, her status, ART, pregnancy, birth
        date or age, national id) is still a conflict: a correction of the fact itself."""
        e = c.event
        recorded = self.enrolments_recorded.get(e.event_id)
        if not isinstance(e, ClientEnrolledIn) or recorded is None or recorded.voided or recorded.payload is None:
            return False
        client = self.clients.get(UUID(str(recorded.result.get("client_id"))))
        if client is None or client.row.client_id != self.subject_of(c):
            return False
        d, stored, row = e.data, recorded.payload, client.row
        day = self.clock.local_day(e.occurred_at)
        age = domain.age_on(d.birth_date, day) if d.birth_date is not None else d.age_years
        fact = {
            "facility_id": e.facility_id,
            "status_at_enrolment": d.status_at_enrolment.value,
            "age_years": age,
            "hiv_status": d.hiv_status.value,
            "hiv_status_known_since": d.hiv_status_known_since.isoformat() if d.hiv_status_known_since else None,
            "on_art": d.on_art,
            "art_start_date": d.art_start_date.isoformat() if d.art_start_date else None,
            "gestation_weeks": d.gestation_weeks,
            "edd": d.edd.isoformat() if d.edd else None,
        }
        if any(stored.get(k) != v for k, v in fact.items()):
            return False
        if datetime.fromisoformat(stored["occurred_at"]) != e.occurred_at:
            return False
        if d.birth_date is not None and row.birth_date != d.birth_date:
            return False
        if (self.national_id_hash(e) if d.national_id else None) != row.national_id_hash:
            return False
        for column in ("given_name", "family_name", "phone"):
            value = getattr(d, column)
            row.personal[column] = self.cipher.encrypt(row.client_id, column, value) if value is not None else None
        client.changed = True
        self.amended.append(client)
        return True

    # --- corrections (servicekit.corrections) -------------------------------------------------

    def void(self, v: Void) -> Accept | Reject:
        """Take the voided fact out of her history (later events of this batch are decided without
        it), refusing while events of hers stand on it; publish ClientEventVoided. A delivery's
        infants are voided with it (their record numbers free for the corrected delivery)."""
        client = self.clients.get(v.target.subject_id)
        voided = client.posted.get(v.target.event_id) if client is not None else None
        if client is None or voided is None:
            return Reject(Code.unknown_voided_event, f"Event {v.target.event_id} is not among her standing events.")
        history = client.history
        if v.replaced_by is None:
            standing = [client.event_id_of(e) for e in domain.dependents(history, voided)]
            if standing:
                listed = ", ".join(str(i) for i in standing)
                return Reject(
                    Code.void_dependents_first,
                    f"Events of hers stand on {v.target.type} {v.target.event_id}; void them first (latest first):"
                    f" {listed}.",
                )
        history.events = [e for e in history.events if e is not voided]
        del client.posted[v.target.event_id]
        if isinstance(voided, enrolment.DeliveryRecorded):
            self.freed.append(v.target.event_id)
            self.taken_infants -= {(voided.facility_id, i.ref_hash) for i in voided.infants}
            for i in voided.infants:
                self.voided_infants[(voided.facility_id, i.ref_hash)] = (client.row.client_id, i.infant_id)
        if isinstance(voided, enrolment.ClientEnrolled) and not history.of(enrolment.ClientEnrolled):
            self.forget_identity(client, v.target.event_id)
        e = v.event
        event = enrolment.ClientEventVoided(
            client_id=client.row.client_id,
            episode_id=getattr(voided, "episode_id", None),
            pregnancy_number=getattr(voided, "pregnancy_number", None),
            facility_id=e.facility_id,
            # when it was voided: the EventVoided's time, or the correction's arrival
            occurred_at=e.occurred_at if v.replaced_by is None else self.ctx.now,
            **v.voiding(),
        )
        result = {"client_id": str(client.row.client_id)}
        if v.replaced_by is not None:
            self.replacing[v.replaced_by] = voided
        self.accepted.append((v.candidate, Accepted(client, event, result, stored=v.replaced_by is None)))
        return Accept(result)

    def unvoid(self, v: Void) -> None:
        """The replacement was refused: she has the voided event again, and nothing is published."""
        voided = self.replacing.pop(v.event.event_id)
        client = self.clients[v.target.subject_id]
        client.history.events.append(voided)
        client.posted[v.target.event_id] = voided
        if isinstance(voided, enrolment.DeliveryRecorded):
            self.freed.remove(v.target.event_id)
            self.taken_infants |= {(voided.facility_id, i.ref_hash) for i in voided.infants}
            for i in voided.infants:
                self.voided_infants.pop((voided.facility_id, i.ref_hash), None)
        if v.target.event_id in self.forgotten:
            row = client.row
            row.national_id_hash, row.birth_date, row.birth_date_estimated, row.personal_as_of = self.forgotten.pop(
                v.target.event_id
            )
            client.history.birth_date, client.history.birth_date_estimated = row.birth_date, row.birth_date_estimated
            if row.national_id_hash:
                self.by_national_id[row.national_id_hash] = row.client_id
        self.accepted = [(c, a) for c, a in self.accepted if c is not v.candidate]

    def forget_identity(self, client: ClientRecord, event_id: UUID) -> None:
        """Her only enrolment is voided: what it said of who she is (national id, birth date) was
        entered in error too, and the corrected enrolment says it afresh (its personal data win)."""
        row = client.row
        self.forgotten[event_id] = (row.national_id_hash, row.birth_date, row.birth_date_estimated, row.personal_as_of)
        if row.national_id_hash:
            self.by_national_id.pop(row.national_id_hash, None)
        row.national_id_hash, row.birth_date, row.birth_date_estimated, row.personal_as_of = None, None, False, None
        client.history.birth_date, client.history.birth_date_estimated = None, False
        client.changed = True

    def check_replacement(self, accepted: Accepted) -> None:
        """A replacement may not leave events of hers standing on nothing (a negative test that
        replaces the positive one her ART start follows)."""
        client = accepted.client
        after = ClientHistory(
            client.history.birth_date,
            client.history.birth_date_estimated,
            [*client.history.events, accepted.event],
            clock=self.clock,
        )
        standing = [client.event_id_of(e) for e in domain.unsupported(after)]
        if standing:
            raise RuleBroken(
                Code.void_dependents_first,
                "Events of hers would stand on nothing once it is replaced; void them first: "
                + ", ".join(str(i) for i in standing)
                + ".",
            )

    # --- one method per event type: check every rule, change nothing -------------------------

    def plan(self, e: Any) -> Accepted:
        if isinstance(e, ClientEnrolledIn):
            return self.plan_enrolment(e)
        client = self.client_named_by(e)
        day = self.clock.local_day(e.occurred_at)
        history = client.history
        if e.type == "ClientDied":
            domain.check_death(history, day)
        domain.check_after_birth(history, day)
        domain.check_alive(history, day)
        domain.check_enrolled_here(history, e.facility_id, day)
        common = {"client_id": client.row.client_id, "facility_id": e.facility_id, "occurred_at": e.occurred_at}
        # her age that day for reporting's age bands, from the birth date kept here (never sent itself)
        age = domain.age_on(history.birth_date, day) if history.birth_date is not None else None
        d = e.data
        match e.type:
            case "AncVisitRecorded":
                domain.check_gestation(d.gestation_weeks)
                event: Event = enrolment.AncVisitRecorded(
                    **common, visit_number=d.visit_number, gestation_weeks=d.gestation_weeks, age_years=age
                )
                domain.check_anc_visit(history, event)
            case "HivTestRecorded":
                found = domain.episodes(history)
                episode = domain.episode_at(found, e.occurred_at)
                event = enrolment.HivTestRecorded(
                    **common,
                    result=d.result,
                    setting=d.setting,
                    status_before=domain.hiv_status_before(history, e.occurred_at),
                    age_years=age,
                    anc_visit_number=domain.anc_visit_on(history, found, episode, day),
                    period=episode.period_at(e.occurred_at) if episode else None,
                )
            case "ArtInitiated":
                domain.check_art_start(history, day)
                event = enrolment.ArtInitiated(
                    **common, regimen=d.regimen, age_years=age, period=self.period(history, e)
                )
            case "ViralLoadRecorded":
                domain.check_viral_load(history, d.copies_per_ml, day)
                suppressed = d.copies_per_ml < self.policy.vl_suppression_threshold
                event = enrolment.ViralLoadRecorded(
                    **common, copies_per_ml=d.copies_per_ml, suppressed=suppressed, period=self.period(history, e)
                )
            case "DeliveryRecorded":
                return self.plan_delivery(e, client, common, age)
            case "PregnancyEnded":
                domain.check_loss_gestation(d.gestation_weeks)
                event = enrolment.PregnancyEnded(**common, outcome=d.outcome, gestation_weeks=d.gestation_weeks)
                domain.check_pregnancy_loss(history, event)
            case "ClientTransferredOut":
                domain.check_transfer(e.facility_id, d.to_facility_id, d.to_facility_id in self.ctx.registry)
                event = enrolment.ClientTransferredOut(**common, to_facility_id=d.to_facility_id)
            case "ClientDied":
                event = enrolment.ClientDied(**common)
        return Accepted(client, self.in_episode(history, event), {"client_id": str(client.row.client_id)})

    def period(self, history: ClientHistory, e: Any) -> enrolment.CarePeriod | None:
        episode = domain.episode_at(domain.episodes(history), e.occurred_at)
        return episode.period_at(e.occurred_at) if episode else None

    def in_episode(self, history: ClientHistory, event: Event) -> Event:
        """The event with the pregnancy episode it belongs to (for an ANC1 of a new pregnancy, the
        one it opens)."""
        found = domain.episodes(history, event)
        episode = domain.episode_of(found, event)
        if episode is None:
            return event
        fields: dict[str, Any] = {"episode_id": episode.episode_id(self.clock), "pregnancy_number": episode.number}
        if isinstance(event, enrolment.AncVisitRecorded):
            fields["opens_episode"] = episode.opener is event and episode.number > 1
        return event.model_copy(update=fields)

    def client_named_by(self, e: Any) -> ClientRecord:
        if e.client_id is not None and e.client_ref is not None:
            raise RuleBroken(Code.subject_identifier_ambiguous, "Name the woman by client_ref or client_id, not both.")
        if e.client_id is not None:
            found = self.clients.get(e.client_id)
            if found is None:
                raise RuleBroken("unknown_client", f"No client has client_id {e.client_id}.")
            return found
        if e.client_ref is None:
            raise RuleBroken(
                Code.subject_identifier_missing, "Name the woman by client_ref (the EMR's record number) or client_id."
            )
        cid = self.by_ref.get((e.facility_id, e.client_ref))
        if cid is None:
            raise Waits(
                Code.awaiting_client,
                f"No woman has client_ref {e.client_ref!r} at {e.facility_id} yet: held until her enrolment there is"
                " posted.",
                (self.ref_key(e.facility_id, e.client_ref),),
            )
        return self.clients[cid]

    def plan_enrolment(self, e: ClientEnrolledIn) -> Accepted:
        if e.client_id is not None:
            raise RuleBroken(
                "client_ref_required",
                "ClientEnrolled names the woman by the EMR's client_ref; the platform assigns client_id.",
            )
        if e.client_ref is None:
            raise RuleBroken(Code.subject_identifier_missing, "ClientEnrolled needs the EMR's client_ref.")
        d = e.data
        day = self.clock.local_day(e.occurred_at)
        if d.birth_date is None and d.age_years is None:
            raise RuleBroken("birth_date_or_age_required", "Give data.birth_date or, if unknown, data.age_years.")
        if d.birth_date is not None and d.birth_date > day:
            raise RuleBroken("before_birth", f"occurred_at {day.isoformat()} is before her data.birth_date.")
        age = domain.age_on(d.birth_date, day) if d.birth_date is not None else d.age_years
        assert age is not None
        domain.check_age(age)
        domain.check_gestation(d.gestation_weeks)
        domain.check_edd(d.status_at_enrolment, d.edd, day)
        domain.check_enrolment_dates(day, d.hiv_status, d.hiv_status_known_since, d.on_art, d.art_start_date)
        birth_date = d.birth_date or domain.estimated_birth_date(age, day)
        own = ClientHistory(birth_date, d.birth_date is None, clock=self.clock)
        for name in ("hiv_status_known_since", "art_start_date"):
            if getattr(d, name) is not None:
                domain.check_after_birth(own, getattr(d, name), name)

        nid_hash = self.national_id_hash(e) if d.national_id else None
        registered = self.by_ref.get((e.facility_id, e.client_ref))
        linked = self.by_national_id.get(nid_hash) if nid_hash else None
        if registered is not None and linked is not None and registered != linked:
            raise RuleBroken(
                "identity_conflict",
                f"national_id belongs to another client than client_ref {e.client_ref!r} at {e.facility_id}.",
            )
        existing = self.clients.get(registered or linked) if (registered or linked) else None
        if existing is None:
            estimated = d.birth_date is None
            personal = dict.fromkeys(repository.PERSONAL_COLUMNS)
            client = ClientRecord(
                ClientRow(uuid4(), None, birth_date, estimated, personal, None),
                ClientHistory(birth_date, estimated, clock=self.clock),
                is_new=True,
            )
        else:
            client = existing
            row = client.row
            if nid_hash and row.national_id_hash and row.national_id_hash != nid_hash:
                raise RuleBroken("identity_conflict", "national_id differs from the one on record for this woman.")
            domain.check_birth_dates_agree(client.history, d.birth_date, d.age_years, day)
            domain.check_after_birth(client.history, day)
            domain.check_alive(client.history, day)
        event = enrolment.ClientEnrolled(
            client_id=client.row.client_id,
            facility_id=e.facility_id,
            occurred_at=e.occurred_at,
            status_at_enrolment=d.status_at_enrolment,
            age_years=age,
            hiv_status=d.hiv_status,
            hiv_status_known_since=d.hiv_status_known_since,
            on_art=d.on_art,
            art_start_date=d.art_start_date,
            gestation_weeks=d.gestation_weeks,
            edd=d.edd,
        )
        if existing is not None:
            history = client.history
            found = domain.episodes(history, event)
            mine = domain.episode_of(found, event)
            domain.check_new_pregnancy_dates(history, found, mine)
            if history.at(e.facility_id, enrolment.ClientEnrolled):
                transfer_in = domain.enrolment_opens_episode(history, e.facility_id, event)
            else:
                # known to the platform (national id), new to this facility: a transfer in, unless
                # it opens a new pregnancy
                transfer_in = mine is None or mine.opener is not event
            replaced = self.replacing.get(e.event_id)
            if isinstance(replaced, enrolment.ClientEnrolled) and replaced.facility_id == e.facility_id:
                transfer_in = replaced.transfer_in  # the corrected enrolment is the one it corrects
            elif not history.events:
                transfer_in = False  # all she had here was voided: she enrols afresh
            event = event.model_copy(update={"transfer_in": transfer_in})
        event = self.in_episode(client.history, event)
        new_ref = (e.facility_id, e.client_ref) if registered is None else None
        return Accepted(client, event, {"client_id": str(client.row.client_id)}, registration=new_ref)

    def plan_delivery(self, e: DeliveryRecordedIn, client: ClientRecord, common: dict, age: int | None) -> Accepted:
        d = e.data
        refs = [i.infant_ref for i in d.infants]
        repeated = sorted({r for r in refs if refs.count(r) > 1})
        if repeated:
            raise RuleBroken("duplicate_infant_ref", f"infant_ref {repeated[0]!r} is given to two infants.")
        hashes = [self.infant_ref_hash(e.facility_id, r) for r in refs]
        for r, h in zip(refs, hashes, strict=True):
            if (e.facility_id, h) in self.taken_infants:
                raise RuleBroken("infant_ref_taken", f"infant_ref {r!r} already names an infant at {e.facility_id}.")
        history = client.history
        outcomes = [i.outcome for i in d.infants]
        domain.check_delivery(history, e.occurred_at, outcomes, [i.birth_weight_g for i in d.infants], self.policy)
        born = [
            enrolment.DeliveredInfant(
                infant_id=self.infant_id_for(e.facility_id, h, client.row.client_id),
                ref_hash=h,
                sex=i.sex,
                birth_weight_g=i.birth_weight_g,
                outcome=i.outcome,
            )
            for i, h in zip(d.infants, hashes, strict=True)
        ]
        load = domain.latest_viral_load(history, e.occurred_at)
        event: Event = enrolment.DeliveryRecorded(
            **common,
            place=d.place,
            skilled_attendant=d.skilled_attendant,
            maternal_outcome=d.maternal_outcome,
            infants=born,
            mother_hiv_status=domain.hiv_status_at(history, e.occurred_at),
            mother_diagnosed_on=domain.diagnosed_on(history, e.occurred_at),
            mother_art_start_date=domain.art_started_on(history, e.occurred_at),
            mother_latest_viral_load=(
                enrolment.ViralLoadResult(copies_per_ml=load.copies_per_ml, on=history.day_of(load.occurred_at))
                if load is not None
                else None
            ),
            age_years=age,
        )
        event = self.in_episode(history, event)
        result = {
            "client_id": str(client.row.client_id),
            "infant_ids": [str(b.infant_id) for b in born],
        }
        rows = [
            {
                "infant_id": b.infant_id,
                "client_id": client.row.client_id,
                "facility_id": e.facility_id,
                "ref_hash": b.ref_hash,
                "delivery_event_id": e.event_id,
                "born_at": e.occurred_at,
                "outcome": b.outcome.value,
            }
            for b in born
        ]
        return Accepted(client, event, result, infants=rows)

    def infant_id_for(self, facility_id: str, ref_hash: str, client_id: UUID) -> UUID:
        """A new infant_id; or, for a baby of hers whose delivery was voided (a corrected delivery
        naming the same record number), the one the EMR was given for her then."""
        again = self.voided_infants.get((facility_id, ref_hash))
        return again[1] if again is not None and again[0] == client_id else uuid4()

    # --- apply an accepted event to the batch's in-memory state -------------------------------

    def apply(self, c: MotherCandidate, a: Accepted) -> None:
        client = a.client
        cid = client.row.client_id
        self.clients[cid] = client
        client.history.events.append(a.event)
        client.posted[c.event.event_id] = a.event
        if isinstance(c.event, ClientEnrolledIn):
            self.apply_enrolment(c.event, client)
        if a.registration is not None:
            self.by_ref[a.registration] = cid
        for infant in a.infants:
            self.taken_infants.add((infant["facility_id"], infant["ref_hash"]))
        self.accepted.append((c, a))

    def apply_enrolment(self, e: ClientEnrolledIn, client: ClientRecord) -> None:
        d = e.data
        row = client.row
        if d.birth_date is not None and (row.birth_date_estimated or row.birth_date is None):
            row.birth_date, row.birth_date_estimated = d.birth_date, False
            client.history.birth_date, client.history.birth_date_estimated = d.birth_date, False
            client.changed = True
        elif row.birth_date is None and d.age_years is not None:  # her enrolment was voided (forget_identity)
            estimated = domain.estimated_birth_date(d.age_years, self.clock.local_day(e.occurred_at))
            row.birth_date, row.birth_date_estimated = estimated, True
            client.history.birth_date, client.history.birth_date_estimated = estimated, True
            client.changed = True
        if d.national_id and row.national_id_hash is None:
            row.national_id_hash = self.national_id_hash(e)
            self.by_national_id[row.national_id_hash] = row.client_id
            client.changed = True
        if row.personal_as_of is None or e.occurred_at >= row.personal_as_of:
            for column in repository.PERSONAL_COLUMNS:
                value = getattr(d, column)
                if value is not None:
                    row.personal[column] = self.cipher.encrypt(row.client_id, column, value)
            row.personal_as_of = e.occurred_at
            client.changed = True

    async def write(self, uow: UnitOfWork) -> None:
        """Write the women, registrations, events and infants the batch accepted, and publish the
        events its decisions raised (each `Accepted` carries the catalog event it decided on)."""
        session = uow.session
        if not self.accepted:
            # nothing recorded; a resent enrolment may have updated her personal data (`amend`)
            await repository.update_clients(session, [r.row for r in self.amended])
            return
        new = [r.row for r in self.clients.values() if r.is_new]
        changed = [r.row for r in self.clients.values() if r.changed and not r.is_new]
        await repository.insert_clients(session, new)
        await repository.update_clients(session, changed)
        registrations = [
            {
                "facility_id": a.registration[0],
                "client_ref": a.registration[1],
                "client_id": a.client.row.client_id,
                "registered_at": c.event.occurred_at,
            }
            for c, a in self.accepted
            if a.registration is not None
        ]
        await repository.insert_registrations(session, registrations)
        # a voided delivery's infants first: a corrected delivery may give their record numbers again
        await repository.void_infants(session, self.freed, self.ctx.now)
        await repository.insert_events(
            session,
            [
                {
                    "event_id": c.event.event_id,
                    "content_hash": c.fingerprint,
                    "batch_id": self.ctx.batch_id,
                    "client_id": a.client.row.client_id,
                    "facility_id": c.event.facility_id,
                    "type": c.event.type,
                    "occurred_at": c.event.occurred_at,
                    "payload": a.event.model_dump(mode="json"),
                    "result": a.result,
                    "recorded_by": c.held.posted_by if c.held is not None else self.ctx.principal.client_id,
                    # what its acceptance publishes, in this first write of the row (not a second)
                    "published_ids": [uow.envelope_id(a.event)],
                }
                for c, a in self.accepted
                if a.stored
            ],
        )
        infants = [row for _, a in self.accepted for row in a.infants]
        again = {i for _, i in self.voided_infants.values()}
        await repository.insert_infants(session, [row for row in infants if row["infant_id"] not in again])
        await repository.register_again(session, [row for row in infants if row["infant_id"] in again])
        uow.publish(*(a.event for _, a in self.accepted))


def _public(e: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """The answer for an accepted event, or the same answer again for its duplicate. Infant ids are
    stored in the order of the delivery's infants, and a duplicate has the same content, so the
    record numbers come from the request: they are not kept in the stored result."""
    infants = None
    if isinstance(e, DeliveryRecordedIn):
        refs = [i.infant_ref for i in e.data.infants]
        infants = [{"infant_ref": r, "infant_id": i} for r, i in zip(refs, result["infant_ids"], strict=True)]
    return {"client_id": result["client_id"], "infants": infants}
