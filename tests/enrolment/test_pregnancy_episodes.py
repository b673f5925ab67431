"""A woman's pregnancies as episodes (enrolment.domain.episodes and the rules that run per
episode), as pure functions: one client across facilities and years, each pregnancy opened by its
enrolment or ANC1 visit and ended by a delivery or a pregnancy loss.

The 28-week line between a miscarriage and a stillbirth is WHO's (ICD-11 and the WHO definition
of stillbirth); gestational age is counted from the last menstrual period, 280 days to term.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from enrolment import domain
from enrolment.domain import ClientHistory, Policy, RuleBroken
from pmtct_events.enrolment import (
    AncVisitRecorded,
    BirthOutcome,
    CarePeriod,
    ClientEnrolled,
    ClientTransferredOut,
    DeliveredInfant,
    DeliveryRecorded,
    InfantSex,
    PregnancyEnded,
)
from servicekit.clock import Clock

CLIENT = uuid.uuid4()
FAC = "FAC-ZA-001"
OTHER = "FAC-ZA-002"


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=10, tzinfo=UTC)


def enrolled(day: str, facility: str = FAC, **fields) -> ClientEnrolled:
    values = {"status_at_enrolment": "pregnant", "age_years": 28, "hiv_status": "negative", "on_art": False}
    values.update(fields)
    return ClientEnrolled(client_id=CLIENT, facility_id=facility, occurred_at=at(day), **values)


def anc(day: str, number: int, weeks: int | None = None) -> AncVisitRecorded:
    return AncVisitRecorded(
        client_id=CLIENT, facility_id=FAC, occurred_at=at(day), visit_number=number, gestation_weeks=weeks
    )


def lost(day: str, outcome: str = "miscarriage", weeks: int | None = 10) -> PregnancyEnded:
    return PregnancyEnded(
        client_id=CLIENT, facility_id=FAC, occurred_at=at(day), outcome=outcome, gestation_weeks=weeks
    )


def delivered(day: str) -> DeliveryRecorded:
    baby = DeliveredInfant(infant_id=uuid.uuid4(), sex=InfantSex.female, outcome=BirthOutcome.live_birth)
    return DeliveryRecorded(
        client_id=CLIENT,
        facility_id=FAC,
        occurred_at=at(day),
        place="facility",
        skilled_attendant=True,
        maternal_outcome="alive",
        infants=[baby],
    )


def history(*events) -> ClientHistory:
    return ClientHistory(date(1996, 4, 11), False, list(events), clock=Clock())


def broken(code: str):
    return pytest.raises(RuleBroken, match=f"^{code}:")


def shape(her: ClientHistory, *extra) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (ep.number, her.day_of(ep.opened_at).isoformat(), ep.ended_by, ep.ended_on and ep.ended_on.isoformat())
        for ep in domain.episodes(her, *extra)
    ]


class TestEpisodes:
    @pytest.mark.parametrize(
        "events, expected",
        [
            pytest.param(
                [enrolled("2026-01-10"), delivered("2026-07-01"), enrolled("2027-09-01")],
                [(1, "2026-01-10", "delivery", "2026-07-01"), (2, "2027-09-01", None, None)],
                id="a new pregnancy enrolled after a delivery",
            ),
            pytest.param(
                [enrolled("2026-01-10"), lost("2026-02-20"), anc("2026-06-01", 1)],
                [(1, "2026-01-10", "pregnancy_loss", "2026-02-20"), (2, "2026-06-01", None, None)],
                id="ANC1 of a new pregnancy after a miscarriage, without a new enrolment",
            ),
            pytest.param(
                [enrolled("2026-01-10"), anc("2026-02-10", 1), anc("2026-03-10", 2), enrolled("2026-04-01", OTHER)],
                [(1, "2026-01-10", None, None)],
                id="ANC1 during the pregnancy and an enrolment elsewhere (transfer in) open nothing",
            ),
            pytest.param(
                [enrolled("2026-01-10"), enrolled("2026-08-01", status_at_enrolment="postnatal")],
                [(1, "2026-01-10", "delivery", "2026-08-01")],
                id="a postnatal enrolment ends the pregnancy it follows (a delivery nobody posted)",
            ),
            pytest.param(
                [delivered("2026-07-01"), enrolled("2026-01-10")],
                [(1, "2026-01-10", "delivery", "2026-07-01")],
                id="in the order they happened, not the order recorded",
            ),
        ],
    )
    def test_each_pregnancy_is_an_episode_opened_by_its_enrolment_or_anc1_and_ended_by_a_delivery_or_loss(
        self, events: list, expected: list
    ) -> None:
        assert shape(history(*events)) == expected

    def test_facts_take_the_period_of_care_they_happened_in(self) -> None:
        her = history(enrolled("2026-01-10"), delivered("2026-07-01"), enrolled("2027-09-01"), lost("2027-10-20"))
        found = domain.episodes(her)

        def period(day: str) -> CarePeriod:
            ep = domain.episode_at(found, at(day))
            assert ep is not None
            return ep.period_at(at(day))

        assert period("2026-03-01") is CarePeriod.pregnancy
        assert period("2026-12-01") is CarePeriod.postnatal, "ART after the delivery is postnatal ART"
        assert period("2027-09-15") is CarePeriod.pregnancy
        assert period("2027-11-01") is CarePeriod.not_pregnant
        assert domain.pregnancy_at(her, at("2027-11-01")) is None

    def test_a_test_on_the_day_of_her_third_anc_visit_is_at_anc3_not_anc1(self) -> None:
        her = history(enrolled("2026-01-10"), anc("2026-01-10", 1), anc("2026-03-10", 3))
        found = domain.episodes(her)
        ep = domain.episode_at(found, at("2026-03-10"))

        assert domain.anc_visit_on(her, found, ep, date(2026, 3, 10)) == 3
        assert domain.anc_visit_on(her, found, ep, date(2026, 1, 10)) == 1
        assert domain.anc_visit_on(her, found, ep, date(2026, 2, 10)) is None

    def test_an_episode_id_is_named_by_her_and_its_opening_day_so_a_backfilled_earlier_pregnancy_keeps_it(
        self,
    ) -> None:
        clock = Clock()
        later = history(enrolled("2027-09-01"))
        both = history(enrolled("2027-09-01"), enrolled("2025-01-10"), delivered("2025-07-01"))

        [alone] = domain.episodes(later)
        first, second = domain.episodes(both)

        assert second.number == 2 and alone.number == 1
        assert second.episode_id(clock) == alone.episode_id(clock)
        assert first.episode_id(clock) != second.episode_id(clock)


class TestRulesPerEpisode:
    def test_a_new_pregnancy_after_a_miscarriage_is_accepted_at_the_same_facility_and_is_no_transfer_in(
        self,
    ) -> None:
        her = history(enrolled("2026-01-10"), lost("2026-02-20"))

        assert domain.enrolment_opens_episode(her, FAC, enrolled("2026-06-01")) is False

    def test_a_second_enrolment_in_the_same_pregnancy_at_the_same_facility_is_already_enrolled(self) -> None:
        her = history(enrolled("2026-01-10"), anc("2026-02-10", 2))

        with broken("already_enrolled"):
            domain.enrolment_opens_episode(her, FAC, enrolled("2026-03-01"))

    def test_back_after_a_transfer_out_is_a_transfer_in(self) -> None:
        her = history(
            enrolled("2026-01-10"),
            ClientTransferredOut(client_id=CLIENT, facility_id=FAC, occurred_at=at("2026-02-01")),
        )

        assert domain.enrolment_opens_episode(her, FAC, enrolled("2026-03-01")) is True

    def test_an_anc1_after_a_loss_opens_the_next_pregnancy_but_a_later_visit_needs_one(self) -> None:
        her = history(enrolled("2026-01-10"), lost("2026-02-20"))

        domain.check_anc_visit(her, anc("2026-06-01", 1, weeks=8))
        with broken("not_pregnant"):
            domain.check_anc_visit(her, anc("2026-06-01", 2))

    def test_an_anc_visit_after_a_delivery_other_than_anc1_is_not_pregnant(self) -> None:
        with broken("not_pregnant"):
            domain.check_anc_visit(history(enrolled("2026-01-10"), delivered("2026-07-01")), anc("2026-08-01", 3))

    @pytest.mark.parametrize(
        "opening, code",
        [
            pytest.param(anc("2026-04-01", 1, weeks=20), "overlapping_pregnancy", id="20 weeks six weeks after a loss"),
            pytest.param(anc("2026-06-01", 1, weeks=10), None, id="10 weeks fourteen weeks after a loss"),
            pytest.param(anc("2026-04-01", 1), None, id="undated: nothing to compare"),
        ],
    )
    def test_a_new_pregnancy_is_dated_after_the_previous_one_ended(self, opening, code: str | None) -> None:
        her = history(enrolled("2026-01-10"), lost("2026-02-20"))
        if code is None:
            domain.check_anc_visit(her, opening)
        else:
            with broken(code):
                domain.check_anc_visit(her, opening)

    def test_a_new_enrolment_whose_edd_overlaps_the_previous_delivery_is_refused(self) -> None:
        her = history(enrolled("2026-01-10"), delivered("2026-07-01"))
        opening = enrolled("2026-09-01", edd=date(2026, 12, 1))
        found = domain.episodes(her, opening)

        with broken("overlapping_pregnancy"):
            domain.check_new_pregnancy_dates(her, found, domain.episode_of(found, opening))

    @pytest.mark.parametrize(
        "events, loss, code",
        [
            pytest.param(
                [enrolled("2026-01-10"), delivered("2026-07-01")], lost("2026-08-01"), "not_pregnant", id="postnatal"
            ),
            pytest.param(
                [enrolled("2026-01-10"), lost("2026-02-01")], lost("2026-03-01"), "not_pregnant", id="lost already"
            ),
            pytest.param(
                [enrolled("2026-01-10")], lost("2026-01-01"), "not_pregnant", id="before the pregnancy was seen"
            ),
            pytest.param(
                [enrolled("2026-01-10"), anc("2026-04-01", 3)],
                lost("2026-03-01"),
                "not_pregnant",
                id="a later visit of the pregnancy",
            ),
            pytest.param(
                [enrolled("2026-01-10")], lost("2026-03-01", "ectopic", None), None, id="an ectopic pregnancy, undated"
            ),
        ],
    )
    def test_a_pregnancy_loss_ends_an_ongoing_pregnancy(self, events, loss, code) -> None:
        her = history(*events)
        if code is None:
            domain.check_pregnancy_loss(her, loss)
        else:
            with broken(code):
                domain.check_pregnancy_loss(her, loss)

    @pytest.mark.parametrize("weeks, ok", [(4, True), (27, True), (28, False), (3, False), (None, True)])
    def test_a_pregnancy_lost_from_28_weeks_on_is_a_stillbirth_not_a_miscarriage(self, weeks, ok: bool) -> None:
        if ok:
            domain.check_loss_gestation(weeks)
        else:
            with broken("gestation_out_of_range"):
                domain.check_loss_gestation(weeks)

    def test_a_delivery_weeks_after_a_pregnancy_loss_is_refused(self) -> None:
        her = history(enrolled("2026-01-10"), lost("2026-02-20"))

        with broken("delivery_too_soon"):
            domain.check_delivery(her, at("2026-04-01"), [BirthOutcome.live_birth], [None], Policy())
