"""The one EMR intake pipeline: what every `POST /v1/events` does, the same way in every service.

A batch goes through these steps, in this order (docs/emr-intake.md is the integrators' account):

1. **Size.** 1 to `PMTCT_INTAKE_MAX_BATCH` (1000) events, else the whole request is refused:
   422 `empty_batch` / 413 `batch_too_large`.
2. **Strict parsing**, event by event, so one bad event is a `rejected` result and never a failed
   batch: JSON types as declared, no field the event does not have, no NaN or Infinity
   (`invalid_value`, `missing_field`, `unknown_field`, `unknown_event_type`).
3. **Facility authorisation**, before anything is looked up, so a caller learns nothing about
   another facility's subjects: `unknown_facility` (not in the registry), `facility_forbidden`
   (not among the token's facility claims). A district EMR may post for several facilities in one
   batch, so this is a per-event result, not a 403.
4. **Not in the future**: `occurred_in_future`, beyond `PMTCT_INTAKE_FUTURE_TOLERANCE_S`.
5. **One unit of work** (`_attempt`, `servicekit.uow`): the service resolves the subjects the events name (loading and
   locking them) and says which event_ids it has recorded, with their content fingerprints; then
   each event, in the order the service chooses, is a `duplicate` (same event_id, same content:
   answered as the first time), a `conflict` (same event_id, other content), or decided by the
   service (accepted, or rejected with a `Code`); then the service writes what it accepted and
   publishes its events to the unit; the unit commits (events to the outbox under the batch id).
6. **Retry** the whole transaction when a concurrent batch raced it (serialization failure,
   deadlock, a unique violation such as the same event_id posted twice at once): at most
   `ATTEMPTS` times, then 503 `contention` (the batch is safe to resend).
7. **Metrics**: `pmtct_intake_events_total{service, outcome, code}`, `pmtct_intake_batch_seconds`,
   `pmtct_intake_retries_total`.

A **dry run** (`?dry_run=true`) is the same pipeline to the last step: the same checks in the same
order, the same unit of work with the service's writes and the outbox, then ROLLBACK instead of
COMMIT (`UnitOfWork.rehearse`). Its answer is what the real post would answer, with `dry_run: true`
and, on each result, the ids the rehearsal made up (`provisional_ids`: a real post assigns others);
nothing is kept and it is counted apart (`pmtct_intake_dry_run_events_total`), not as intake.

A service supplies only what differs (`Intake` and an `IntakeBatch`): its event models, how it
resolves subjects, how it decides, and how it writes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Protocol, Self, TypeVar
from uuid import UUID, uuid4

import orjson
from fastapi import Header, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from sqlalchemy.exc import DBAPIError

from pmtct_events import Event
from pmtct_events.base import VoidReason, sane

from . import pending
from .auth import Principal
from .facilities import FacilityRegistry
from .guard import sqlstate
from .metrics import INTAKE_BATCH_SECONDS, INTAKE_DRY_RUN_EVENTS, INTAKE_EVENTS, INTAKE_RETRIES
from .problems import PROBLEM_JSON, Problem
from .settings import ServiceSettings
from .uow import UnitOfWork

log = logging.getLogger(__name__)

#: the default of `PMTCT_INTAKE_MAX_BATCH`
MAX_BATCH = 1000
#: how many times a batch's transaction is tried before it is answered 503 `contention`
ATTEMPTS = 3
#: serialization failure, deadlock, unique violation: a concurrent batch raced this one
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "23505"})


# --- the vocabulary --------------------------------------------------------------------------------


class Action(StrEnum):
    """What an EMR should do about a code: the last column of the table in docs/emr-intake.md."""

    fix_and_resend = "fix the event and resend it"
    resend_later = "resend it later, unchanged"
    new_event_id = "send the correction with a new event_id and `replaces` naming this one"
    fix_facility = "fix facility_id, or have the facility registered"
    fix_token = "post it with a token for that facility"
    do_not_resend = "do nothing: do not resend it; check the record in the EMR"
    resend_batch = "resend the whole batch, unchanged"
    fix_request = "fix the request and resend the batch"
    split_batch = "split the batch and resend"
    wait = "nothing now: it is applied when what it waits for is posted (`GET /v1/events/{event_id}` tells)"
    void_first = "void the events the reason lists first, then resend this void"
    void_and_post = "void the event, then post the correct one as a new event"


class Code(StrEnum):
    """Every code the intake endpoints answer with, in every service: a rejected event's `code`,
    or the `code` of a problem+json that refuses the whole request (`status` is then its HTTP status).

    Each member is `name = value, meaning, action, status`."""

    meaning: str
    action: Action
    status: int | None

    def __new__(cls, value: str, meaning: str, action: Action, status: int | None = None) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        member.action = action
        member.status = status
        return member

    # --- the whole request (problem+json) --------------------------------------------------------
    malformed_json = (
        "malformed_json",
        "The body is not JSON, or its bytes are not UTF-8 (JSON is UTF-8: a body in another encoding cannot be"
        " read into events).",
        Action.fix_request,
        400,
    )
    unsupported_media_type = (
        "unsupported_media_type",
        "The body is not sent as `Content-Type: application/json`.",
        Action.fix_request,
        415,
    )
    validation_failed = (
        "validation_failed",
        'The body is not `{"events": [...]}` (a bare list, `events` not a list, another top-level field).',
        Action.fix_request,
        422,
    )
    empty_batch = "empty_batch", "The batch has no events.", Action.fix_request, 422
    batch_too_large = "batch_too_large", "The batch has more events than the limit (1000).", Action.split_batch, 413
    payload_too_large = (
        "payload_too_large",
        "The body is larger than the service reads (`PMTCT_HTTP_MAX_BODY_BYTES`, 4 MiB).",
        Action.split_batch,
        413,
    )
    unauthorized = "unauthorized", "No bearer token, or one that is invalid or expired.", Action.fix_request, 401
    insufficient_scope = "insufficient_scope", "The token lacks the scope `events:write`.", Action.fix_request, 403
    contention = (
        "contention",
        "Concurrent batches kept touching the same subjects; nothing of this batch was recorded.",
        Action.resend_batch,
        503,
    )
    unavailable = (
        "unavailable",
        "The service's database or broker is not reachable just now (`Retry-After` says when to try);"
        " resending is safe: what was recorded comes back `duplicate`.",
        Action.resend_batch,
        503,
    )

    # --- one event: its shape ----------------------------------------------------------------------
    invalid_value = (
        "invalid_value",
        "A field has the wrong JSON type, format or value (the reason names it); also a non-object event,"
        " NaN or Infinity, a `\\uD800`-style escape that is no character (a lone surrogate), a date outside"
        " 1900–2999.",
        Action.fix_and_resend,
    )
    missing_field = "missing_field", "A required field is absent (`type`, `data.hiv_status`, …).", Action.fix_and_resend
    unknown_field = (
        "unknown_field",
        "A field this event does not have (a typo, or an extension).",
        Action.fix_and_resend,
    )
    unknown_event_type = (
        "unknown_event_type",
        "`type` is not an event the endpoint takes (follow-up's own endpoint takes infant events only).",
        Action.fix_and_resend,
    )

    # --- one event: facility, time, identity of the event ----------------------------------------
    unknown_facility = (
        "unknown_facility",
        "`facility_id` (or `to_facility_id`) is not in the facility registry.",
        Action.fix_facility,
    )
    facility_forbidden = (
        "facility_forbidden",
        "The token's facility claims do not include this `facility_id`.",
        Action.fix_token,
    )
    occurred_in_future = (
        "occurred_in_future",
        "`occurred_at` is later than the server's time plus the clock-drift tolerance (5 minutes).",
        Action.fix_and_resend,
    )
    conflict = (
        "conflict",
        "This `event_id` is already recorded with different content.",
        Action.new_event_id,
    )
    service_unavailable = (
        "service_unavailable",
        "The service that takes this event (follow-up, for infant events posted to enrolment) did not"
        " answer in time or is down; the batch's other events are answered as usual. If it did record the"
        " event after all, the resend is answered `duplicate`.",
        Action.resend_later,
    )

    # --- one event: its subject ------------------------------------------------------------------
    subject_identifier_missing = (
        "subject_identifier_missing",
        "The event names no woman (`client_ref` or `client_id`) or no infant (`infant_ref` or `infant_id`).",
        Action.fix_and_resend,
    )
    subject_identifier_ambiguous = (
        "subject_identifier_ambiguous",
        "The event names its subject twice (`client_ref` and `client_id`, or `infant_ref` and `infant_id`).",
        Action.fix_and_resend,
    )
    client_ref_required = (
        "client_ref_required",
        "`ClientEnrolled` names the woman by the EMR's `client_ref`; the platform assigns `client_id`.",
        Action.fix_and_resend,
    )
    unknown_client = (
        "unknown_client",
        "No woman has this `client_ref` at this facility, or no woman has this `client_id`.",
        Action.fix_and_resend,
    )
    unknown_infant = (
        "unknown_infant",
        "The infant was registered by a delivery the EMR voided (entered in error): the platform has no such"
        " infant; post the event for the infant of the corrected delivery. An event for an infant not known"
        " yet is not refused: it is held (`pending`, `awaiting_infant`).",
        Action.fix_and_resend,
    )
    infant_ref_unsupported = (
        "infant_ref_unsupported",
        "This deployment cannot resolve `infant_ref` (no keyed hash configured); name the infant by `infant_id`.",
        Action.fix_and_resend,
    )
    not_enrolled_at_facility = (
        "not_enrolled_at_facility",
        "Addressed by `client_id` at a facility where she is not enrolled.",
        Action.fix_and_resend,
    )
    identity_conflict = (
        "identity_conflict",
        "The national id belongs to another woman or differs from hers, or her birth date / age contradicts"
        " the record.",
        Action.do_not_resend,
    )
    already_enrolled = (
        "already_enrolled",
        "She is enrolled here already and this enrolment opens no new episode.",
        Action.do_not_resend,
    )
    infant_not_in_follow_up = (
        "infant_not_in_follow_up",
        "The infant is not HIV-exposed as far as the platform knows, so follow-up takes no events for it.",
        Action.do_not_resend,
    )

    # --- one event held (`pending`: servicekit.pending) ------------------------------------------
    awaiting_client = (
        "awaiting_client",
        "`pending`: no woman has this `client_ref` at this facility yet; the event is held and applied when her"
        " enrolment there is posted.",
        Action.wait,
    )
    awaiting_infant = (
        "awaiting_infant",
        "`pending`: follow-up knows no HIV-exposed infant by this `infant_ref` or `infant_id` yet; the event is"
        " held and applied when its delivery (and the mother's positive status) reaches follow-up.",
        Action.wait,
    )
    awaiting_earlier_event = (
        "awaiting_earlier_event",
        "`pending`: it needs an event dated before it that is not recorded yet (the positive HIV test before an"
        " ART start or a viral load); held until her next event, then decided again.",
        Action.wait,
    )
    pending_expired = (
        "pending_expired",
        "A held event whose subject or earlier event was not posted within `PMTCT_INTAKE_PENDING_TTL_DAYS` (30"
        " days); it was not recorded (`GET /v1/events/{event_id}`).",
        Action.fix_and_resend,
    )

    # --- one event: a correction (EventVoided, or an event posted with `replaces`: servicekit.corrections) --
    unknown_voided_event = (
        "unknown_voided_event",
        "`data.voided_event_id` (or `replaces`) names no event recorded here for a facility of the token (also: one"
        " accepted in this same batch, a held `pending` event named by `replaces`, or an `EventVoided`, which"
        " cannot be voided).",
        Action.fix_and_resend,
    )
    already_voided = (
        "already_voided",
        "The event it names is voided already (the reason says by which event, and when).",
        Action.do_not_resend,
    )
    replacement_type_mismatch = (
        "replacement_type_mismatch",
        "A replacement (`replaces`) of another `type` than the event it replaces.",
        Action.void_and_post,
    )
    replacement_subject_mismatch = (
        "replacement_subject_mismatch",
        "A replacement (`replaces`) that names another woman or infant than the event it replaces.",
        Action.void_and_post,
    )
    void_dependents_first = (
        "void_dependents_first",
        "Later events of hers stand on the event to void (an enrolment, the positive test an ART start or a"
        " viral load needs); the reason lists their event_ids.",
        Action.void_first,
    )

    # --- one event: dates of a life ----------------------------------------------------------------
    before_birth = (
        "before_birth",
        "A date before the subject's birth (exact, or the earliest an `age_years` allows).",
        Action.fix_and_resend,
    )
    event_after_death = (
        "event_after_death",
        "Dated after the subject's recorded death.",
        Action.fix_and_resend,
    )
    date_after_occurred_at = (
        "date_after_occurred_at",
        "`hiv_status_known_since` or `art_start_date` is after the enrolment's `occurred_at`.",
        Action.fix_and_resend,
    )
    death_already_recorded = "death_already_recorded", "A second `ClientDied`.", Action.do_not_resend
    death_before_recorded_events = (
        "death_before_recorded_events",
        "A death dated before events already recorded for her.",
        Action.fix_and_resend,
    )
    transferred_out = (
        "transferred_out",
        "At a facility she transferred out of, dated after that (enrol her there again first).",
        Action.fix_and_resend,
    )
    transfer_to_same_facility = (
        "transfer_to_same_facility",
        "`to_facility_id` is the facility she leaves.",
        Action.fix_and_resend,
    )

    # --- one event: clinical rules -----------------------------------------------------------------
    birth_date_or_age_required = (
        "birth_date_or_age_required",
        "`ClientEnrolled` without `birth_date` or `age_years`.",
        Action.fix_and_resend,
    )
    age_out_of_range = "age_out_of_range", "Age at enrolment outside 9–60 years.", Action.fix_and_resend
    gestation_out_of_range = "gestation_out_of_range", "`gestation_weeks` outside 4–45.", Action.fix_and_resend
    edd_out_of_range = (
        "edd_out_of_range",
        "An expected delivery date that cannot belong to a pregnancy seen that day.",
        Action.fix_and_resend,
    )
    inconsistent_hiv_status = (
        "inconsistent_hiv_status",
        "`hiv_status_known_since` with `hiv_status: unknown`.",
        Action.fix_and_resend,
    )
    inconsistent_art = "inconsistent_art", "`art_start_date` with `on_art: false`.", Action.fix_and_resend
    art_before_positive_status = (
        "art_before_positive_status",
        "ART (at enrolment or `ArtInitiated`) without a positive HIV status on or before that day.",
        Action.fix_and_resend,
    )
    viral_load_before_positive_status = (
        "viral_load_before_positive_status",
        "A viral load without a positive HIV status on or before that day.",
        Action.fix_and_resend,
    )
    viral_load_out_of_range = (
        "viral_load_out_of_range",
        "`copies_per_ml` outside 0–50,000,000.",
        Action.fix_and_resend,
    )
    not_pregnant = (
        "not_pregnant",
        "An ANC visit other than ANC1, or a pregnancy loss, while no pregnancy of hers is ongoing (post the new"
        " pregnancy's ANC1 visit or enrolment first).",
        Action.fix_and_resend,
    )
    overlapping_pregnancy = (
        "overlapping_pregnancy",
        "A new pregnancy whose gestation or EDD dates it from before her previous pregnancy ended.",
        Action.fix_and_resend,
    )
    delivery_before_enrolment = (
        "delivery_before_enrolment",
        "A delivery dated before she enrolled pregnant.",
        Action.fix_and_resend,
    )
    live_birth_without_infants = (
        "live_birth_without_infants",
        "A delivery with an empty `infants` list: list every baby, live-born or stillborn.",
        Action.fix_and_resend,
    )
    duplicate_infant_ref = (
        "duplicate_infant_ref",
        "One `infant_ref` for two babies of the delivery.",
        Action.fix_and_resend,
    )
    infant_ref_taken = (
        "infant_ref_taken",
        "The `infant_ref` already names an infant at this facility.",
        Action.fix_and_resend,
    )
    birth_weight_out_of_range = (
        "birth_weight_out_of_range",
        "`birth_weight_g` outside 200–7000.",
        Action.fix_and_resend,
    )
    delivery_too_soon = (
        "delivery_too_soon",
        "Another delivery of hers, or a pregnancy loss before it, is recorded less than 154 days away (the same"
        " delivery posted twice?).",
        Action.do_not_resend,
    )

    # --- one record of a Mentor Mother's app (POST /v1/contacts) ------------------------------------
    not_hiv_positive = (
        "not_hiv_positive",
        "Index testing (`IndexContactElicited`) starts from a client known to be HIV-positive.",
        Action.fix_and_resend,
    )
    unknown_index_contact = (
        "unknown_index_contact",
        "The `contact_ref` names no contact this client has named: post its `IndexContactElicited` first.",
        Action.fix_and_resend,
    )


def codes_table() -> str:
    """The table of docs/emr-intake.md (a test keeps the two the same)."""
    lines = ["| code | HTTP | what it means | the EMR should |", "|---|---|---|---|"]
    for code in Code:
        where = str(code.status) if code.status is not None else "200, per event"
        lines.append(f"| `{code.value}` | {where} | {code.meaning} | {code.action.value} |")
    return "\n".join(lines) + "\n"


CONFLICT_REASON = (
    "This event_id is already recorded with different content; a correction needs a new event_id (and `replaces`"
    " naming this one: docs/emr-intake.md, Corrections)."
)


# --- the posted events -----------------------------------------------------------------------------


class Strict(BaseModel):
    """The base of every model of a posted event: JSON types as declared (no coercion), no field
    the model does not have, no NaN or Infinity, immutable; and in every field, no date outside
    1900-2999 and no NUL byte in text (`pmtct_events.base.sane`, the contracts' own rule, so what
    the intake accepts every consumer accepts)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _sane(cls, value: Any) -> Any:
        return sane(value)


class Sane(BaseModel):
    """The base of a request body outside the intake: fields coerced as FastAPI does, but, as in
    `Strict` and the event contracts, no date outside 1900-2999 and no NUL byte in text, so what
    an endpoint accepts can always become an event (a date in 6952 was a 500 when it could not)."""

    @field_validator("*", mode="after")
    @classmethod
    def _sane(cls, value: Any) -> Any:
        return sane(value)


class PostedEvent(Strict):
    """What every posted event has; a service's events add their subject, `type` and `data`."""

    event_id: UUID = Field(description="The EMR's own UUID for this event: the idempotency key.")
    facility_id: str = Field(min_length=1, max_length=64, description="Where it happened (the facility registry).")
    occurred_at: AwareDatetime = Field(description="When it happened (visit, test, start, sample, delivery).")
    replaces: UUID | None = Field(
        default=None,
        description="A correction: the event_id of an accepted event of the same type and subject that this one"
        " replaces (it is voided, entered in error, and this one recorded, in one step).",
    )

    @field_validator("occurred_at")
    @classmethod
    def _a_real_date(cls, value: datetime) -> datetime:
        # also keeps every later date calculation (UTC conversion, offsets) inside datetime's range
        if not 1900 <= value.year <= 2999 or not 1900 <= value.astimezone(UTC).year <= 2999:
            raise ValueError("occurred_at must be between the years 1900 and 2999")
        return value


class EventStatus(StrEnum):
    accepted = "accepted"
    duplicate = "duplicate"
    rejected = "rejected"
    #: held until what it waits for is recorded (its `code` says what: `awaiting_*`)
    pending = "pending"


class EventResult(BaseModel):
    """The answer for one posted event."""

    index: int = Field(description="Position of the event in the posted batch.")
    event_id: str | None = Field(description="The event's event_id as posted, if it had one.")
    status: EventStatus
    code: Code | None = Field(default=None, description="Why it was rejected (machine-readable; docs/emr-intake.md).")
    reason: str | None = Field(default=None, description="Why it was rejected (for people).")
    provisional_ids: list[str] | None = Field(
        default=None,
        description="A dry run only: the ids in this result the dry run made up (a new woman's client_id, a"
        " delivery's infant ids); the real post assigns others.",
    )

    @classmethod
    def rejection(cls, index: int, event_id: UUID | str | None, code: Code, reason: str, **extra: Any) -> Self:
        return cls(
            index=index,
            event_id=str(event_id)[:64] if event_id is not None else None,
            status=EventStatus.rejected,
            code=code,
            reason=reason,
            **extra,
        )

    @classmethod
    def conflict(cls, index: int, event_id: UUID | str) -> Self:
        return cls.rejection(index, event_id, Code.conflict, CONFLICT_REASON)


ResultT = TypeVar("ResultT", bound=EventResult)


class BatchReply(BaseModel, Generic[ResultT]):
    """The answer for a batch: its id, how many events ended each way, and every event's result."""

    batch_id: UUID = Field(description="Correlation id of the events this batch caused.")
    dry_run: bool = Field(default=False, description="True: a dry run (`?dry_run=true`), nothing was recorded.")
    accepted: int
    duplicate: int
    rejected: int
    pending: int = Field(default=0, description="Held until what they wait for is posted (docs/emr-intake.md).")
    results: list[ResultT] = Field(description="One result per posted event, in the order posted (`index`).")

    @classmethod
    def of(cls, batch_id: UUID, results: Sequence[ResultT], dry_run: bool = False) -> Self:
        counts = Counter(r.status for r in results)
        return cls(
            batch_id=batch_id,
            dry_run=dry_run,
            accepted=counts[EventStatus.accepted],
            duplicate=counts[EventStatus.duplicate],
            rejected=counts[EventStatus.rejected],
            pending=counts[EventStatus.pending],
            results=list(results),
        )


#: the `dry_run` query parameter of every intake route
DryRun = Annotated[
    bool,
    Query(
        description="Run every check and answer each event as a real post would, recording nothing (no rows,"
        " no events published). Ids the platform would assign are made up and listed in `provisional_ids`."
    ),
]

#: the header the platform's own doors send when a dry run is a step of their own (the FHIR door's
#: all-or-nothing check of a transaction) rather than one the caller asked for: such a dry run is
#: not counted in `pmtct_intake_dry_run_events_total`, which counts the callers' dry runs only.
#: Its value is `rehearsal_proof` (a keyed hash of the request's bearer token under the platform's
#: `PMTCT_HMAC_KEY`, which no EMR holds), so a caller cannot keep its own dry runs out of the count:
#: any other value, `true` included, is ignored and the dry run is counted
REHEARSAL_HEADER = "X-PMTCT-Rehearsal"
Rehearsal = Annotated[str | None, Header(alias=REHEARSAL_HEADER, include_in_schema=False)]


def rehearsal_proof(hmac_key: str | None, token: str) -> str | None:
    """The `REHEARSAL_HEADER` value of a rehearsal made with bearer `token` (`settings.hmac_key`);
    None without a key: then there is no rehearsal, every dry run is counted."""
    if not hmac_key:
        return None
    return hmac.new(hmac_key.encode(), b"pmtct-rehearsal\n" + token.encode(), hashlib.sha256).hexdigest()


def is_rehearsal(hmac_key: str | None, token: str, header: str | None) -> bool:
    """Whether `header` (the request's `REHEARSAL_HEADER`) proves a rehearsal of the platform's own."""
    proof = rehearsal_proof(hmac_key, token)
    return proof is not None and header is not None and hmac.compare_digest(proof, header)


class EventBatch(BaseModel):
    """The body of `POST /v1/events`. Each event is validated on its own (see the service's event
    schema in /openapi.json), so one bad event is a rejected result and cannot fail the batch."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(description=f"1 to {MAX_BATCH} events.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Machine-readable; docs/emr-intake.md.")


def _problem_response(status: int, codes: Sequence[Code]) -> dict[str, Any]:
    names = ", ".join(f"`{c.value}`" for c in codes)
    return {
        "description": f"{names}: " + " ".join(c.meaning for c in codes),
        "content": {PROBLEM_JSON: {"schema": ProblemDetails.model_json_schema()}},
    }


#: the `responses` of every intake route: the problems that refuse a whole batch
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: _problem_response(status, [c for c in Code if c.status == status])
    for status in sorted({c.status for c in Code if c.status is not None})
}

#: the `responses` of `GET /v1/events/{event_id}` (servicekit.pending.event_state)
STATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "`unauthorized`: no bearer token, or one that is invalid or expired.",
        "content": {PROBLEM_JSON: {"schema": ProblemDetails.model_json_schema()}},
    },
    403: {
        "description": "`insufficient_scope`: the token lacks the scope `events:write`.",
        "content": {PROBLEM_JSON: {"schema": ProblemDetails.model_json_schema()}},
    },
    404: {
        "description": "`unknown_event`: no event with this event_id is recorded or held for a facility of the"
        " token (an event rejected when it was posted is not kept).",
        "content": {PROBLEM_JSON: {"schema": ProblemDetails.model_json_schema()}},
    },
}


def document(
    app: Any,
    adapter: TypeAdapter[Any],
    name: str,
    batch_model: str = "EventBatch",
    forwarded: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Show EMR integrators the schema of each posted event in /openapi.json: the batch body
    declares its events loosely (each is validated on its own), so the union is added by hand.
    `forwarded`: schemas of further events the endpoint takes and passes on (the front door's
    infant events), named and described where they are defined."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        event = adapter.json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event.pop("$defs", {}))
        components[name] = event
        items: dict[str, Any] = {"$ref": f"#/components/schemas/{name}"}
        if forwarded:
            components.update(forwarded)
            items = {"anyOf": [items, *({"$ref": f"#/components/schemas/{n}"} for n in forwarded)]}
        components[batch_model]["properties"]["events"]["items"] = items
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


# --- fingerprint, duplicate, conflict --------------------------------------------------------------


class Fingerprinted(Protocol):
    """A posted event once validated by its service's model (a pydantic model)."""

    @property
    def occurred_at(self) -> datetime: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def fingerprint(key: str, event: Fingerprinted, subject_fields: Sequence[str] = (), subject: UUID | None = None) -> str:
    """The content fingerprint of a posted event, kept to tell a duplicate from a conflict.

    Canonical form: every field of the validated event as JSON (event_id, type, facility_id, the
    subject's ref or id — or, with `subject_fields`, the subject they resolve to — data; optional
    fields the EMR left out count as their default), keys
    sorted, with occurred_at as the instant in UTC, so an EMR that re-sends an event with another
    offset sends the same event. Keyed (HMAC-SHA256 with `PMTCT_HMAC_KEY`), so the fingerprint of
    an event with a name or a record number in it reveals nothing.
    """
    body = event.model_dump(mode="json")
    body["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat()
    if body.get("replaces", 0) is None:
        del body["replaces"]  # an event that replaces nothing: as fingerprinted before corrections existed
    if subject_fields:
        # the subject as resolved, whichever way the EMR named it (its platform id or its record
        # number): an honest resend naming it the other way is the same event, a duplicate
        for name in subject_fields:
            body.pop(name, None)
        body["subject"] = str(subject)
    return hmac.new(key.encode(), orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()


def is_conflict(fingerprint: str, recorded_fingerprint: str) -> bool:
    """Whether an event whose event_id is recorded already differs from the recorded one: a
    conflict (rejected); otherwise it is a duplicate, answered as the first time."""
    return not hmac.compare_digest(fingerprint, recorded_fingerprint)


# --- what a service supplies -----------------------------------------------------------------------

EventT = TypeVar("EventT", bound=PostedEvent)


@dataclass(frozen=True, slots=True)
class Candidate(Generic[EventT]):
    """A posted event that passed parsing, facility and time checks, waiting for the service."""

    index: int
    event: EventT
    fingerprint: str
    #: the fingerprint as first computed, from the fields as posted, when `fingerprint` was made
    #: from the resolved subject instead (`IntakeBatch.subject_fields`): records made before match it
    as_posted: str | None = None
    #: an event held before (servicekit.pending), decided again now that what it waited for may be known
    held: pending.Held | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event_id the service has recorded: its fingerprint and what it answered (`Accept.result`)."""

    fingerprint: str
    result: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Accept:
    """The service accepts the event; `result` is what it keeps to answer a duplicate later;
    `assigned`, the ids in it that accepting the event makes up (a dry run marks them provisional)."""

    result: Mapping[str, Any] = field(default_factory=dict)
    assigned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """The service rejects the event, with a code of the vocabulary; `extra` adds reply fields."""

    code: Code
    reason: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hold:
    """The service holds the event (`pending`) until one of `keys` is known: strings the service
    makes for what it waits for (`IntakeBatch.pending_keys` names the same ones when they are)."""

    keys: tuple[str, ...]
    code: Code
    reason: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of a batch's transaction knows: who posts, when, and under which batch id."""

    settings: ServiceSettings
    registry: FacilityRegistry
    principal: Principal
    now: datetime
    batch_id: UUID


class IntakeBatch(ABC, Generic[EventT]):
    """A service's side of one batch, made afresh for each try of its transaction."""

    #: the fields by which a posted event may name its subject (an id or a record number); with
    #: `subject_of`, the content fingerprint is taken of the subject they resolve to
    subject_fields: tuple[str, ...] = ()

    def subject_of(self, candidate: Candidate[EventT]) -> UUID | None:
        """The subject `candidate` names, as `resolve` found it (None: not found)."""
        return None

    @abstractmethod
    async def resolve(self, uow: Any, candidates: Sequence[Candidate[EventT]]) -> Mapping[UUID, Recorded]:
        """Load (and lock) the subjects the events name, in the unit of work (the service's own
        `UnitOfWork`); return the event_ids already recorded."""

    def order(self, candidate: Candidate[EventT]) -> Any:
        """The order events are decided in (by default, as posted; events held before go first, in
        the order they happened)."""
        return candidate.index

    #: whether `decide` may answer `Hold` (the service's schema has `intake_pending`)
    holds: bool = False

    def pending_keys(self, candidates: Sequence[Candidate[EventT]]) -> set[str]:
        """After `resolve`: the keys (`Hold.keys`) these events make known or touch, whose held
        events are decided with them."""
        return set()

    def hold_keys(self, candidates: Sequence[Candidate[EventT]]) -> set[str]:
        """Before `resolve`: every key (`Hold.keys`) these events could be held for, from the events
        alone. They are locked (`pending.lock_keys`) before the subjects are looked up, as `release`
        locks the keys it makes known: an event is never held by a look-up that missed a subject
        made known by a unit committing at the same time."""
        return set()

    def stored(self, candidate: Candidate[EventT]) -> dict[str, Any]:
        """What is kept of an event held (parsed again when it is released): by default all of it."""
        return candidate.event.model_dump(mode="json")

    async def restore(self, uow: Any, held: Sequence[pending.Held]) -> list[dict[str, Any] | None]:
        """The events to parse again from held rows (None: not now); by default as stored."""
        return [h.body for h in held]

    @abstractmethod
    def decide(self, candidate: Candidate[EventT]) -> Accept | Reject | Hold:
        """Check the domain rules against the batch's state; an accepted event changes that state
        (in memory: later events of the batch see it), nothing is written yet."""

    def answer(self, event: EventT, result: Mapping[str, Any]) -> dict[str, Any]:
        """The service's fields of the reply to an accepted event or its duplicate."""
        return dict(result)

    def amend(self, c: Candidate[EventT]) -> bool:
        """A recorded event posted again with other content: whether the difference is only in what
        the service keeps apart from the fact (enrolment: her names and phone, encrypted), which it
        then updates in memory and writes with the batch; the event is then a duplicate, not a
        conflict. By default nothing is (a conflict)."""
        return False

    @abstractmethod
    async def write(self, uow: Any) -> None:
        """Write what the batch accepted and publish its events to the unit (`uow.publish`, or
        aggregates that raise them); the pipeline commits the unit."""

    # --- corrections (servicekit.corrections has the whole account) ------------------------------

    #: where the service records the events it accepted; None: it takes no corrections
    store: corrections.EventStore | None = None

    @property
    def targets(self) -> Mapping[UUID, corrections.StoredEvent]:
        """The recorded events the batch's voids and replacements name (set before `resolve`)."""
        return self.__dict__.get("_targets", {})

    def target_subjects(self) -> set[UUID]:
        """The subjects of `targets`: `resolve` loads and locks them too (a void names no subject)."""
        return {t.subject_id for t in self.targets.values()}

    def void(self, v: corrections.Void) -> Accept | Reject:
        """Decide a void in memory (module servicekit.corrections); by default refused."""
        return Reject(Code.unknown_voided_event, "This service takes no corrections.")

    def unvoid(self, v: corrections.Void) -> None:
        """Undo `void` in memory: the replacement it was made for was refused."""

    def published(self, event_id: UUID, *events: Event) -> None:
        """In `write`: accepting `event_id` publishes `events` (their CloudEvent ids are kept)."""
        ledger = self.__dict__.setdefault("_ledger", corrections.Ledger())
        ledger.produced(event_id, events)


@dataclass(frozen=True)
class Intake(Generic[EventT, ResultT]):
    """What a service's intake endpoint is made of, besides its `IntakeBatch`."""

    #: the service (metrics label)
    service: str
    #: the union of the service's posted event models (discriminated by `type`)
    events: TypeAdapter[EventT]
    event_types: tuple[str, ...]
    #: how a reason names an event of this service: "an enrolment event"
    describes: str
    #: the service's per-event result (EventResult with its own fields) and batch reply
    result: type[ResultT]
    reply: type[BatchReply[ResultT]]

    async def record(
        self,
        begin: Callable[[Attempt], IntakeBatch[EventT]],
        units: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        settings: ServiceSettings,
        registry: FacilityRegistry,
        principal: Principal,
        raw_events: Sequence[Any],
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        counted: bool = True,
    ) -> BatchReply[ResultT]:
        """Take a posted batch through the pipeline (module docstring); `begin` makes the service's
        side of each try, `units` a new unit of work (`Runtime.begin`). `now` replaces the server
        time in the future check (tests). `dry_run`: every step, then roll back. `counted=False`:
        a dry run the platform runs for itself (`REHEARSAL_HEADER`), kept out of the metrics."""
        started = time.perf_counter()
        check_batch_size(len(raw_events), settings.intake_max_batch)
        now = now or settings.clock.now()
        tolerance = timedelta(seconds=settings.intake_future_tolerance_s)
        key = settings.hmac_key or ""
        results: dict[int, ResultT] = {}
        candidates: list[Candidate[EventT]] = []
        for index, raw in enumerate(raw_events):
            checked = self.check(index, raw, key, registry, principal, now, tolerance)
            if isinstance(checked, Candidate):
                candidates.append(checked)
            else:
                results[index] = checked
        batch_id = uuid4()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                this = Attempt(settings, registry, principal, now, batch_id)
                decided = await self._attempt(begin(this), units, this, candidates, key, dry_run=dry_run)
                break
            except DBAPIError as exc:
                state = sqlstate(exc)
                if state not in RETRYABLE_SQLSTATES:
                    raise
                INTAKE_RETRIES.labels(self.service, state).inc()
                log.info("%s batch raced a concurrent one (attempt %d, SQLSTATE %s)", self.service, attempt, state)
        else:
            raise Problem(503, Code.contention, "Concurrent batches kept touching the same subjects; retry this batch.")
        results.update(decided)
        ordered = [results[i] for i in sorted(results)]
        if counted or not dry_run:
            counter = INTAKE_DRY_RUN_EVENTS if dry_run else INTAKE_EVENTS
            for r in ordered:
                counter.labels(self.service, r.status.value, r.code.value if r.code else "").inc()
        if not dry_run:
            INTAKE_BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return self.reply.of(batch_id, ordered, dry_run=dry_run)

    async def _attempt(
        self,
        batch: IntakeBatch[EventT],
        units: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
        attempt: Attempt,
        candidates: Sequence[Candidate[EventT]],
        key: str = "",
        *,
        dry_run: bool = False,
    ) -> dict[int, ResultT]:
        """One try: resolve, decide every event (with the held ones it makes known), write,
        commit — in one unit of work, here only. A dry run does all of it and rolls back instead of
        committing (`UnitOfWork.rehearse`): nothing is held, nothing released."""
        async with units() as uow:
            uow.correlation_id = attempt.batch_id
            plain = [c for c in candidates if not corrections.is_void(c.event)]
            if batch.holds and not dry_run:
                await pending.lock_keys(uow.session, batch.hold_keys(plain))
            fixes = _Fixes(batch, attempt)
            await fixes.load(uow.session, candidates)
            if batch.holds:
                await fixes.load_held(uow.session, candidates)
            recorded = dict(await batch.resolve(uow, plain))
            recorded.update(fixes.recorded(candidates))
            waiting: dict[UUID, pending.Held] = {}
            held: list[Candidate[EventT]] = []
            book = _Book(attempt)
            if batch.holds:
                session = uow.session
                posted = [c.event.event_id for c in candidates]
                waiting = await pending.of_events(session, posted)
                # a held event this batch voids is not decided: the void settles it (`_Fixes.void`)
                exclude = [*posted, *fixes.held]
                rows = await pending.waiting_for(session, batch.pending_keys(plain), exclude=exclude)
                held = await self._held(batch, uow, rows, key, book)
                if held:
                    recorded.update(await batch.resolve(uow, [*plain, *held]))
            fixes.book = book
            results = self._decide(batch, candidates, held, recorded, waiting, key, book, fixes, dry_run=dry_run)
            await batch.write(uow)
            await fixes.write(uow)
            await book.write(uow.session)
            if dry_run:
                await uow.rehearse()
            else:
                await uow.commit()
        return results

    async def release(self, batch: IntakeBatch[EventT], uow: UnitOfWork, keys: Iterable[str]) -> int:
        """Decide the events held for any of `keys` in `uow` (a consumer's unit, when it learns a
        subject), through the same decide/write path, in the order they happened; the caller
        commits. Returns how many were decided (accepted, rejected, or held again)."""
        attempt = getattr(batch, "attempt", None)
        assert isinstance(attempt, Attempt), "an IntakeBatch that releases holds its Attempt as `attempt`"
        keys = sorted(set(keys))
        await pending.lock_keys(uow.session, keys)
        rows = await pending.waiting_for(uow.session, keys)
        if not rows:
            return 0
        key = attempt.settings.hmac_key or ""
        book = _Book(attempt)
        held = await self._held(batch, uow, rows, key, book)
        recorded = dict(await batch.resolve(uow, held)) if held else {}
        fixes = _Fixes(batch, attempt)
        self._decide(batch, [], held, recorded, {}, key, book, fixes)
        await batch.write(uow)
        await fixes.write(uow)
        await book.write(uow.session)
        return len(rows)

    async def _held(
        self, batch: IntakeBatch[EventT], uow: Any, rows: Sequence[pending.Held], key: str, book: _Book
    ) -> list[Candidate[EventT]]:
        """Held rows as candidates again, numbered below the batch's own (-N … -1, in the order
        they happened)."""
        out: list[Candidate[EventT]] = []
        bodies = await batch.restore(uow, rows) if rows else []
        for n, (row, body) in enumerate(zip(rows, bodies, strict=True)):
            if body is None:
                continue
            parsed = self.parse(n - len(rows), body, key)
            if isinstance(parsed, Candidate):
                out.append(Candidate(parsed.index, parsed.event, parsed.fingerprint, held=row))
            else:  # the event no longer parses (its contract changed while it was held)
                book.settled.append(pending.Settled(row.event_id, pending.REJECTED, parsed.code, parsed.reason, None))
        return out

    def _decide(
        self,
        batch: IntakeBatch[EventT],
        candidates: Sequence[Candidate[EventT]],
        held: Sequence[Candidate[EventT]],
        recorded: dict[UUID, Recorded],
        waiting: Mapping[UUID, pending.Held],
        key: str,
        book: _Book,
        fixes: _Fixes,
        *,
        dry_run: bool = False,
    ) -> dict[int, ResultT]:
        """Every event in the service's order: duplicate, conflict, or the service's verdict (a void
        or a replacement through `fixes` first); what becomes of held events (and of held events
        posted again) goes to `book`."""
        results: dict[int, ResultT] = {}
        #: a dry run's made-up ids, by event_id (an event posted twice in the batch is answered with them)
        assigned: dict[UUID, tuple[str, ...]] = {}
        if batch.subject_fields:
            candidates = [c if corrections.is_void(c.event) else self._of_subject(batch, c, key) for c in candidates]
            held = [self._of_subject(batch, c, key) for c in held]
        deferred: list[tuple[Candidate[EventT], pending.Held | None, bool, Hold]] = []
        taken = False
        for c in sorted([*candidates, *held], key=batch.order):
            e = c.event
            row = c.held or waiting.get(e.event_id)
            was_pending = row is not None and row.status == pending.PENDING
            prior = recorded.get(e.event_id)
            if prior is not None:
                if c.held is not None:  # recorded meanwhile (it was posted again and taken)
                    answer = self._result(c, EventStatus.accepted, batch.answer(e, prior.result))
                    book.settle(e.event_id, answer)
                elif (
                    is_conflict(c.fingerprint, prior.fingerprint)
                    and (c.as_posted is None or is_conflict(c.as_posted, prior.fingerprint))
                    and not batch.amend(c)
                ):
                    results[c.index] = self.result.conflict(c.index, e.event_id)
                else:
                    fields = _answer(batch, e, prior.result)
                    if dry_run and e.event_id in assigned:
                        fields["provisional_ids"] = list(assigned[e.event_id])
                    results[c.index] = self._result(c, EventStatus.duplicate, fields)
                continue
            if c.held is None and row is not None and was_pending:
                if is_conflict(c.fingerprint, row.fingerprint) and (
                    c.as_posted is None or is_conflict(c.as_posted, row.fingerprint)
                ):
                    results[c.index] = self.result.conflict(c.index, e.event_id)
                    continue
            if corrections.is_void(e):
                verdict: Accept | Reject | Hold = fixes.void(c, recorded)
            elif e.replaces is not None:
                verdict = fixes.replace(c, recorded)
            else:
                verdict = batch.decide(c)
            if isinstance(verdict, Hold):
                deferred.append((c, row, was_pending, verdict))
            else:
                taken = taken or isinstance(verdict, Accept)
                self._apply(batch, c, verdict, row, was_pending, recorded, results, assigned, book, dry_run)
        # an event held for what another event of this very pass then recorded (the positive test of
        # the same day as the ART start, decided after it) is decided once more before it is held
        for c, row, was_pending, verdict in deferred:
            again = batch.decide(c) if taken else verdict
            self._apply(batch, c, again, row, was_pending, recorded, results, assigned, book, dry_run)
        return results

    def _apply(
        self,
        batch: IntakeBatch[EventT],
        c: Candidate[EventT],
        verdict: Accept | Reject | Hold,
        row: pending.Held | None,
        was_pending: bool,
        recorded: dict[UUID, Recorded],
        results: dict[int, ResultT],
        assigned: dict[UUID, tuple[str, ...]],
        book: _Book,
        dry_run: bool,
    ) -> None:
        """What a verdict means for the answer, for the held rows and for what the batch recorded."""
        e = c.event
        if isinstance(verdict, Hold):
            again = any(h.event_id == e.event_id for h in book.holds)  # posted twice in this batch
            if not again:
                book.hold(c, verdict, batch.stored(c), row if was_pending else None)
            if c.held is None:
                # a resend of an event still held is a duplicate (same content), still held
                status = EventStatus.duplicate if was_pending or again else EventStatus.pending
                results[c.index] = self.result(
                    index=c.index,
                    event_id=str(e.event_id),
                    status=status,
                    code=verdict.code,
                    reason=verdict.reason,
                    **verdict.extra,
                )
        elif isinstance(verdict, Reject):
            rejection = self.result.rejection(c.index, e.event_id, verdict.code, verdict.reason, **verdict.extra)
            if c.held is not None or was_pending:
                book.settle(e.event_id, rejection)
            if c.held is None:
                results[c.index] = rejection
        else:
            recorded[e.event_id] = Recorded(c.fingerprint, verdict.result)
            fields = _answer(batch, e, verdict.result)
            if dry_run and verdict.assigned and c.held is None:
                assigned[e.event_id] = verdict.assigned
                fields["provisional_ids"] = list(verdict.assigned)
            answer = self._result(c, EventStatus.accepted, fields)
            if c.held is not None or was_pending:
                book.settle(e.event_id, answer)
            if c.held is None:
                results[c.index] = answer

    @staticmethod
    def _of_subject(batch: IntakeBatch[EventT], c: Candidate[EventT], key: str) -> Candidate[EventT]:
        subject = batch.subject_of(c)
        if subject is None:
            return c
        canonical = fingerprint(key, c.event, batch.subject_fields, subject)
        return Candidate(c.index, c.event, canonical, as_posted=c.fingerprint, held=c.held)

    def _result(self, c: Candidate[EventT], status: EventStatus, fields: dict[str, Any]) -> ResultT:
        return self.result(index=c.index, event_id=str(c.event.event_id), status=status, **fields)

    def check(
        self,
        index: int,
        raw: Any,
        key: str,
        registry: FacilityRegistry,
        principal: Principal,
        now: datetime,
        tolerance: timedelta = timedelta(0),
    ) -> Candidate[EventT] | ResultT:
        """Steps 2–4 for one event: parse, facility, not in the future (after `now` + `tolerance`,
        the clock drift allowed; no database)."""
        parsed = self.parse(index, raw, key)
        if not isinstance(parsed, Candidate):
            return parsed
        e = parsed.event
        if e.facility_id not in registry:
            return self.result.rejection(
                index, e.event_id, Code.unknown_facility, f"{e.facility_id!r} is not in the facility registry."
            )
        if not principal.may_act_for(e.facility_id):
            return self.result.rejection(
                index,
                e.event_id,
                Code.facility_forbidden,
                f"This client ({principal.client_id}) may not post events for {e.facility_id}.",
            )
        if e.occurred_at > now + tolerance:
            return self.result.rejection(
                index,
                e.event_id,
                Code.occurred_in_future,
                f"occurred_at {e.occurred_at.isoformat()} is more than {_span(tolerance)} after the server"
                f" time {now.astimezone(UTC).isoformat(timespec='seconds')} (the clock drift allowed).",
            )
        return parsed

    def parse(self, index: int, raw: Any, key: str) -> Candidate[EventT] | ResultT:
        """Strict parsing of one posted event: a candidate, or its rejection."""
        if not isinstance(raw, dict):
            return self.result.rejection(index, None, Code.invalid_value, "An event must be a JSON object.")
        event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
        tag = raw.get("type") if isinstance(raw.get("type"), str) else None
        where = _not_finite(raw)
        if where is not None:
            return self.result.rejection(
                index,
                event_id,
                Code.invalid_value,
                f"{where}: a number must be finite (not NaN, Infinity or beyond ±1.8e308).",
            )
        try:
            encoded = orjson.dumps(raw)
        except orjson.JSONEncodeError:
            return self.result.rejection(
                index,
                event_id,
                Code.invalid_value,
                "Integers must fit 64 bits, and text must be characters: a \\uD800-style escape alone (a lone"
                " surrogate) is none.",
            )
        try:
            event = self.events.validate_json(encoded, strict=True)
        except ValidationError as exc:
            code, reason = describe_invalid(exc, tag, self.event_types, self.describes)
            return self.result.rejection(index, event_id, code, reason)
        return Candidate(index, event, fingerprint(key, event))


def _answer(batch: IntakeBatch[Any], e: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """The service's fields of an accepted event's answer; a void of a held event says so (`reason`)."""
    if HELD_VOID in result:
        return {"reason": result[HELD_VOID]}
    return batch.answer(e, result)


#: the key of a void's kept answer when it voided a held event (`_Fixes.void_held`): its reason
HELD_VOID = "voided_held"


class _Fixes:
    """What one unit of work does about corrections (servicekit.corrections): the recorded events
    its voids and replacements name, the checks every service makes the same way, what it voids."""

    def __init__(self, batch: IntakeBatch[Any], attempt: Attempt) -> None:
        self.batch = batch
        self.attempt = attempt
        #: voided in this unit: voided event_id -> the event_id of the void or the replacement
        self.voided: dict[UUID, UUID] = {}
        #: the held rows the batch's voids name (any status), locked; and where held events go
        self.held: dict[UUID, pending.Held] = {}
        self.book: _Book | None = None

    async def load_held(self, session: Any, candidates: Sequence[Candidate[Any]]) -> None:
        """The held events the batch's voids name and the store does not hold (servicekit.pending),
        each row locked, and the keys it waits for (a release of it waits for this batch, or this
        batch for the release, and reads what it did)."""
        named = {
            c.event.data.voided_event_id
            for c in candidates
            if corrections.is_void(c.event) and c.event.data.voided_event_id not in self.batch.targets
        }
        rows = await pending.of_events(session, named)
        keys = {k for row in rows.values() if row.status == pending.PENDING for k in row.subject_keys}
        if keys:
            await pending.lock_keys(session, keys)
            rows = await pending.of_events(session, named)
        self.held = {i: row for i, row in rows.items() if self.attempt.principal.may_act_for(row.facility_id)}

    async def load(self, session: Any, candidates: Sequence[Candidate[Any]]) -> None:
        """The events named (and the voids' own event_ids, to answer a resend), locked."""
        store = self.batch.store
        named: set[UUID] = set()
        for c in candidates:
            e = c.event
            if corrections.is_void(e):
                named |= {e.data.voided_event_id, e.event_id}
            elif e.replaces is not None:
                named.add(e.replaces)
        found = await store.load(session, named) if store is not None and named else {}
        self.batch.__dict__["_targets"] = found

    def recorded(self, candidates: Sequence[Candidate[Any]]) -> dict[UUID, Recorded]:
        """The voids of the batch recorded before (a resend: duplicate or conflict), and those that
        voided a held event (kept in its row)."""
        targets = self.batch.targets
        found = {
            c.event.event_id: Recorded(targets[c.event.event_id].fingerprint, targets[c.event.event_id].result)
            for c in candidates
            if corrections.is_void(c.event) and c.event.event_id in targets
        }
        for c in candidates:
            row = self.held.get(c.event.data.voided_event_id) if corrections.is_void(c.event) else None
            kept = (row.result or {}) if row is not None and row.status == pending.VOIDED else {}
            if kept.get("voided_by") == str(c.event.event_id):
                found[c.event.event_id] = Recorded(kept["void_fingerprint"], {HELD_VOID: kept[HELD_VOID]})
        return found

    def target(self, target_id: UUID, recorded: Mapping[UUID, Recorded]) -> corrections.StoredEvent | Reject:
        t = self.batch.targets.get(target_id)
        if t is None or not self.attempt.principal.may_act_for(t.facility_id):
            if t is None and target_id in recorded:
                return Reject(
                    Code.unknown_voided_event,
                    f"Event {target_id} is accepted in this very batch: post its correction in a later batch.",
                )
            return Reject(
                Code.unknown_voided_event,
                f"No event {target_id} is recorded here for a facility this client acts for (an event answered"
                " pending is not recorded yet).",
            )
        if corrections.is_void(t):
            return Reject(
                Code.unknown_voided_event,
                f"Event {target_id} is an EventVoided: a void cannot be voided; post the voided event again with a"
                " new event_id.",
            )
        by = self.voided.get(t.event_id) or t.voided_by
        if by is not None:
            at = t.voided_at
            when = f" at {at.astimezone(UTC).isoformat(timespec='seconds')}" if at else " in this batch"
            return Reject(Code.already_voided, f"Event {target_id} was voided by event {by}{when}.")
        if not t.published_ids:
            return Reject(
                Code.unknown_voided_event,
                f"Event {target_id} was recorded before the platform kept what each event published; it cannot be"
                " voided through the intake.",
            )
        return t

    def void(self, c: Candidate[Any], recorded: Mapping[UUID, Recorded]) -> Accept | Reject:
        e = c.event
        if e.replaces is not None:
            return Reject(Code.invalid_value, "replaces: an EventVoided replaces nothing; leave replaces out.")
        row = self.held.get(e.data.voided_event_id)
        if e.data.voided_event_id not in self.batch.targets and row is not None:
            if row.status == pending.PENDING:
                return self.void_held(c, row)
            if row.status == pending.VOIDED:
                by = (row.result or {}).get("voided_by")
                return Reject(Code.already_voided, f"Event {row.event_id} was voided by event {by} while it was held.")
        t = self.target(e.data.voided_event_id, recorded)
        if isinstance(t, Reject):
            return t
        verdict = self.batch.void(corrections.Void(c, t, VoidReason(e.data.reason)))
        if isinstance(verdict, Accept):
            self.voided[t.event_id] = e.event_id
        return verdict

    def void_held(self, c: Candidate[Any], row: pending.Held) -> Accept:
        """A void of an event still held (`pending`: its subject, or an earlier fact, not known yet):
        the held event is voided and never applied; nothing was published for it, so nothing is
        published now. Its row says so (`voided`, by this void), and keeps the void's answer."""
        e = c.event
        reason = (
            f"Event {row.event_id} ({row.type}) was held ({row.code}), never applied: it is voided and will not be"
            " applied when what it waited for is posted."
        )
        assert self.book is not None
        self.book.settled.append(
            pending.Settled(
                row.event_id,
                pending.VOIDED,
                row.code,
                f"Voided by event {e.event_id} while it was held: {row.reason}",
                {"voided_by": str(e.event_id), "void_fingerprint": c.fingerprint, HELD_VOID: reason},
            )
        )
        self.held[row.event_id] = replace(row, status=pending.VOIDED)
        return Accept({HELD_VOID: reason})

    def replace(self, c: Candidate[Any], recorded: Mapping[UUID, Recorded]) -> Accept | Reject:
        e = c.event
        t = self.target(e.replaces, recorded)
        if isinstance(t, Reject):
            return t
        if t.type != e.type:
            return Reject(
                Code.replacement_type_mismatch,
                f"Event {t.event_id} is a {t.type}, this one a {e.type}: a replacement has the type of the event it"
                " replaces.",
            )
        if self.batch.subject_fields and self.batch.subject_of(c) != t.subject_id:
            return Reject(
                Code.replacement_subject_mismatch,
                f"Event {t.event_id} is recorded for another subject than this one names: void it and post this"
                " one without replaces.",
            )
        v = corrections.Void(c, t, VoidReason.entered_in_error, replaced_by=e.event_id)
        first = self.batch.void(v)
        if isinstance(first, Reject):
            return first
        verdict = self.batch.decide(c)
        if isinstance(verdict, Accept):
            self.voided[t.event_id] = e.event_id
            return verdict
        self.batch.unvoid(v)
        if isinstance(verdict, Hold):
            reason = f"A replacement is decided at once, never held: {verdict.reason}"
            return Reject(verdict.code, reason, verdict.extra)
        return verdict

    async def write(self, uow: UnitOfWork) -> None:
        """Mark what was voided; remember, once the outbox is written, what each accepted event
        published."""
        store = self.batch.store
        if store is None:
            return
        session = uow.session
        await store.mark_voided(session, self.voided, self.attempt.now)
        ledger: corrections.Ledger | None = self.batch.__dict__.get("_ledger")
        if ledger is None:
            return

        async def remember(envelopes: list[tuple[Any, Event]]) -> None:
            await store.remember_published(session, ledger.published(envelopes))

        uow.on_finish(remember)


class _Book:
    """What one unit of work does to held events: rows to hold (new, or again), rows settled."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.holds: list[pending.Hold] = []
        self.settled: list[pending.Settled] = []

    def hold(self, c: Candidate[Any], verdict: Hold, body: dict[str, Any], row: pending.Held | None) -> None:
        e = c.event
        self.holds.append(
            pending.Hold(
                event_id=e.event_id,
                facility_id=e.facility_id,
                type=str(getattr(e, "type", "")),
                occurred_at=e.occurred_at,
                subject_keys=verdict.keys,
                body=body,
                fingerprint=row.fingerprint if row is not None else (c.as_posted or c.fingerprint),
                code=verdict.code.value,
                reason=verdict.reason,
                posted_by=row.posted_by if row is not None else self.attempt.principal.client_id,
                batch_id=row.batch_id if row is not None else self.attempt.batch_id,
            )
        )

    def settle(self, event_id: UUID, result: EventResult) -> None:
        answer = result.model_dump(mode="json", exclude={"index", "event_id", "status", "code", "reason"})
        self.settled.append(
            pending.Settled(
                event_id,
                pending.ACCEPTED if result.status is EventStatus.accepted else pending.REJECTED,
                result.code.value if result.code else None,
                result.reason,
                {k: v for k, v in answer.items() if v is not None},
            )
        )

    async def write(self, session: Any) -> None:
        settings = self.attempt.settings
        await pending.hold(session, self.holds, self.attempt.now, timedelta(days=settings.intake_pending_ttl_days))
        await pending.settle(session, self.settled, self.attempt.now)


def check_batch_size(count: int, limit: int = MAX_BATCH) -> None:
    """Refuse an empty batch (422 `empty_batch`), or one too large to answer event by event within
    one request (413 `batch_too_large`)."""
    if count == 0:
        raise Problem(422, Code.empty_batch, "The batch has no events.")
    if count > limit:
        raise Problem(413, Code.batch_too_large, f"A batch holds at most {limit} events; this one has {count}.")


def _span(tolerance: timedelta) -> str:
    """A tolerance as a reason says it: `5 minutes`, `1 minute`, `30 seconds`."""
    seconds = int(tolerance.total_seconds())
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _not_finite(value: Any, where: str = "") -> str | None:
    """Where in a parsed JSON value a NaN or an Infinity is (the standard library's JSON reader
    takes `NaN`, `Infinity` and `1e400`), or None."""
    if isinstance(value, float):
        return (where or "event") if not math.isfinite(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _not_finite(v, f"{where}.{k}" if where else str(k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _not_finite(v, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def _where(loc: Sequence[Any], tag: str | None) -> str:
    parts = list(loc)
    if parts and tag is not None and parts[0] == tag:
        parts = parts[1:]  # pydantic names the union member first
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "event"


def describe_invalid(
    exc: ValidationError, tag: str | None, event_types: Sequence[str], describes: str
) -> tuple[Code, str]:
    """The code and reason of a structurally invalid event, from its first validation errors."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    if kind == "union_tag_invalid":
        expected = ", ".join(event_types)
        return Code.unknown_event_type, f"type {tag!r} is not {describes}; expected one of {expected}."
    if kind == "union_tag_not_found":
        return Code.missing_field, "type is required."
    problems = []
    for e in errors[:3]:
        where = _where(e["loc"], tag)
        if e["type"] == "extra_forbidden":
            problems.append(f"{where} is not a field of this event")
        elif e["type"] == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {e['msg']}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    code = {"extra_forbidden": Code.unknown_field, "missing": Code.missing_field}.get(kind, Code.invalid_value)
    return code, "; ".join(problems) + more + "."


from . import corrections  # noqa: E402  (it builds on this module's models)
