"""The probabilities that shape a synthetic programme.

Defaults follow the figures Mentor Mother programmes report for their enrolled clients (skilled
delivery ~90 %, MTCT ~1.3 % at 18-24 months, rare seroconversion) and typical Southern / Eastern
African ANC figures (ANC HIV prevalence 20-30 %, most positive women already knowing their status
at booking). Every figure is a parameter, so a
demo can exaggerate what it wants to show (e.g. more positive infants).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rates:
    #: HIV-positive among women booking at ANC1
    hiv_prevalence: float = 0.25
    #: of positive women, those who already know their status at ANC1
    known_positive: float = 0.55
    #: of known-positive women, those already on ART at ANC1
    on_art_if_known: float = 0.85
    #: women enrolled after delivery rather than at ANC1
    postnatal_enrolment: float = 0.08
    #: negative women who arrive with a recent documented negative test (no test at ANC1)
    documented_negative: float = 0.10
    #: women of unknown status tested at ANC1 (the rest stay unknown until labour, if ever)
    tested_at_anc1: float = 0.97
    #: newly diagnosed women starting ART the same day ("test and treat")
    same_day_art: float = 0.75
    #: newly diagnosed women who never start ART while followed
    never_starts_art: float = 0.03
    #: each scheduled ANC contact after ANC1 actually attended
    anc_visit_attended: float = 0.8
    #: negative women retested in late pregnancy
    retest_negative: float = 0.6
    #: a retest that turns positive (programmes report seroconversion in ~0.12 % of women negative at enrolment)
    seroconversion: float = 0.002
    #: women on ART with a viral load at 34-36 weeks
    viral_load_done: float = 0.8
    #: of those viral loads, suppressed (< 1000 copies/mL)
    viral_suppression: float = 0.85
    #: booked pregnancies lost before 28 weeks (miscarriage, abortion; later losses are stillbirths)
    pregnancy_loss: float = 0.03
    #: women who stop attending during pregnancy (missed visits, then silence)
    lost_in_pregnancy: float = 0.05
    #: women who transfer out during pregnancy
    transfer_out: float = 0.03
    #: of those, women who enrol again at another facility of the programme (same national id)
    transfer_in: float = 0.6
    #: deaths during pregnancy, and maternal deaths at delivery
    maternal_death: float = 0.003
    #: place of delivery (the rest: in transit)
    facility_delivery: float = 0.90
    home_delivery: float = 0.08
    #: home deliveries with a skilled attendant (facility deliveries: 99 %)
    skilled_at_home: float = 0.10
    twins: float = 0.015
    stillbirth: float = 0.02
    #: HIV-exposed infants given prophylaxis at birth
    infant_prophylaxis: float = 0.95
    #: high-risk infants given a birth NAT
    birth_nat_if_high_risk: float = 0.7
    #: each immunisation visit (6, 10, 14 weeks) attended
    infant_visit: float = 0.85
    #: 6-week NAT sampled within its window; sampled late (after the overdue date)
    nat6_on_time: float = 0.85
    nat6_late: float = 0.07
    #: infants infected in utero or around birth (first NAT positive); during breastfeeding
    mtct_early: float = 0.015
    mtct_breastfeeding: float = 0.006
    #: positive infants: confirmatory NAT taken; ART started
    confirmatory_done: float = 0.9
    infant_art_if_positive: float = 0.9
    #: 9-month NAT taken; final test taken
    nat9_done: float = 0.75
    final_test_done: float = 0.6
    #: infant deaths and infant transfers out during follow-up
    infant_death: float = 0.01
    infant_transfer_out: float = 0.01
    #: mother and baby stop attending after delivery
    lost_after_delivery: float = 0.08
    #: feeding at 6 weeks (the rest: mixed feeding)
    exclusive_breastfeeding: float = 0.70
    replacement_feeding: float = 0.10
    #: facilities with a poor connection: offline spells of 1-4 weeks, their events posted late in one go
    offline_facility: float = 0.3
    #: events the EMR sends a second time (a retry after a lost reply)
    duplicate: float = 0.02
    #: clients whose record carries one invalid event (a data-entry error)
    invalid: float = 0.01

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {name}={value} is not a probability")
        if self.facility_delivery + self.home_delivery > 1.0:
            raise ValueError("facility_delivery + home_delivery exceed 1")
        if self.exclusive_breastfeeding + self.replacement_feeding > 1.0:
            raise ValueError("exclusive_breastfeeding + replacement_feeding exceed 1")
