"""Unit tests of the referral rules (referrals/rules.py): pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from pmtct_events.enrolment import ClientEnrolled, HivStatus, HivTestRecorded, ViralLoadRecorded
from pmtct_events.followup import WithdrawalReason, WithdrawnAnnouncement
from pmtct_events.referrals import ReferralOrigin, ReferralService, ReferralStatus
from referrals import rules
from referrals.rules import Action, InvalidTransition

S = ReferralStatus
EXPECTED = {
    (S.requested, Action.accept): S.accepted,
    (S.requested, Action.complete): S.completed,
    (S.requested, Action.decline): S.declined,
    (S.requested, Action.cancel): S.cancelled,
    (S.requested, Action.expire): S.expired,
    (S.accepted, Action.complete): S.completed,
    (S.accepted, Action.cancel): S.cancelled,
    (S.accepted, Action.expire): S.expired,
    # the platform's withdrawal of an automatic referral its facts show was never needed (issue 19)
    (S.requested, Action.withdraw): S.cancelled,
    (S.accepted, Action.withdraw): S.cancelled,
    (S.expired, Action.withdraw): S.cancelled,
    # a referral a voided fact (entered in error) had closed, open again (issue 17); requested, or
    # accepted if it had been accepted (rules.reopened_status)
    (S.completed, Action.reopen): S.requested,
    (S.cancelled, Action.reopen): S.requested,
}
#: the platform's own corrections, which may start from a closed status
PLATFORM_CORRECTIONS = (Action.withdraw, Action.reopen)


@pytest.mark.parametrize("status", list(ReferralStatus))
@pytest.mark.parametrize("action", list(Action))
def test_the_lifecycle_allows_exactly_the_documented_transitions(status: ReferralStatus, action: Action) -> None:
    if (status, action) in EXPECTED:
        assert rules.next_status(status, action) is EXPECTED[(status, action)]
    else:
        with pytest.raises(InvalidTransition) as raised:
            rules.next_status(status, action)
        assert raised.value.current is status and status.value in str(raised.value)


def test_closed_statuses_are_terminal_but_for_the_platform_s_corrections() -> None:
    for status in set(ReferralStatus) - rules.OPEN:
        assert all((status, action) not in EXPECTED for action in Action if action not in PLATFORM_CORRECTIONS)
    assert [s for s in set(ReferralStatus) - rules.OPEN if (s, Action.withdraw) in EXPECTED] == [S.expired]
    # declined and expired ones were closed by people, or by nobody: no fact to void reopens them
    assert {s for s in ReferralStatus if (s, Action.reopen) in EXPECTED} == {S.completed, S.cancelled}


def test_a_referral_is_past_due_only_after_its_due_day() -> None:
    assert not rules.is_past_due(date(2026, 5, 1), date(2026, 5, 1))
    assert rules.is_past_due(date(2026, 5, 1), date(2026, 5, 2))


def test_an_automatic_referral_is_never_due_before_today() -> None:
    today = date(2026, 5, 10)
    assert rules.automatic_due_by(date(2026, 5, 1), today) == today
    assert rules.automatic_due_by(date(2026, 5, 20), today) == date(2026, 5, 20)


def test_the_art_wait_counts_from_the_diagnosis() -> None:
    diagnosed = datetime(2026, 5, 1, 9, tzinfo=UTC)
    assert rules.art_wait_due_at(diagnosed, 7) == diagnosed + timedelta(days=7)
    assert rules.art_wait_due_at(diagnosed, 0) == diagnosed


TESTED = datetime(2026, 5, 10, 9, tzinfo=UTC)


def hiv_test(result: str, before: HivStatus = HivStatus.unknown) -> HivTestRecorded:
    return HivTestRecorded(
        facility_id="F",
        occurred_at=TESTED,
        client_id=uuid4(),
        result=result,
        setting="anc",
        status_before=before,
    )


@pytest.mark.parametrize(
    "result, known_since, before, new",
    [
        ("positive", None, HivStatus.unknown, True),
        ("positive", None, HivStatus.negative, True),  # a seroconversion
        ("positive", TESTED - timedelta(days=30), HivStatus.positive, False),  # a retest of a known positive
        # a retest whose earlier positive arrived after it: enrolment said unknown, the facts say known
        ("positive", TESTED - timedelta(days=30), HivStatus.unknown, False),
        # enrolment said positive, but that fact was voided since: none stands before it
        ("positive", None, HivStatus.positive, True),
        ("positive", TESTED + timedelta(days=30), HivStatus.positive, True),  # the other positive is later
        ("positive", TESTED, HivStatus.unknown, True),  # one of the same instant is not before it
        ("negative", None, HivStatus.unknown, False),
        ("indeterminate", None, HivStatus.unknown, False),
    ],
)
def test_a_positive_test_is_a_new_diagnosis_when_no_fact_of_her_positive_status_stands_before_it(
    result: str, known_since: datetime | None, before: HivStatus, new: bool
) -> None:
    """From the facts referrals holds (`known_since`: the earliest other standing one), not from the
    `status_before` enrolment published as it knew it on arrival."""
    assert rules.is_new_hiv_diagnosis(hiv_test(result, before), known_since) is new


def enrolment(hiv_status: str, on_art: bool) -> ClientEnrolled:
    return ClientEnrolled(
        facility_id="F",
        occurred_at=TESTED,
        client_id=uuid4(),
        status_at_enrolment="pregnant",
        age_years=25,
        hiv_status=hiv_status,
        on_art=on_art,
    )


@pytest.mark.parametrize(
    "event, shows",
    [
        (hiv_test("positive"), rules.REASON_NEW_DIAGNOSIS),
        (hiv_test("negative"), None),
        (hiv_test("indeterminate"), None),
        (enrolment("positive", False), rules.REASON_KNOWN_POSITIVE_NOT_ON_ART),
        (enrolment("positive", True), ""),  # a fact of her status that starts no wait: she is on ART
        (enrolment("unknown", False), None),
        (enrolment("negative", False), None),
    ],
)
def test_which_events_are_facts_of_her_positive_status_and_the_wait_each_starts(event, shows) -> None:
    assert rules.positive_status_of(event) == shows


@pytest.mark.parametrize(
    "a, b, earlier",
    [
        ((TESTED, "new_hiv_diagnosis"), (TESTED + timedelta(days=1), "new_hiv_diagnosis"), True),
        ((TESTED + timedelta(days=1), "new_hiv_diagnosis"), (TESTED, "new_hiv_diagnosis"), False),
        # one instant: the same one wins in any arrival order
        ((TESTED, "known_positive_not_on_art"), (TESTED, "new_hiv_diagnosis"), True),
        ((TESTED, "new_hiv_diagnosis"), (TESTED, "known_positive_not_on_art"), False),
        ((TESTED, "new_hiv_diagnosis"), (TESTED, "new_hiv_diagnosis"), False),
    ],
)
def test_the_art_wait_counts_from_her_earliest_diagnosis(a, b, earlier) -> None:
    assert rules.earlier_diagnosis(a, b) is earlier


@pytest.mark.parametrize(
    "status, on_art, refer", [("positive", False, True), ("positive", True, False), ("unknown", False, False)]
)
def test_an_enrolment_needs_art_initiation_only_when_positive_and_not_on_art(
    status: str, on_art: bool, refer: bool
) -> None:
    event = ClientEnrolled(
        facility_id="F",
        occurred_at=datetime.now(UTC),
        client_id=uuid4(),
        status_at_enrolment="pregnant",
        age_years=25,
        hiv_status=status,
        on_art=on_art,
    )
    assert rules.enrolled_positive_without_art(event) is refer


def test_a_visit_meets_tracing_for_a_lost_client_but_not_for_an_overdue_test() -> None:
    assert rules.tracing_met_by_contact(rules.REASON_LOST_TO_FOLLOW_UP)
    assert not rules.tracing_met_by_contact(rules.test_overdue_reason("nat_6_weeks"))


@pytest.mark.parametrize(
    "rule, test, result, age_days, diagnostic, refer",
    [
        ("a first positive NAT: infant ART at once (WHO 2021 algorithm, note c)", "NAT", "positive", 42, True, True),
        ("a negative NAT: no ART", "NAT", "negative", 42, True, False),
        ("an indeterminate NAT: a repeat, not ART", "NAT", "indeterminate", 42, True, False),
        (
            "a positive antibody test before 18 months shows maternal antibodies: a NAT, never ART (WHO 2021)",
            "antibody",
            "positive",
            270,
            False,
            False,
        ),
        ("a positive antibody test from 18 months diagnoses: ART (WHO 2021)", "antibody", "positive", 760, True, True),
        ("a producer before `diagnostic`: a positive NAT still refers", "NAT", "positive", 42, None, True),
        ("a producer before `diagnostic`: a positive antibody test does not", "antibody", "positive", 760, None, False),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_an_infant_art_referral_follows_only_a_positive_result_that_can_diagnose(
    rule: str, test: str, result: str, age_days: int, diagnostic: bool | None, refer: bool
) -> None:
    from pmtct_events.followup import InfantTestResulted

    event = InfantTestResulted(
        facility_id="F",
        occurred_at=datetime.now(UTC),
        infant_id=uuid4(),
        client_id=uuid4(),
        test=test,
        result=result,
        confirmatory=False,
        age_days=age_days,
        diagnostic=diagnostic,
    )
    assert rules.infant_result_needs_art(event) is refer, rule


# --- the mother's rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "copies, suppressed, met",
    [
        pytest.param(40, True, True, id="a repeat viral load below the threshold: adherence support did its job"),
        pytest.param(2400, False, False, id="still unsuppressed: the support goes on"),
    ],
)
def test_adherence_support_is_met_by_a_suppressed_viral_load_who_2021_algorithm(
    copies: int, suppressed: bool, met: bool
) -> None:
    load = ViralLoadRecorded(
        client_id=uuid4(),
        facility_id="FAC-ZA-001",
        occurred_at=datetime(2026, 5, 1, tzinfo=UTC),
        copies_per_ml=copies,
        suppressed=suppressed,
    )
    assert rules.adherence_support_met_by(load) is met


def test_an_overdue_hiv_test_is_referred_for_testing_and_any_test_result_meets_it() -> None:
    assert rules.test_overdue_reason("mother_hiv_retest_third_trimester") == "mother_hiv_retest_third_trimester_overdue"
    assert rules.MET_BY_MOTHER_TEST == {ReferralService.hiv_testing}


# --- withdrawal (issue 19, "same facts, same figures") -------------------------------------------

A, W = ReferralOrigin.automatic, WithdrawnAnnouncement


@pytest.mark.parametrize(
    ("announcement", "kind", "need"),
    [
        pytest.param(
            W.ClientHivTestOverdue,
            "mother_hiv_test_anc1",
            (ReferralService.hiv_testing, "mother_hiv_test_anc1_overdue"),
            id="an overdue HIV test: its HIV-testing referral",
        ),
        pytest.param(
            W.InfantTestOverdue,
            "nat_6_weeks",
            (ReferralService.community_tracing, "nat_6_weeks_overdue"),
            id="an overdue infant test: its tracing",
        ),
        pytest.param(
            W.ClientLostToFollowUp,
            None,
            (ReferralService.community_tracing, "lost_to_follow_up"),
            id="a loss to follow-up: its tracing",
        ),
        pytest.param(W.ClientViralLoadOverdue, "mother_viral_load", None, id="an overdue viral load: no referral"),
        pytest.param(
            W.InfantCareOverdue,
            "hei_visit",
            (ReferralService.community_tracing, "hei_visit_overdue"),
            id="a missed HEI visit: its tracing",
        ),
        pytest.param(
            W.InfantCareOverdue, "infant_cotrimoxazole", None, id="a cotrimoxazole start not recorded: not traced"
        ),
        pytest.param(
            W.InfantTestDue,
            "nat_6_weeks",
            (ReferralService.eid_sample_collection, "nat_6_weeks_due"),
            id="an infant test due: its sample collection",
        ),
        pytest.param(
            W.ClientAdherenceSupportDue,
            "mother_adherence_support",
            (ReferralService.psychosocial_support, "unsuppressed_viral_load"),
            id="adherence support due: its psychosocial support",
        ),
        pytest.param(W.InfantCareDue, "hei_visit", None, id="an HEI visit due: no referral"),
        pytest.param(W.ClientHivTestDue, "mother_hiv_test_anc1", None, id="an HIV test due: no referral"),
        pytest.param(W.ClientViralLoadDue, "mother_viral_load", None, id="a viral load due: no referral"),
    ],
)
def test_a_withdrawn_announcement_names_the_automatic_referral_it_opened(
    announcement: WithdrawnAnnouncement, kind: str | None, need: tuple[ReferralService, str] | None
) -> None:
    assert rules.withdrawn_need(announcement, kind) == need


@pytest.mark.parametrize(
    ("origin", "status", "withdrawn"),
    [
        pytest.param(A, S.requested, True, id="automatic, open: withdrawn"),
        pytest.param(A, S.accepted, True, id="automatic, accepted: withdrawn"),
        pytest.param(A, S.expired, True, id="automatic, expired before the facts arrived: withdrawn"),
        pytest.param(A, S.completed, False, id="a completed referral stays completed"),
        pytest.param(A, S.declined, False, id="a declined referral stays declined"),
        pytest.param(A, S.cancelled, False, id="a cancelled referral stays as it was cancelled"),
        pytest.param(ReferralOrigin.manual, S.requested, False, id="a manual referral is never withdrawn"),
        pytest.param(ReferralOrigin.manual, S.expired, False, id="nor a manual expired one"),
    ],
)
def test_only_the_platforms_referrals_not_closed_by_people_are_withdrawn(
    origin: ReferralOrigin, status: ReferralStatus, withdrawn: bool
) -> None:
    assert rules.may_withdraw(origin, status) is withdrawn


NEED = date(2026, 8, 24)


@pytest.mark.parametrize(
    ("met_on", "need_on", "closes"),
    [
        pytest.param(date(2026, 8, 5), NEED, False, id="a fact before the need's day: follow-up's to withdraw"),
        pytest.param(date(2026, 8, 23), NEED, False, id="the day before"),
        pytest.param(NEED, NEED, True, id="on the day: the need was real, the fact closes it"),
        pytest.param(date(2026, 9, 1), NEED, True, id="after it: loop closure"),
        pytest.param(date(2020, 1, 1), None, True, id="a referral with no need day: any fact, as before"),
    ],
)
def test_a_fact_closes_a_referral_only_from_the_day_of_its_need(
    met_on: date, need_on: date | None, closes: bool
) -> None:
    assert rules.closes_on(met_on, need_on) is closes


# --- corrections (issue 17: a fact voided, entered in error) ---------------------------------------


@pytest.mark.parametrize(
    ("status", "accepted", "reopened"),
    [
        pytest.param(S.completed, False, S.requested, id="met before anyone accepted it: requested again"),
        pytest.param(S.completed, True, S.accepted, id="accepted, then met: accepted again"),
        pytest.param(S.cancelled, False, S.requested, id="cancelled by a death entered in error: requested"),
        pytest.param(S.cancelled, True, S.accepted, id="accepted, then cancelled by it: accepted"),
    ],
)
def test_a_referral_reopens_to_the_status_it_had_before_the_voided_fact_closed_it(
    status: ReferralStatus, accepted: bool, reopened: ReferralStatus
) -> None:
    assert rules.reopened_status(status, accepted) is reopened


@pytest.mark.parametrize("status", [S.requested, S.accepted, S.declined, S.expired])
def test_only_a_completed_or_cancelled_referral_reopens(status: ReferralStatus) -> None:
    assert not rules.may_reopen(status)
    with pytest.raises(InvalidTransition):
        rules.reopened_status(status, accepted=False)


@pytest.mark.parametrize(
    ("origin", "status", "cancelled"),
    [
        pytest.param(A, S.requested, True, id="automatic, open: cancelled entered_in_error"),
        pytest.param(A, S.accepted, True, id="automatic, accepted: cancelled"),
        pytest.param(A, S.expired, True, id="automatic, expired for a need that never was: cancelled"),
        pytest.param(A, S.completed, False, id="a completed referral stays completed"),
        pytest.param(A, S.declined, False, id="a declined referral stays declined"),
        pytest.param(ReferralOrigin.manual, S.requested, False, id="a manual referral is never touched"),
    ],
)
def test_a_void_cancels_only_the_platform_s_referrals_not_closed_by_people(
    origin: ReferralOrigin, status: ReferralStatus, cancelled: bool
) -> None:
    assert rules.may_cancel_in_error(origin, status) is cancelled


@pytest.mark.parametrize(
    ("ended", "voided_type", "after"),
    [
        pytest.param("died", "ClientDied", None, id="a death entered in error: followed again"),
        pytest.param("transferred_out", "ClientTransferredOut", None, id="a transfer entered in error"),
        pytest.param("died", "DeliveryRecorded", None, id="a maternal death at a voided delivery"),
        pytest.param("discharged", "InfantFinalOutcomeRecorded", None, id="an infant's discharge"),
        pytest.param("died", "ClientTransferredOut", "died", id="another end stays"),
        pytest.param("died", "HivTestRecorded", "died", id="a test voided: she is still dead"),
        pytest.param(None, "ClientDied", None, id="not ended: nothing to undo"),
    ],
)
def test_a_voided_death_or_transfer_no_longer_ends_her(ended: str | None, voided_type: str, after: str | None) -> None:
    assert rules.ended_after_void(ended, voided_type) == after


def test_a_voided_art_start_no_longer_puts_her_on_art() -> None:
    since = datetime(2026, 5, 1, tzinfo=UTC)
    assert rules.on_art_after_void(since, "ArtInitiated") is None
    assert rules.on_art_after_void(since, "InfantArtInitiated") is None
    assert rules.on_art_after_void(since, "HivTestRecorded") == since
    assert rules.on_art_after_void(None, "ArtInitiated") is None


def test_an_announcement_withdrawn_as_entered_in_error_cancels_its_referral_so() -> None:
    assert rules.withdrawal_outcome(WithdrawalReason.entered_in_error) == "entered_in_error"
    assert rules.withdrawal_outcome(WithdrawalReason.met_before_overdue) == "not_needed"
    assert rules.withdrawal_outcome(WithdrawalReason.seen_before_lost) == "not_needed"
    assert rules.withdrawal_outcome(WithdrawalReason.no_longer_required) == "not_needed"
