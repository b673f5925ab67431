"""The enrolment domain rules as pure functions: a mother's state follows when things happened."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from enrolment import domain
from enrolment.domain import ClientHistory, Policy, RuleBroken
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    BirthOutcome,
    ClientDied,
    ClientEnrolled,
    ClientTransferredOut,
    DeliveredInfant,
    DeliveryRecorded,
    HivStatus,
    HivTestRecorded,
    InfantSex,
    ViralLoadRecorded,
)
from servicekit.clock import Clock

CLIENT = uuid.uuid4()
FAC = "FAC-ZA-001"


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC)


def enrolled(day: str, facility: str = FAC, **fields) -> ClientEnrolled:
    values = {"status_at_enrolment": "pregnant", "age_years": 28, "hiv_status": "negative", "on_art": False}
    values.update(fields)
    return ClientEnrolled(client_id=CLIENT, facility_id=facility, occurred_at=at(day), **values)


def hiv_test(day: str, result: str = "positive") -> HivTestRecorded:
    return HivTestRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at(day), result=result, setting="anc")


def delivered(day: str, **fields) -> DeliveryRecorded:
    baby = DeliveredInfant(infant_id=uuid.uuid4(), sex=InfantSex.female, outcome=BirthOutcome.live_birth)
    values = {"place": "facility", "skilled_attendant": True, "maternal_outcome": "alive", "infants": [baby]}
    values.update(fields)
    return DeliveryRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at(day), **values)


def history(
    *events, birth_date: date = date(1996, 4, 11), estimated: bool = False, clock: Clock = Clock()
) -> ClientHistory:
    return ClientHistory(birth_date, estimated, list(events), clock=clock)


def broken(code: str):
    return pytest.raises(RuleBroken, match=f"^{code}:")


class TestHivStatus:
    def test_status_before_a_test_counts_only_evidence_from_before_it_whatever_the_arrival_order(self) -> None:
        her = history(hiv_test("2026-05-01", "positive"), enrolled("2026-01-10"), hiv_test("2026-03-01", "negative"))

        assert domain.hiv_status_before(her, at("2026-03-01")) is HivStatus.negative
        assert domain.hiv_status_before(her, at("2026-05-01")) is HivStatus.negative
        assert domain.hiv_status_before(her, at("2026-05-02")) is HivStatus.positive
        assert domain.hiv_status_before(her, at("2026-01-01")) is HivStatus.unknown

    def test_positive_is_for_life_and_indeterminate_changes_nothing(self) -> None:
        her = history(
            enrolled("2026-01-10", hiv_status="unknown"), hiv_test("2026-02-01"), hiv_test("2026-03-01", "negative")
        )
        her.events.append(hiv_test("2026-04-01", "indeterminate"))

        assert domain.hiv_status_at(her, at("2026-06-01")) is HivStatus.positive
        assert (
            domain.hiv_status_at(history(hiv_test("2026-04-01", "indeterminate")), at("2026-06-01"))
            is HivStatus.unknown
        )

    def test_diagnosis_date_is_the_earliest_positive_evidence_up_to_a_moment(self) -> None:
        her = history(
            enrolled("2026-01-10", hiv_status="positive", hiv_status_known_since="2024-08-01"), hiv_test("2026-02-01")
        )

        assert domain.diagnosed_on(her, at("2026-03-01")) == date(2024, 8, 1)
        assert domain.diagnosed_on(history(enrolled("2026-01-10")), at("2026-03-01")) is None

    def test_a_positive_status_reported_without_a_date_allows_art_on_any_day(self) -> None:
        her = history(enrolled("2026-01-10", hiv_status="positive"))

        assert domain.known_positive_on(her, date(2025, 6, 1))
        domain.check_art_start(her, date(2025, 6, 1))

    def test_art_needs_a_positive_status_on_or_before_its_day(self) -> None:
        her = history(enrolled("2026-01-10"), hiv_test("2026-02-01"))

        domain.check_art_start(her, date(2026, 2, 1))
        with broken("art_before_positive_status"):
            domain.check_art_start(her, date(2026, 1, 31))


class TestArtAndViralLoad:
    def test_art_start_is_the_earliest_start_including_on_art_at_enrolment(self) -> None:
        on_art = enrolled("2026-01-10", hiv_status="positive", on_art=True, art_start_date="2023-05-05")
        art = ArtInitiated(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-02-01"))

        assert domain.art_started_on(history(on_art, art), at("2026-03-01")) == date(2023, 5, 5)
        assert domain.art_started_on(history(art), at("2026-01-01")) is None
        undated = enrolled("2026-01-10", hiv_status="positive", on_art=True)
        assert domain.art_started_on(history(undated), at("2026-03-01")) == date(2026, 1, 10)

    def test_the_latest_viral_load_is_by_sample_date(self) -> None:
        loads = [
            ViralLoadRecorded(
                client_id=CLIENT, facility_id=FAC, occurred_at=at(d), copies_per_ml=c, suppressed=c < 1000
            )
            for d, c in (("2026-03-01", 20), ("2026-01-01", 5000), ("2026-05-01", 90))
        ]

        assert domain.latest_viral_load(history(*loads), at("2026-04-01")).copies_per_ml == 20
        assert domain.latest_viral_load(history(*loads), at("2025-12-01")) is None

    def test_a_viral_load_needs_a_plausible_count_and_a_positive_status(self) -> None:
        her = history(enrolled("2026-01-10", hiv_status="positive"))

        domain.check_viral_load(her, 0, date(2026, 2, 1))
        with broken("viral_load_out_of_range"):
            domain.check_viral_load(her, 60_000_000, date(2026, 2, 1))
        with broken("viral_load_before_positive_status"):
            domain.check_viral_load(history(enrolled("2026-01-10")), 50, date(2026, 2, 1))


class TestEnrolment:
    def test_an_enrolment_must_be_consistent_in_itself(self) -> None:
        day = date(2026, 1, 10)
        domain.check_enrolment_dates(day, HivStatus.positive, date(2020, 1, 1), True, date(2020, 2, 1))
        with broken("inconsistent_hiv_status"):
            domain.check_enrolment_dates(day, HivStatus.unknown, date(2020, 1, 1), False, None)
        with broken("inconsistent_art"):
            domain.check_enrolment_dates(day, HivStatus.positive, None, False, date(2020, 1, 1))
        with broken("date_after_occurred_at"):
            domain.check_enrolment_dates(day, HivStatus.positive, date(2026, 2, 1), False, None)
        with broken("art_before_positive_status"):
            domain.check_enrolment_dates(day, HivStatus.negative, None, True, None)
        with broken("art_before_positive_status"):
            domain.check_enrolment_dates(day, HivStatus.positive, date(2021, 1, 1), True, date(2020, 1, 1))

    @pytest.mark.parametrize("age, ok", [(8, False), (9, True), (60, True), (61, False)])
    def test_age_at_enrolment_is_nine_to_sixty(self, age: int, ok: bool) -> None:
        if ok:
            domain.check_age(age)
        else:
            with broken("age_out_of_range"):
                domain.check_age(age)

    @pytest.mark.parametrize("weeks, ok", [(None, True), (3, False), (4, True), (45, True), (46, False)])
    def test_gestation_is_four_to_forty_five_weeks(self, weeks, ok: bool) -> None:
        if ok:
            domain.check_gestation(weeks)
        else:
            with broken("gestation_out_of_range"):
                domain.check_gestation(weeks)

    def test_an_age_in_years_gives_an_estimated_birth_date_with_a_year_of_slack(self) -> None:
        born = domain.estimated_birth_date(30, date(2026, 2, 28))
        her = history(birth_date=born, estimated=True)

        assert born == date(1996, 2, 28)
        assert domain.estimated_birth_date(30, date(2028, 2, 29)) == date(1998, 2, 28)
        domain.check_after_birth(her, date(1995, 3, 1))
        with broken("before_birth"):
            domain.check_after_birth(her, date(1995, 2, 27))

    def test_a_second_enrolment_opens_an_episode_only_after_a_transfer_out_or_a_delivery(self) -> None:
        first = enrolled("2025-01-10")
        left = ClientTransferredOut(client_id=CLIENT, facility_id=FAC, occurred_at=at("2025-03-01"))

        assert domain.enrolment_opens_episode(history(first, left), FAC, enrolled("2025-04-01")) is True
        after_delivery = history(first, delivered("2025-06-01"))
        assert domain.enrolment_opens_episode(after_delivery, FAC, enrolled("2026-01-05")) is False
        with broken("already_enrolled"):
            domain.enrolment_opens_episode(after_delivery, FAC, enrolled("2026-01-05", status_at_enrolment="postnatal"))
        with broken("already_enrolled"):
            domain.enrolment_opens_episode(history(first), FAC, enrolled("2025-02-01"))

    def test_a_recorded_birth_date_must_not_be_contradicted(self) -> None:
        her = history()

        domain.check_birth_dates_agree(her, date(1996, 4, 11), None, date(2026, 1, 1))
        domain.check_birth_dates_agree(her, None, 29, date(2026, 1, 1))
        with broken("identity_conflict"):
            domain.check_birth_dates_agree(her, date(1990, 1, 1), None, date(2026, 1, 1))
        with broken("identity_conflict"):
            domain.check_birth_dates_agree(her, None, 40, date(2026, 1, 1))


class TestWhereAndWhen:
    def test_events_at_a_facility_stop_after_she_transfers_out_until_she_enrols_again(self) -> None:
        left = ClientTransferredOut(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-03-01"))
        her = history(enrolled("2026-01-10"), left)

        domain.check_enrolled_here(her, FAC, date(2026, 3, 1))
        with broken("transferred_out"):
            domain.check_enrolled_here(her, FAC, date(2026, 3, 2))
        her.events.append(enrolled("2026-04-01", status_at_enrolment="postnatal"))
        domain.check_enrolled_here(her, FAC, date(2026, 4, 2))
        with broken("not_enrolled_at_facility"):
            domain.check_enrolled_here(her, "FAC-ZA-002", date(2026, 4, 2))

    def test_nothing_happens_after_death_and_a_death_cannot_predate_recorded_events(self) -> None:
        died = ClientDied(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-03-01"))
        her = history(enrolled("2026-01-10"), died)

        domain.check_alive(her, date(2026, 3, 1))
        with broken("event_after_death"):
            domain.check_alive(her, date(2026, 3, 2))
        with broken("death_already_recorded"):
            domain.check_death(her, date(2026, 3, 5))
        with broken("death_before_recorded_events"):
            domain.check_death(history(enrolled("2026-01-10")), date(2026, 1, 9))

    def test_a_maternal_death_at_delivery_is_her_death(self) -> None:
        her = history(enrolled("2025-10-01"), delivered("2026-02-01", maternal_outcome="died"))

        assert domain.death_day(her) == date(2026, 2, 1)


class TestPregnancyAndDelivery:
    def test_pregnancy_follows_the_latest_enrolment_visit_or_delivery_before_a_moment(self) -> None:
        visit = AncVisitRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-02-01"), visit_number=2)
        her = history(enrolled("2026-01-10"), visit, delivered("2026-06-01"))

        assert domain.pregnancy_at(her, at("2026-01-01")) is None
        assert domain.pregnancy_at(her, at("2026-03-01")) == "pregnant"
        assert domain.pregnancy_at(her, at("2026-07-01")) == "postnatal"
        with broken("not_pregnant"):
            domain.check_anc_visit(
                her, AncVisitRecorded(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-07-01"), visit_number=2)
            )

    def test_a_delivery_before_enrolment_is_allowed_only_for_a_woman_enrolled_postnatally(self) -> None:
        outcomes, weights = [BirthOutcome.live_birth], [3000]

        domain.check_delivery(
            history(enrolled("2026-03-01", status_at_enrolment="postnatal")),
            at("2026-02-20"),
            outcomes,
            weights,
            Policy(),
        )
        with broken("delivery_before_enrolment"):
            domain.check_delivery(history(enrolled("2026-03-01")), at("2026-02-20"), outcomes, weights, Policy())

    def test_a_delivery_lists_its_babies_with_plausible_weights_and_is_not_a_repeat(self) -> None:
        her = history(enrolled("2025-10-01"), delivered("2026-03-01"))

        with broken("live_birth_without_infants"):
            domain.check_delivery(her, at("2027-03-01"), [], [], Policy())
        with broken("birth_weight_out_of_range"):
            domain.check_delivery(her, at("2027-03-01"), [BirthOutcome.live_birth], [150], Policy())
        with broken("delivery_too_soon"):
            domain.check_delivery(her, at("2026-05-01"), [BirthOutcome.live_birth], [None], Policy())
        domain.check_delivery(her, at("2027-03-01"), [BirthOutcome.stillbirth], [None], Policy())

    def test_a_transfer_goes_to_another_known_facility(self) -> None:
        domain.check_transfer(FAC, None, False)
        domain.check_transfer(FAC, "FAC-ZA-002", True)
        with broken("transfer_to_same_facility"):
            domain.check_transfer(FAC, FAC, True)
        with broken("unknown_facility"):
            domain.check_transfer(FAC, "FAC-XX-1", False)


class TestProgrammeDay:
    """A day is the programme-local day of the instant, not the UTC day nor the offset the EMR sent."""

    JOHANNESBURG = Clock("Africa/Johannesburg")

    def test_an_event_just_after_local_midnight_falls_on_the_local_day(self) -> None:
        late = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 00:30 on 3 March in Johannesburg
        positive = HivTestRecorded(
            client_id=CLIENT, facility_id=FAC, occurred_at=late, result="positive", setting="anc"
        )
        died = ClientDied(client_id=CLIENT, facility_id=FAC, occurred_at=late)
        her = history(enrolled("2026-01-05"), positive, died, clock=self.JOHANNESBURG)
        assert domain.diagnosed_on(her, late) == date(2026, 3, 3)
        assert domain.death_day(her) == date(2026, 3, 3)
        assert domain.death_day(history(died)) == date(2026, 3, 2), "the same instant is still the 2nd in UTC"

    def test_the_same_moment_posted_with_another_offset_is_the_same_day(self) -> None:
        local = datetime(2026, 3, 3, 0, 30, tzinfo=self.JOHANNESBURG.zone)
        for offset in (-5, 0, 2, 9):
            moment = local.astimezone(timezone(timedelta(hours=offset)))
            her = history(
                enrolled("2026-01-05"),
                ClientDied(client_id=CLIENT, facility_id=FAC, occurred_at=moment),
                clock=self.JOHANNESBURG,
            )
            assert domain.death_day(her) == date(2026, 3, 3)
            domain.check_alive(her, date(2026, 3, 3))
            with broken("event_after_death"):
                domain.check_alive(her, date(2026, 3, 4))
