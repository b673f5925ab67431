"""Referral rules as pure functions: the lifecycle, when an automatic referral is due, and which
event meets which need. Every referral ends closed (completed, declined, cancelled or expired):
closing the loop, not opening the referral, is what the programme is for.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from pmtct_events.enrolment import ClientEnrolled, HivStatus, HivTestRecorded, HivTestResult, ViralLoadRecorded
from pmtct_events.followup import InfantTest, InfantTestResulted, TestResult, WithdrawalReason, WithdrawnAnnouncement
from pmtct_events.referrals import ReferralOrigin, ReferralService, ReferralStatus


class Action(StrEnum):
    accept = "accept"
    complete = "complete"
    decline = "decline"
    cancel = "cancel"
    expire = "expire"
    #: the platform takes back an automatic referral that later facts show was never needed (it
    #: becomes `cancelled`, with the reason); never a person's action, never a manual referral
    withdraw = "withdraw"
    #: the platform takes back the closure of an automatic referral by a fact that was voided
    #: (entered in error): it is open again as before (`reopened_status`); never a person's action
    reopen = "reopen"


OPEN: frozenset[ReferralStatus] = frozenset({ReferralStatus.requested, ReferralStatus.accepted})

#: action -> (the statuses it may start from, the status it leads to). Requested -> accepted ->
#: completed is the usual path; a referral may also be completed straight from `requested` (the
#: need was met before anybody accepted it, e.g. a backfilled test result). Only the receiving
#: side declines, and only before accepting; after that the referrer can still cancel it.
TRANSITIONS: dict[Action, tuple[frozenset[ReferralStatus], ReferralStatus]] = {
    Action.accept: (frozenset({ReferralStatus.requested}), ReferralStatus.accepted),
    Action.complete: (OPEN, ReferralStatus.completed),
    Action.decline: (frozenset({ReferralStatus.requested}), ReferralStatus.declined),
    Action.cancel: (OPEN, ReferralStatus.cancelled),
    Action.expire: (OPEN, ReferralStatus.expired),
    # an expired referral too: it expired because nobody closed a need that, as it turns out, was met
    # before it was made. A completed or declined one stays as it is (its loop was closed by people).
    Action.withdraw: (OPEN | {ReferralStatus.expired}, ReferralStatus.cancelled),
    # a referral a voided fact closed: met (an ART start entered in error) or cancelled (a death, a
    # transfer entered in error). Requested again, or accepted if it had been (`reopened_status`).
    Action.reopen: (frozenset({ReferralStatus.completed, ReferralStatus.cancelled}), ReferralStatus.requested),
}

#: actions whose caller must give the reason as an outcome code
NEEDS_OUTCOME: frozenset[Action] = frozenset({Action.decline, Action.cancel, Action.withdraw})


class InvalidTransition(Exception):
    def __init__(self, action: Action, current: ReferralStatus) -> None:
        super().__init__(f"A {current.value} referral cannot be {PAST[action]}.")
        self.action = action
        self.current = current


PAST = {
    Action.accept: "accepted",
    Action.complete: "completed",
    Action.decline: "declined",
    Action.cancel: "cancelled",
    Action.expire: "expired",
    Action.withdraw: "withdrawn",
    Action.reopen: "reopened",
}


def next_status(current: ReferralStatus, action: Action) -> ReferralStatus:
    """The status `action` leads to from `current`; InvalidTransition if it is not allowed."""
    allowed_from, to = TRANSITIONS[action]
    if current not in allowed_from:
        raise InvalidTransition(action, current)
    return to


def reopened_status(current: ReferralStatus, accepted: bool) -> ReferralStatus:
    """The status a referral reopens to: the one it had before the voided fact closed it. A referral
    is closed by a fact only from an open status, and `accepted` is known by its `accepted_at`."""
    to = next_status(current, Action.reopen)
    return ReferralStatus.accepted if accepted else to


def is_past_due(due_by: date, today: date) -> bool:
    """A referral expires the day after its due-by date: the whole due day still counts."""
    return due_by < today


def automatic_due_by(target: date, today: date) -> date:
    """An automatic referral is due by `target`, but never before today: a backfilled event must
    not open a referral that is already expired."""
    return max(target, today)


# --- automatic referrals -------------------------------------------------------------------------


def is_new_hiv_diagnosis(event: HivTestRecorded, known_positive_since: datetime | None) -> bool:
    """A positive test of a woman not known positive before it: she needs ART (WHO: start ART as
    soon as possible after diagnosis, ideally the same day). `known_positive_since`: when the
    earliest other standing fact of her positive status happened (a positive test, an enrolment as
    known positive: `positive_status_of`), whatever order they arrived in; the event's own
    `status_before` is what enrolment knew when it arrived, and is not read."""
    if event.result != HivTestResult.positive:
        return False
    return known_positive_since is None or known_positive_since >= event.occurred_at


def positive_status_of(event: ClientEnrolled | HivTestRecorded) -> str | None:
    """Whether the event is a fact of her positive status, and the ART wait it starts if it is her
    earliest (its reason code; "" for a fact that starts none, an enrolment on ART): a positive
    test, a new diagnosis; an enrolment as known positive, not on ART. None: no such fact."""
    if isinstance(event, HivTestRecorded):
        return REASON_NEW_DIAGNOSIS if event.result == HivTestResult.positive else None
    if event.hiv_status != HivStatus.positive:
        return None
    return "" if event.on_art else REASON_KNOWN_POSITIVE_NOT_ON_ART


def earlier_diagnosis(a: tuple[datetime, str], b: tuple[datetime, str]) -> bool:
    """Whether diagnosis `a` (when it happened, its reason code) comes before `b`: the ART wait
    counts from her earliest, whichever arrived first (at one instant, by reason code, so that the
    same facts give the same wait in any order; `repository._SCHEDULE_ART_WAITS` keeps the same)."""
    return a < b


def enrolled_positive_without_art(event: ClientEnrolled) -> bool:
    """A woman enrolled as known positive but not on ART."""
    return event.hiv_status == HivStatus.positive and not event.on_art


def infant_result_needs_art(event: InfantTestResulted) -> bool:
    """An infant-ART referral follows a positive result that can diagnose HIV: a NAT at any age,
    or an antibody test from the age antibodies are diagnostic (follow-up says so in `diagnostic`,
    by its clinical preset; 18 months by WHO). WHO 2021 infant diagnosis algorithm, note c: start
    ART without delay at the first positive NAT, and retest to confirm at the same time. A positive
    antibody test before 18 months shows maternal antibodies: it calls for a NAT, never for ART."""
    if event.result is not TestResult.positive:
        return False
    if event.diagnostic is not None:
        return event.diagnostic
    return event.test is InfantTest.NAT


def art_wait_due_at(diagnosed_at: datetime, wait_days: float) -> datetime:
    """When an ART-initiation referral opens for a diagnosis nobody has started ART for: the
    configured number of days after the diagnosis (default 7, `PMTCT_ART_INITIATION_WAIT_DAYS`).
    Counted from when the diagnosis happened, not from when the platform heard of it, so a
    diagnosis posted late by an offline clinic is referred at once if its wait is already over."""
    return diagnosed_at + timedelta(days=wait_days)


def adherence_support_met_by(event: ViralLoadRecorded) -> bool:
    """Enhanced adherence support after an unsuppressed viral load has done its job when a later
    viral load is suppressed (WHO 2021 consolidated guidelines, viral-load testing algorithm: after
    adherence support, a repeat VL below the threshold means she stays on her regimen)."""
    return event.suppressed


#: reason codes of automatic referrals
REASON_LOST_TO_FOLLOW_UP = "lost_to_follow_up"
REASON_NEW_DIAGNOSIS = "new_hiv_diagnosis"
REASON_KNOWN_POSITIVE_NOT_ON_ART = "known_positive_not_on_art"
REASON_POSITIVE_INFANT_TEST = "positive_infant_test"
#: a viral load at or above the unsuppressed threshold (follow-up's ClientAdherenceSupportDue)
REASON_UNSUPPRESSED_VIRAL_LOAD = "unsuppressed_viral_load"


def test_due_reason(kind: str) -> str:
    return f"{kind}_due"


def test_overdue_reason(kind: str) -> str:
    return f"{kind}_overdue"


#: outcome codes of automatic closure
OUTCOME_TEST_RESULTED = "test_resulted"
OUTCOME_ART_INITIATED = "art_initiated"
OUTCOME_RETURNED_TO_CARE = "returned_to_care"
OUTCOME_DIED = "died"
OUTCOME_TRANSFERRED_OUT = "transferred_out"
#: the facility discharged the infant from HEI follow-up
OUTCOME_DISCHARGED = "discharged"
OUTCOME_VIRAL_LOAD_SUPPRESSED = "viral_load_suppressed"
#: an automatic referral withdrawn: the facts show its need was met before the day it was raised for
#: (follow-up's AnnouncementWithdrawn). Cancelled with this reason, it is out of REFERRAL_COMPLETION.
OUTCOME_NOT_NEEDED = "not_needed"

#: what a mother's HIV test meets: the test she was referred for (any result: an inconclusive one
#: has its own retest, planned by follow-up)
MET_BY_MOTHER_TEST: frozenset[ReferralService] = frozenset({ReferralService.hiv_testing})

#: what an infant's test result meets: the sample was collected, and the infant was found
MET_BY_INFANT_RESULT: frozenset[ReferralService] = frozenset(
    {ReferralService.eid_sample_collection, ReferralService.community_tracing}
)


#: the infant's care items whose miss is traced (follow-up's InfantCareOverdue): a missed HEI
#: clinic visit. A cotrimoxazole start not recorded is a record for the clinic to complete (the
#: worklist has it), not a missing child: it is not traced.
TRACED_CARE_KINDS: frozenset[str] = frozenset({"hei_visit"})


def care_overdue_is_traced(kind: str) -> bool:
    return kind in TRACED_CARE_KINDS


def tracing_met_by_contact(reason_code: str) -> bool:
    """Any recorded contact (a visit, a test, a delivery, a record of care) brings back a client
    traced because she was lost to follow-up, and an infant traced for a missed HEI visit. Tracing
    for an overdue infant test is met only by the test result."""
    return reason_code == REASON_LOST_TO_FOLLOW_UP or reason_code in {
        test_overdue_reason(kind) for kind in TRACED_CARE_KINDS
    }


# --- withdrawal ------------------------------------------------------------------------------------


def withdrawn_need(announcement: WithdrawnAnnouncement, kind: str | None) -> tuple[ReferralService, str] | None:
    """The automatic referral (need, reason code) that follow-up's announcement opened, which its
    withdrawal (AnnouncementWithdrawn) cancels: each announcement the handlers refer on, by the same
    reason code they open it with. An overdue HIV test's HIV-testing referral; an infant test due,
    its sample collection; an overdue infant test's tracing, and a missed HEI visit's
    (`care_overdue_is_traced`); a loss to follow-up's tracing; adherence support due after an
    unsuppressed viral load, its psychosocial support. None: the announcement opens no referral
    (viral loads due or overdue, HIV tests and care due, an untraced care item: the worklist's)."""
    if announcement is WithdrawnAnnouncement.ClientLostToFollowUp:
        return ReferralService.community_tracing, REASON_LOST_TO_FOLLOW_UP
    if announcement is WithdrawnAnnouncement.ClientAdherenceSupportDue:
        return ReferralService.psychosocial_support, REASON_UNSUPPRESSED_VIRAL_LOAD
    if kind is None:
        return None
    if announcement is WithdrawnAnnouncement.ClientHivTestOverdue:
        return ReferralService.hiv_testing, test_overdue_reason(kind)
    if announcement is WithdrawnAnnouncement.InfantTestOverdue:
        return ReferralService.community_tracing, test_overdue_reason(kind)
    if announcement is WithdrawnAnnouncement.InfantCareOverdue and care_overdue_is_traced(kind):
        return ReferralService.community_tracing, test_overdue_reason(kind)
    if announcement is WithdrawnAnnouncement.InfantTestDue:
        return ReferralService.eid_sample_collection, test_due_reason(kind)
    return None


def may_withdraw(origin: ReferralOrigin, status: ReferralStatus) -> bool:
    """Only the platform's own referrals are withdrawn, and only while their loop is not closed by
    people: open, or expired. A completed referral stays completed (its need was met, and counted);
    a declined one stays declined; a manual referral is never withdrawn automatically."""
    return origin is ReferralOrigin.automatic and status in TRANSITIONS[Action.withdraw][0]


def closes_on(met_on: date, need_on: date | None) -> bool:
    """Whether a fact dated `met_on` closes a referral opened for a need of the day `need_on` (an item
    overdue on that day, a loss to follow-up from that day; None for other referrals: any fact does).
    A fact dated before it does not complete it: either it met the need in time, and follow-up
    withdraws the announcement and with it the referral (not needed), or it did not meet it at all (a
    test of another window, a visit before her last one), and she still needs it."""
    return need_on is None or met_on >= need_on


# --- corrections (issue 17) ------------------------------------------------------------------------

#: a referral cancelled because the fact it was opened for was voided, entered in error (or the
#: announcement it was opened for was withdrawn as such); out of REFERRAL_COMPLETION, like not_needed
OUTCOME_ENTERED_IN_ERROR = "entered_in_error"

#: the subject's end (`Subject.ended`) each voided intake type may have set: voided, she is followed
#: again (a referral it cancelled is reopened by its `closed_by_event_id`)
_ENDED_BY: dict[str, frozenset[str]] = {
    "ClientDied": frozenset({OUTCOME_DIED}),
    "ClientTransferredOut": frozenset({OUTCOME_TRANSFERRED_OUT}),
    "DeliveryRecorded": frozenset({OUTCOME_DIED}),  # a maternal death at delivery
    "InfantFinalOutcomeRecorded": frozenset({OUTCOME_DIED, OUTCOME_TRANSFERRED_OUT, OUTCOME_DISCHARGED}),
}

#: the intake types whose acceptance put the subject on ART (`Subject.on_art_since`)
_ART_STARTED_BY: frozenset[str] = frozenset({"ArtInitiated", "InfantArtInitiated", "ClientEnrolled"})


def ended_after_void(ended: str | None, voided_type: str) -> str | None:
    """Her end once the voided event of `voided_type` is taken away: a death or transfer entered in
    error no longer ends her follow-up; any other end stays."""
    return None if ended in _ENDED_BY.get(voided_type, frozenset()) else ended


def on_art_after_void(on_art_since: datetime | None, voided_type: str) -> datetime | None:
    """An ART start entered in error, for a subject whose ART starts were not recorded one by one
    (before migration 0011; otherwise the earliest start that stands counts, `stream.voided`): she
    is not on ART because of it (the ART referral it met is reopened)."""
    return None if voided_type in _ART_STARTED_BY else on_art_since


def may_cancel_in_error(origin: ReferralOrigin, status: ReferralStatus) -> bool:
    """An automatic referral opened for a voided fact is taken back while its loop is not closed by
    people, like a withdrawal (`may_withdraw`): open, or expired (it expired for a need that never
    was). A completed or declined one stays; a manual referral is never touched automatically."""
    return may_withdraw(origin, status)


def may_reopen(status: ReferralStatus) -> bool:
    """A referral closed by a voided fact (completed by it, or cancelled by a death or transfer it
    recorded: the platform's own closure, remembered as `closed_by_event_id`) is reopened, manual or
    automatic: the platform takes back what it did. A referral closed by a person is never reopened."""
    return status in TRANSITIONS[Action.reopen][0]


def withdrawal_outcome(reason: WithdrawalReason) -> str:
    """The outcome code of a referral withdrawn with follow-up's announcement: `entered_in_error`
    when the fact the announcement rested on was voided, `not_needed` when later facts show its
    need was met in time."""
    return OUTCOME_ENTERED_IN_ERROR if reason is WithdrawalReason.entered_in_error else OUTCOME_NOT_NEEDED
