"""The synthetic programme, without any service: determinism, realism, the API contract."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from emrsim.events import EmrEvent
from emrsim.programme import ProgrammeParams, generate, intended
from emrsim.rates import Rates

FACILITIES = ("FAC-ZA-001", "FAC-ZA-002", "FAC-KE-001", "FAC-MW-001", "FAC-UG-001")
ANCHOR = date(2026, 6, 1)


@pytest.fixture(scope="module")
def programme() -> list[EmrEvent]:
    return generate(ProgrammeParams(FACILITIES, clients=4000, months=24, seed=11, anchor=ANCHOR))


def mother_of(event: EmrEvent) -> str:
    """The generator's record number of the woman behind any event (infants: `<mother>-B1`)."""
    ref = event.body.get("client_ref") or event.body["infant_ref"]
    return ref.split("-")[0] + "-" + ref.split("-")[1]


def valid(events: list[EmrEvent]) -> list[EmrEvent]:
    return [e for e in events if e.why == "valid"]


def test_the_same_seed_gives_the_same_programme_and_another_seed_another() -> None:
    params = ProgrammeParams(FACILITIES, clients=300, months=12, seed=5, anchor=ANCHOR)
    first, again = generate(params), generate(params)
    assert [e.body for e in first] == [e.body for e in again]
    assert [e.arrives_at for e in first] == [e.arrives_at for e in again]
    other = generate(ProgrammeParams(FACILITIES, clients=300, months=12, seed=6, anchor=ANCHOR))
    assert {e.event_id for e in first}.isdisjoint(e.event_id for e in other)
    refs = {e.body["client_ref"] for e in first if "client_ref" in e.body}
    assert refs.isdisjoint(e.body["client_ref"] for e in other if "client_ref" in e.body)


def test_nothing_happens_or_arrives_on_or_after_the_anchor_except_a_typo_in_the_year(programme) -> None:
    end = datetime(2026, 6, 1, tzinfo=UTC)
    assert all(e.arrives_at < end for e in programme)
    late = [e for e in programme if e.occurred_at >= end]
    assert late and all(e.why == "occurred_in_future" for e in late)
    assert all(e.occurred_at.year >= 2100 for e in late)


def test_events_come_in_arrival_order_and_never_arrive_before_they_happen(programme) -> None:
    assert [e.arrives_at for e in programme] == sorted(e.arrives_at for e in programme)
    assert all(e.arrives_at >= e.occurred_at for e in programme if e.why != "occurred_in_future")


def test_hiv_prevalence_at_anc1_is_that_of_southern_african_antenatal_care(programme) -> None:
    status: dict[str, bool] = {}
    for e in valid(programme):
        if e.type == "ClientEnrolled" and not e.body["client_ref"].endswith("-T"):
            status.setdefault(mother_of(e), e.body["data"]["hiv_status"] == "positive")
        elif e.type == "HivTestRecorded" and e.body["data"]["result"] == "positive":
            status[mother_of(e)] = True
    assert len(status) == 4000
    assert 0.22 <= sum(status.values()) / len(status) <= 0.28


def test_about_nine_deliveries_in_ten_have_a_skilled_attendant(programme) -> None:
    deliveries = [e for e in valid(programme) if e.type == "DeliveryRecorded"]
    assert len(deliveries) > 2000
    skilled = sum(e.body["data"]["skilled_attendant"] for e in deliveries) / len(deliveries)
    assert 0.86 <= skilled <= 0.94


def test_a_few_exposed_infants_test_positive_and_most_get_their_six_week_nat(programme) -> None:
    infants = {e.body["infant_ref"] for e in valid(programme) if e.type == "InfantProphylaxisRecorded"}
    positive = {
        e.body["infant_ref"]
        for e in valid(programme)
        if e.type == "InfantTestResulted" and e.body["data"]["result"] == "positive"
    }
    assert len(infants) > 400
    assert 1 <= len(positive) <= 0.05 * len(infants)
    tested = {e.body["infant_ref"] for e in valid(programme) if e.type == "InfantTestResulted"}
    assert len(tested) / len(infants) > 0.75


def test_every_kind_of_event_and_every_kind_of_trouble_is_in_a_large_programme(programme) -> None:
    types = {(e.service, e.type) for e in programme}
    taken = {("enrolment", t) for t in pytest.importorskip("enrolment.schemas").EVENT_TYPES}
    taken |= {("followup", t) for t in pytest.importorskip("followup.schemas").INFANT_EVENT_TYPES}
    assert types == taken, "every event type the two APIs take, each sent to the service that takes it"
    why = Counter(e.why for e in programme)
    assert set(why) == {
        "valid",
        "resend",
        "unknown_client",
        "occurred_in_future",
        "gestation_out_of_range",
        "delivery_before_enrolment",
    }
    counts = intended(programme)
    assert 0.01 <= counts["duplicate"] / counts["accepted"] <= 0.03
    assert 0.005 * 4000 <= counts["rejected"] <= 0.02 * 4000
    places = Counter(e.body["data"]["place"] for e in valid(programme) if e.type == "DeliveryRecorded")
    assert set(places) == {"facility", "home", "in_transit"}


def test_a_resend_is_the_same_event_posted_again_later(programme) -> None:
    first = {e.event_id: e for e in programme if e.why == "valid"}
    resends = [e for e in programme if e.why == "resend"]
    assert resends
    for e in resends:
        assert e.expect == "duplicate"
        assert e.body == first[e.event_id].body
        assert e.arrives_at > first[e.event_id].arrives_at


def test_offline_clinics_post_a_spell_of_events_late_in_one_go(programme) -> None:
    mother_events = [e for e in valid(programme) if e.service == "enrolment" and e.type != "ViralLoadRecorded"]
    late = [e for e in mother_events if e.arrives_at - e.occurred_at > timedelta(days=3)]
    assert len(late) > 0.02 * len(mother_events)
    assert Counter(e.arrives_at for e in late).most_common(1)[0][1] > 20


def test_infant_events_name_an_infant_of_an_earlier_delivery_at_the_same_facility(programme) -> None:
    born: dict[tuple[str, str], datetime] = {}
    for e in programme:
        if e.type == "DeliveryRecorded" and e.expect == "accepted":
            for infant in e.body["data"]["infants"]:
                born[(e.facility_id, infant["infant_ref"])] = e.arrives_at
        elif e.service == "followup":
            assert born[(e.facility_id, e.body["infant_ref"])] <= e.arrives_at


def test_nothing_is_recorded_for_a_mother_after_her_death(programme) -> None:
    died: dict[str, datetime] = {}
    for e in valid(programme):
        if e.type == "ClientDied" or (e.type == "DeliveryRecorded" and e.body["data"]["maternal_outcome"] == "died"):
            died[mother_of(e)] = e.occurred_at
    assert died
    for e in valid(programme):
        if e.service == "enrolment" and mother_of(e) in died and e.type != "ClientDied":
            assert e.occurred_at <= died[mother_of(e)]


def test_a_mother_s_events_at_a_facility_happen_and_arrive_after_her_enrolment_there(programme) -> None:
    enrolled: dict[str, EmrEvent] = {}
    for e in valid(programme):
        if e.type == "ClientEnrolled":
            enrolled.setdefault(e.body["client_ref"], e)
        elif e.service == "enrolment":
            first = enrolled[e.body["client_ref"]]
            assert first.occurred_at <= e.occurred_at and first.arrives_at <= e.arrives_at, e.body


def test_nothing_is_recorded_at_a_facility_a_mother_has_transferred_out_of(programme) -> None:
    left: dict[str, datetime] = {}
    for e in valid(programme):
        ref = e.body.get("client_ref")
        if e.type == "ClientTransferredOut":
            left[ref] = e.occurred_at
        elif ref in left:
            assert e.occurred_at < left[ref], e.body


def test_a_transferred_mother_is_enrolled_again_elsewhere_with_the_same_national_id(programme) -> None:
    enrolments: dict[str, list[EmrEvent]] = defaultdict(list)
    for e in valid(programme):
        if e.type == "ClientEnrolled":
            enrolments[mother_of(e)].append(e)
    again = [evs for evs in enrolments.values() if len(evs) == 2]
    assert again
    for first, second in again:
        assert first.facility_id != second.facility_id
        assert first.body["data"]["national_id"] == second.body["data"]["national_id"]


def test_rates_must_be_probabilities() -> None:
    with pytest.raises(ValueError, match="hiv_prevalence"):
        Rates(hiv_prevalence=1.5)


def test_every_event_validates_against_the_request_contract_of_the_service_it_goes_to(programme) -> None:
    """Data-entry errors included: they break domain rules, not the request contract, so that the
    platform answers them one by one (`rejected` with a reason) instead of refusing a batch."""
    contracts = {
        "enrolment": pytest.importorskip("enrolment.schemas").EMR_EVENT,
        "followup": pytest.importorskip("followup.schemas").INFANT_EVENT,
    }
    for e in programme:
        contracts[e.service].validate_json(orjson.dumps(e.body), strict=True)
