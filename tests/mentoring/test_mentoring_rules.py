"""The Mentor Mothers' rules as tables: who gets a new client, what a tracing attempt means, how
an index contact is known; and the staff registry file."""

from __future__ import annotations

import pytest

from followup.mentoring import rules
from followup.mentoring.rules import TracingVerdict, contact_id, least_loaded, tracing_verdict
from pmtct_events.mentoring import TracingOutcome
from servicekit import staff


@pytest.mark.parametrize(
    ("loads", "chosen"),
    [
        ({}, None),
        ({"MM-1": 4}, "MM-1"),
        ({"MM-1": 4, "MM-2": 3}, "MM-2"),
        ({"MM-2": 3, "MM-1": 3}, "MM-1"),  # a tie goes to the lowest staff id, in any order
        ({"MM-3": 0, "MM-1": 1, "MM-2": 0}, "MM-2"),
    ],
)
def test_a_new_client_goes_to_the_least_loaded_mentor_mother(loads: dict[str, int], chosen: str | None) -> None:
    assert least_loaded(loads) == chosen


NF, BACK = TracingOutcome.not_found, TracingOutcome.found_back_in_care


@pytest.mark.parametrize(
    ("outcome", "failed_before", "confirmed_before", "verdict"),
    [
        (NF, 0, False, TracingVerdict(1, False, False, False)),
        (NF, 1, False, TracingVerdict(2, False, False, False)),
        (NF, 2, False, TracingVerdict(3, True, False, True)),  # the third failed attempt of three
        (NF, 3, True, TracingVerdict(4, False, False, False)),  # confirmed once per episode
        (BACK, 2, False, TracingVerdict(2, False, True, True)),
        (TracingOutcome.found_refused, 0, False, TracingVerdict(0, False, False, True)),
        (TracingOutcome.moved, 1, False, TracingVerdict(1, False, False, True)),
        (TracingOutcome.died, 0, False, TracingVerdict(0, False, False, True)),
    ],
)
def test_a_tracing_attempt_closes_tracing_or_counts_towards_confirmed_lost(
    outcome: TracingOutcome, failed_before: int, confirmed_before: bool, verdict: TracingVerdict
) -> None:
    assert tracing_verdict(outcome, failed_before, confirmed_before, limit=3) == verdict


def test_an_index_contact_has_one_platform_id_per_facility_and_reference_that_reveals_neither() -> None:
    a = contact_id("key", "FAC-ZA-001", "P-0017")
    assert a == contact_id("key", "FAC-ZA-001", "P-0017")
    assert a != contact_id("key", "FAC-ZA-002", "P-0017")
    assert a != contact_id("other-key", "FAC-ZA-001", "P-0017")
    assert "P-0017" not in str(a)


def test_the_shipped_staff_registry_has_a_mentor_mother_cmm_and_coordinator_at_every_demo_facility() -> None:
    from servicekit import facilities

    members = staff.load()
    for f in facilities.load().all():
        roles = {m.role for m in members if m.facility_id == f.facility_id and m.active}
        assert roles == set(staff.StaffRole), f.facility_id


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("staff_id,role,facility_id\nMM-1,mentor_mother,F\n", "lacks columns: active"),
        ("staff_id,role,facility_id,active\nMM-1,nurse,F,true\n", "line 2: role 'nurse'"),
        ("staff_id,role,facility_id,active\nMM-1,mentor_mother,F,yes\n", "line 2: active must be true or false"),
        ("staff_id,role,facility_id,active\n,mentor_mother,F,true\n", "line 2: staff_id is empty"),
    ],
)
def test_a_staff_registry_file_with_a_mistake_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        staff.parse_csv(text)


def test_the_default_rules_are_least_loaded_and_three_failed_attempts() -> None:
    defaults = rules.MentoringRules()
    assert (defaults.caseload_rule, defaults.tracing_attempts) == (rules.CaseloadRule.least_loaded, 3)


def test_a_facility_registry_of_its_own_without_a_staff_registry_starts_with_no_staff_from_a_file(tmp_path) -> None:
    """The demo staff work at the demo facilities: a deployment (or the bench) with its own
    PMTCT_FACILITIES and no PMTCT_STAFF starts, with staff to add through the admin API."""
    own = tmp_path / "facilities.csv"
    assert staff.at_start_up(None, own, {"FAC-XX-B01"}) == ()
    assert staff.at_start_up(None, None, {m.facility_id for m in staff.load()}) == staff.load()
    named = tmp_path / "staff.csv"
    named.write_text(
        "staff_id,role,facility_id,active\nMM-1,mentor_mother,FAC-XX-B01,true\nMM-2,mentor_mother,FAC-NOPE,true\n"
    )
    with pytest.raises(ValueError, match=r"not in the facility registry: \['FAC-NOPE'\]"):
        staff.at_start_up(named, own, {"FAC-XX-B01"})
