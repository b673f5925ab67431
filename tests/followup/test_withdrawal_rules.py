"""The withdraw rule (issue 19, "same facts, same figures"; docs/clinical-rules.md, "Withdrawn
announcements"): an overdue or a loss that facts posted later show was not needed is withdrawn, and
the day a subject became lost is the clinical day, not the day a timer ran. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from followup import announcements
from followup.cases import InfantCase, MotherCase, Pregnancy, RecordedEvent
from followup.eid_schedule import EidRules, InfantFacts
from followup.mother_schedule import MotherRules
from followup.schedule import (
    Attendance,
    Item,
    Status,
    check_lost,
    due_snapshot,
    overdue_snapshot,
    unneeded_items,
    voided_items,
    withdrawn_items,
)
from pmtct_events.enrolment import HivTestResult
from pmtct_events.followup import (
    AnnouncementWithdrawn,
    ClientLostToFollowUp,
    InfantTest,
    ScheduleKind,
    SubjectType,
    WithdrawalReason,
    WithdrawnAnnouncement,
)
from servicekit.clock import Clock

CLOCK = Clock.fixed(datetime(2026, 12, 1, 9, tzinfo=UTC))
OVERDUE = date(2026, 8, 24)
W = WithdrawnAnnouncement


def item(status: Status, satisfied_on: date | None = None, overdue_on: date = OVERDUE) -> Item:
    return Item(
        uuid4(),
        ScheduleKind.mother_hiv_test_anc1,
        None,
        date(2026, 8, 3),
        date(2026, 8, 10),
        overdue_on,
        status,
        satisfied_on,
    )


@pytest.mark.parametrize(
    ("before", "after", "satisfied_on", "withdrawn"),
    [
        pytest.param(
            Status.overdue, Status.satisfied, date(2026, 8, 5), True, id="announced overdue, met before: withdrawn"
        ),
        pytest.param(Status.overdue, Status.satisfied, date(2026, 8, 23), True, id="met the day before it was overdue"),
        pytest.param(Status.overdue, Status.satisfied, OVERDUE, False, id="met on its overdue day: it was overdue"),
        pytest.param(Status.overdue, Status.satisfied, date(2026, 9, 1), False, id="met late: the overdue stands"),
        pytest.param(Status.due, Status.satisfied, date(2026, 8, 5), False, id="never announced overdue: nothing"),
        pytest.param(Status.overdue, Status.cancelled, None, False, id="cancelled (superseded, died): not met"),
        pytest.param(Status.overdue, Status.overdue, None, False, id="still overdue"),
    ],
)
def test_an_overdue_is_withdrawn_only_when_the_facts_met_it_before_its_overdue_day(
    before: Status, after: Status, satisfied_on: date | None, withdrawn: bool
) -> None:
    one = item(before)
    announced = overdue_snapshot([one])
    one.status, one.satisfied_on = after, satisfied_on  # what the facts applied since made of it
    assert (withdrawn_items(announced, [one]) == [(one, OVERDUE)]) is withdrawn


VOIDED = date(2026, 9, 2)


@pytest.mark.parametrize(
    ("before", "after", "withdrawn"),
    [
        pytest.param(Status.overdue, Status.cancelled, ["due", "overdue"], id="announced due, then overdue: both"),
        pytest.param(Status.due, Status.cancelled, ["due"], id="announced due only: its due"),
        pytest.param(Status.planned, Status.cancelled, [], id="never announced: nothing"),
        pytest.param(Status.due, Status.due, [], id="the facts that stand still call for it: it stays announced"),
        pytest.param(Status.due, Status.satisfied, [], id="met: nothing to take back in error"),
    ],
)
def test_a_correction_withdraws_every_announcement_of_an_item_it_cancels(
    before: Status, after: Status, withdrawn: list[str]
) -> None:
    one = item(before)
    due, overdue = due_snapshot([one]), overdue_snapshot([one])
    one.status = after  # what the replay of the facts that stand made of it
    found = [("due", d) for _, d in voided_items(due, [one])] + [
        ("overdue", d) for _, d in voided_items(overdue, [one])
    ]
    assert found == [(w, {"due": one.window_start, "overdue": OVERDUE}[w]) for w in withdrawn]


@pytest.mark.parametrize(
    ("kind", "test", "announcement"),
    [
        pytest.param(ScheduleKind.nat_6_weeks, InfantTest.NAT, W.InfantTestDue, id="an infant test"),
        pytest.param(ScheduleKind.hei_visit, None, W.InfantCareDue, id="an HEI visit"),
        pytest.param(ScheduleKind.infant_cotrimoxazole, None, W.InfantCareDue, id="the cotrimoxazole start"),
        pytest.param(ScheduleKind.mother_hiv_test_anc1, None, W.ClientHivTestDue, id="her HIV test"),
        pytest.param(ScheduleKind.mother_viral_load, None, W.ClientViralLoadDue, id="her viral load"),
        pytest.param(
            ScheduleKind.mother_adherence_support, None, W.ClientAdherenceSupportDue, id="her adherence support"
        ),
        pytest.param(ScheduleKind.infant_prophylaxis, None, None, id="prophylaxis: announced by no event"),
    ],
)
def test_a_due_withdrawn_in_error_names_the_announcement_it_takes_back(
    kind: ScheduleKind, test: InfantTest | None, announcement: WithdrawnAnnouncement | None
) -> None:
    one = Item(uuid4(), kind, test, date(2026, 8, 3), date(2026, 8, 10), OVERDUE, Status.cancelled)
    subject = uuid4()
    events = announcements.item_withdrawn(
        SubjectType.infant,
        subject,
        subject,
        "FAC-1",
        one,
        CLOCK.now(),
        reason=WithdrawalReason.entered_in_error,
        announced_for=one.window_start,
        met_on=VOIDED,
        due=True,
    )
    assert [(e.announcement, e.reason, e.announced_for, e.met_on, e.item_id) for e in events] == (
        [(announcement, WithdrawalReason.entered_in_error, one.window_start, VOIDED, one.item_id)]
        if announcement is not None
        else []
    )


MET = date(2026, 8, 20)


@pytest.mark.parametrize(
    ("kind", "test", "satisfied_on", "announcement"),
    [
        pytest.param(ScheduleKind.nat_6_weeks, InfantTest.NAT, MET, W.InfantTestOverdue, id="an infant test"),
        pytest.param(ScheduleKind.mother_viral_load, None, MET, W.ClientViralLoadOverdue, id="her viral load"),
        pytest.param(ScheduleKind.mother_hiv_test_anc1, None, MET, W.ClientHivTestOverdue, id="her HIV test"),
        pytest.param(ScheduleKind.hei_visit, None, MET, None, id="an HEI visit: a missed visit's overdue stays"),
        pytest.param(ScheduleKind.nat_6_weeks, InfantTest.NAT, None, None, id="not met: nothing withdrawn"),
        pytest.param(ScheduleKind.infant_prophylaxis, None, MET, None, id="prophylaxis: announced by no event"),
    ],
)
def test_an_overdue_met_before_its_overdue_day_names_the_announcement_it_takes_back(
    kind: ScheduleKind, test: InfantTest | None, satisfied_on: date | None, announcement: WithdrawnAnnouncement | None
) -> None:
    one = Item(uuid4(), kind, test, date(2026, 8, 3), date(2026, 8, 10), OVERDUE, Status.satisfied, satisfied_on)
    subject = uuid4()
    events = announcements.item_withdrawn(
        SubjectType.client,
        subject,
        subject,
        "FAC-1",
        one,
        CLOCK.now(),
        reason=WithdrawalReason.met_before_overdue,
        announced_for=OVERDUE,
        met_on=one.satisfied_on,
    )
    assert [(e.announcement, e.reason, e.announced_for, e.met_on, e.kind) for e in events] == (
        [(announcement, WithdrawalReason.met_before_overdue, OVERDUE, MET, kind)] if announcement is not None else []
    )


LOST_DAY = date(2026, 11, 22)
LAST_SEEN = date(2026, 8, 3)


@pytest.mark.parametrize(
    ("contact", "withdrawn", "still_lost"),
    [
        pytest.param(date(2026, 11, 20), LOST_DAY, False, id="seen before the lost day: she was never lost"),
        pytest.param(LOST_DAY, None, False, id="seen on the lost day: back in care"),
        pytest.param(date(2026, 11, 30), None, False, id="seen after: back in care"),
        pytest.param(date(2026, 7, 1), None, True, id="a visit before her last one: still lost"),
        pytest.param(LAST_SEEN, None, True, id="her last visit again: still lost"),
    ],
)
def test_a_contact_ends_a_loss_and_withdraws_it_when_it_came_before_the_lost_day(
    contact: date, withdrawn: date | None, still_lost: bool
) -> None:
    a = Attendance(last_seen_on=LAST_SEEN, lost_since=LOST_DAY, lost_last_seen_on=LAST_SEEN)
    assert a.seen(contact) == withdrawn
    assert (a.lost_since is not None) is still_lost


def test_the_lost_day_is_the_clinical_day_whatever_day_the_timer_runs() -> None:
    for run_on in (LOST_DAY, date(2026, 11, 23), date(2026, 11, 30)):
        a = Attendance(last_seen_on=LAST_SEEN)
        assert check_lost([item(Status.overdue)], a, 90, run_on) == LOST_DAY
        assert a.lost_since == LOST_DAY, "overdue on 24 August + 90 days"


def withdrawals(case: InfantCase | MotherCase) -> list[AnnouncementWithdrawn]:
    case.withdraw(CLOCK)
    return [e for e in case.pull_events() if isinstance(e, AnnouncementWithdrawn)]


def mother_overdue_anc1_test() -> MotherCase:
    """Enrolled on 3 August at 8 weeks, HIV status unknown: the ANC1 test is overdue on 24 August."""
    mother = MotherCase(uuid4(), "FAC-ZA-001")
    mother.pregnancies[""] = Pregnancy(date(2026, 8, 3), edd=date(2026, 8, 3) + timedelta(weeks=32))
    mother.seen(date(2026, 8, 3))
    mother.recompute(MotherRules())
    report = mother.tick(OVERDUE, 90)
    assert [(i.kind, t.value) for i, t in report.transitions][-1] == (ScheduleKind.mother_hiv_test_anc1, "overdue")
    return mother


def test_a_back_dated_test_of_a_mother_withdraws_her_overdue_test() -> None:
    mother = mother_overdue_anc1_test()
    mother.hiv_tests = [(date(2026, 8, 5), HivTestResult.negative)]
    mother.recompute(MotherRules())
    [w] = withdrawals(mother)
    assert (w.announcement, w.reason, w.kind) == (
        WithdrawnAnnouncement.ClientHivTestOverdue,
        WithdrawalReason.met_before_overdue,
        ScheduleKind.mother_hiv_test_anc1,
    )
    assert (w.subject_type, w.subject_id, w.announced_for, w.met_on) == (
        SubjectType.client,
        mother.client_id,
        OVERDUE,
        date(2026, 8, 5),
    )
    assert withdrawals(mother) == [], "withdrawn once"


def test_a_test_on_or_after_the_overdue_day_meets_her_test_without_a_withdrawal() -> None:
    mother = mother_overdue_anc1_test()
    mother.hiv_tests = [(date(2026, 9, 1), HivTestResult.negative)]
    mother.recompute(MotherRules())
    assert withdrawals(mother) == []


def test_a_mother_lost_and_a_back_dated_visit_before_the_lost_day_withdraws_the_loss() -> None:
    mother = mother_overdue_anc1_test()
    report = mother.tick(date(2026, 11, 23), 90)  # the timer runs a day late
    mother.announce(report, CLOCK)
    [lost] = [e for e in mother.pull_events() if isinstance(e, ClientLostToFollowUp)]
    assert (lost.lost_on, lost.last_seen_on, mother.attendance.lost_since) == (LOST_DAY, LAST_SEEN, LOST_DAY)
    mother.seen(date(2026, 11, 20))
    [w] = withdrawals(mother)
    assert (w.announcement, w.reason, w.announced_for, w.met_on) == (
        WithdrawnAnnouncement.ClientLostToFollowUp,
        WithdrawalReason.seen_before_lost,
        LOST_DAY,
        date(2026, 11, 20),
    )
    assert mother.attendance.lost_since is None


BIRTH = date(2030, 1, 15)
SIX_WEEKS_OVERDUE = BIRTH + timedelta(weeks=8, days=14)


def infant_overdue_six_weeks() -> InfantCase:
    infant = InfantCase(
        uuid4(), uuid4(), "FAC-ZA-001", InfantFacts(birth_date=BIRTH, high_risk=False, follow_up_from=BIRTH)
    )
    infant.recompute(EidRules())
    infant.tick(SIX_WEEKS_OVERDUE, EidRules(), 90)
    assert next(i for i in infant.items if i.kind is ScheduleKind.nat_6_weeks).status is Status.overdue
    return infant


@pytest.mark.parametrize(
    ("sampled", "withdrawn"),
    [
        pytest.param(BIRTH + timedelta(weeks=6), True, id="sampled at 6 weeks, posted after the overdue: withdrawn"),
        pytest.param(SIX_WEEKS_OVERDUE + timedelta(days=3), False, id="sampled after the overdue: met late"),
    ],
)
def test_a_back_dated_infant_result_withdraws_its_overdue_only_when_sampled_before_it(
    sampled: date, withdrawn: bool
) -> None:
    infant = infant_overdue_six_weeks()
    data = {"test": "NAT", "result": "negative", "confirmatory": False}
    infant.record(RecordedEvent("InfantTestResulted", sampled, SIX_WEEKS_OVERDUE + timedelta(days=5), data))
    infant.recompute(EidRules())
    found = withdrawals(infant)
    assert [(w.announcement, w.kind, w.met_on) for w in found] == (
        [(WithdrawnAnnouncement.InfantTestOverdue, ScheduleKind.nat_6_weeks, sampled)] if withdrawn else []
    )


@pytest.mark.parametrize(
    ("before", "after", "withdrawn"),
    [
        pytest.param(Status.overdue, Status.cancelled, [True, False], id="overdue, then never called for: both"),
        pytest.param(Status.due, Status.cancelled, [True], id="due, then never called for: the due one"),
        pytest.param(Status.planned, Status.cancelled, [], id="never announced: nothing to withdraw"),
        pytest.param(Status.satisfied, Status.cancelled, [], id="met before it became unneeded: it stood"),
        pytest.param(Status.overdue, Status.overdue, [], id="still called for"),
    ],
)
def test_announcements_of_an_open_item_the_facts_no_longer_call_for_are_withdrawn(
    before: Status, after: Status, withdrawn: list[bool]
) -> None:
    one = item(before, satisfied_on=date(2026, 8, 5) if before is Status.satisfied else None)
    due, overdue = due_snapshot([one]), overdue_snapshot([one])
    one.status = after
    if after is Status.cancelled:
        one.cancel_reason, one.satisfied_on = "no_longer_required", None
    found = unneeded_items(due, overdue, [one])
    assert [flag for _, _, flag in found] == withdrawn
    assert [on for _, on, _ in found] == [date(2026, 8, 3) if flag else OVERDUE for flag in withdrawn]


def test_a_positive_status_known_from_before_withdraws_her_overdue_anc_test_as_never_needed() -> None:
    """Her ANC1 test was announced due and overdue (an HIV-testing referral followed); then a positive
    test from before this pregnancy is posted: a woman known positive is not tested, so the test was
    never called for (WHO 2019 HIV testing services guidelines: retesting is for HIV-negative women;
    docs/clinical-rules.md): both announcements withdrawn `no_longer_required` on the day it was learnt."""
    mother = mother_overdue_anc1_test()
    mother.hiv_tests = [(date(2025, 1, 1), HivTestResult.positive)]
    mother.recompute(MotherRules())
    assert [(i.kind, i.status, i.cancel_reason) for i in mother.items] == [
        (ScheduleKind.mother_hiv_test_anc1, Status.cancelled, "no_longer_required")
    ]
    found = withdrawals(mother)
    assert [(w.announcement, w.reason, w.announced_for, w.met_on) for w in found] == [
        (W.ClientHivTestDue, WithdrawalReason.no_longer_required, date(2026, 8, 3), CLOCK.today()),
        (W.ClientHivTestOverdue, WithdrawalReason.no_longer_required, OVERDUE, CLOCK.today()),
    ]
    assert withdrawals(mother) == [], "withdrawn once"
