"""One mother's journey through the PMTCT continuum (ANC1, HIV testing, ART, delivery, infant
follow-up to a final diagnosis), as her clinic's EMR records it.

ANC1 enrolment with her HIV status (known positive, tested now, or a documented negative), ART,
ANC contacts, a late-pregnancy retest or viral load, perhaps a transfer to another facility,
delivery with its infants, and for an HIV-exposed infant: prophylaxis, feeding, immunisation
visits, EID tests by the schedule (some late, some missed, a few positive), ART, an outcome.
Missed visits are events that never happen; the platform is expected to notice.

Pure: everything comes from the journey's own `random.Random`, and nothing happens on or after
the anchor (the simulated "today").
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .events import EmrEvent, Outcome, Service
from .rates import Rates

GIVEN_NAMES = (
    "Thandiwe", "Nomvula", "Lindiwe", "Zanele", "Ayanda", "Nokuthula", "Palesa", "Akinyi", "Achieng",
    "Wanjiru", "Njeri", "Chikondi", "Tiyamike", "Mphatso", "Nakato", "Namubiru", "Grace", "Faith",
)  # fmt: skip
FAMILY_NAMES = (
    "Dlamini", "Nkosi", "Mokoena", "Khumalo", "Ndlovu", "Otieno", "Odhiambo", "Kamau", "Mutua",
    "Banda", "Phiri", "Mwale", "Chirwa", "Nansubuga", "Okello", "Mukasa",
)  # fmt: skip
PHONE_PREFIX = {"ZA": "+277", "KE": "+2547", "MW": "+2659", "UG": "+2567"}
REGIMENS = ("TDF/3TC/DTG", "TDF/3TC/DTG", "TDF/3TC/DTG", "TDF/3TC/EFV", "ABC/3TC/DTG")
#: WHO 2016 ANC model: eight contacts, by gestation week
ANC_CONTACT_WEEKS = (12, 20, 26, 30, 34, 36, 38, 40)

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Chart:
    """A mother's record at one facility: the EMR's own record number for her."""

    facility_id: str
    client_ref: str


class Journey:
    """Builds the events of one mother and her babies. `spells` are the facilities' offline
    periods: what happens in one reaches the platform when it ends."""

    def __init__(
        self,
        rng: random.Random,
        rates: Rates,
        anchor: date,
        spells: dict[str, list[tuple[datetime, datetime]]],
    ) -> None:
        self.rng = rng
        self.rates = rates
        self.end = datetime.combine(anchor, time(0), tzinfo=UTC)
        self.spells = spells
        self.events: list[EmrEvent] = []

    # -- building blocks ---------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, *choices: tuple[str, float], otherwise: str) -> str:
        """One of `choices` with its probability, else `otherwise`."""
        roll = self.rng.random()
        for value, p in choices:
            if roll < p:
                return value
            roll -= p
        return otherwise

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def clock(self, day: date) -> datetime:
        """A time during clinic hours (06:00-15:00 UTC is 08:00-17:00 in Southern Africa)."""
        return datetime.combine(day, time(6), tzinfo=UTC) + timedelta(minutes=self.rng.randrange(9 * 60))

    def arrival(self, facility_id: str, ready: datetime) -> datetime:
        for start, end in self.spells.get(facility_id, ()):
            if start <= ready < end:
                return end
        return ready

    def emit(
        self,
        service: Service,
        event_type: str,
        chart: Chart,
        when: datetime,
        data: dict[str, Any],
        *,
        infant_ref: str | None = None,
        posted_after: timedelta = timedelta(minutes=5),
        not_before: datetime | None = None,
    ) -> EmrEvent | None:
        """Record an event; None when it has not happened, or not reached the platform, by the anchor."""
        arrives = self.arrival(chart.facility_id, when + posted_after)
        if not_before is not None:
            arrives = max(arrives, not_before)
        if when >= self.end or arrives >= self.end:
            return None
        subject = {"infant_ref": infant_ref} if infant_ref else {"client_ref": chart.client_ref}
        body = {
            "event_id": self.new_id(),
            "type": event_type,
            "facility_id": chart.facility_id,
            "occurred_at": _iso(when),
            **subject,
            "data": data,
        }
        event = EmrEvent(service, body, when, arrives, "accepted")
        self.events.append(event)
        return event

    # -- the mother --------------------------------------------------------------------------

    def mother(self, index: int, seed: int, chart: Chart, elsewhere: str, enrol_day: date) -> None:
        r, rng = self.rates, self.rng
        age = int(rng.triangular(16, 44, 26))
        birth_date = enrol_day - timedelta(days=365 * age + rng.randrange(365))
        national_id = f"{birth_date:%y%m%d}{(index + seed * 7919) % 10**7:07d}" if self.chance(0.85) else None
        person = {
            "given_name": rng.choice(GIVEN_NAMES),
            "family_name": rng.choice(FAMILY_NAMES),
            "birth_date": birth_date.isoformat(),
        }
        if self.chance(0.8):
            prefix = PHONE_PREFIX.get(chart.facility_id.split("-")[1], "+2607")
            person["phone"] = prefix + "".join(str(rng.randrange(10)) for _ in range(8))
        if national_id:
            person["national_id"] = national_id

        positive = self.chance(r.hiv_prevalence)
        known_positive = positive and self.chance(r.known_positive)
        t = self.clock(enrol_day)
        if self.chance(r.postnatal_enrolment):
            self.postnatal_mother(chart, t, person, positive, known_positive)
            return

        gestation = min(36, max(6, int(rng.gauss(20, 6))))
        edd = enrol_day + timedelta(weeks=40 - gestation)
        status = {"hiv_status": "unknown", "on_art": False}
        art_start: date | None = None
        diagnosed: date | None = None
        if known_positive:
            diagnosed = enrol_day - timedelta(days=rng.randrange(30, 3000))
            status = {"hiv_status": "positive", "hiv_status_known_since": diagnosed.isoformat(), "on_art": False}
            if self.chance(r.on_art_if_known):
                art_start = diagnosed + timedelta(days=rng.randrange(0, 60))
                art_start = min(art_start, enrol_day - DAY)
                status.update(on_art=True, art_start_date=art_start.isoformat())
        elif not positive and self.chance(r.documented_negative):
            known = enrol_day - timedelta(days=rng.randrange(7, 90))
            status = {"hiv_status": "negative", "hiv_status_known_since": known.isoformat(), "on_art": False}
        enrolled = self.emit(
            "enrolment",
            "ClientEnrolled",
            chart,
            t,
            {
                **person,
                "status_at_enrolment": "pregnant",
                **status,
                "gestation_weeks": gestation,
                "edd": edd.isoformat(),
            },
        )
        if enrolled is None:
            return
        self.maybe_invalid(chart, enrolled, birth_date)

        # HIV testing at ANC1 for women whose status is not known
        known_status = status["hiv_status"]
        if known_status == "unknown" and self.chance(r.tested_at_anc1):
            self.emit("enrolment", "HivTestRecorded", chart, t + timedelta(minutes=20), _test(positive, "anc"))
            known_status = "positive" if positive else "negative"
            if positive:
                diagnosed = enrol_day
        if known_status == "positive" and art_start is None:
            art_start = self.start_art(chart, enrol_day, t)

        if gestation < 24 and self.chance(r.pregnancy_loss):
            week = rng.randrange(gestation + 1, 28)
            loss = {"outcome": "miscarriage" if self.chance(0.8) else "abortion", "gestation_weeks": week}
            self.emit(
                "enrolment", "PregnancyEnded", chart, self.clock(enrol_day + timedelta(weeks=week - gestation)), loss
            )
            return

        # the rest of pregnancy: ANC contacts, retest or viral load, transfer, death, silence
        delivery_week = 40 - rng.randrange(4) if not self.chance(0.1) else 33 + rng.randrange(4)
        delivery_week = max(delivery_week, gestation + 1)
        delivery_day = enrol_day + timedelta(weeks=delivery_week - gestation, days=rng.randrange(7))
        stops_at: date | None = None
        arrived = enrol_day
        if self.chance(r.lost_in_pregnancy):
            stops_at = enrol_day + timedelta(days=rng.randrange(14, max(15, (delivery_day - enrol_day).days)))
        transfer_at: date | None = None
        if self.chance(r.transfer_out) and (delivery_day - enrol_day).days > 35:
            transfer_at = enrol_day + timedelta(days=rng.randrange(14, (delivery_day - enrol_day).days - 14))
        dies_at: date | None = None
        if self.chance(r.maternal_death / 2) and (delivery_day - enrol_day).days > 28:
            # after any ART start (at most three weeks after diagnosis): nothing is dated after a death
            dies_at = enrol_day + timedelta(days=rng.randrange(22, (delivery_day - enrol_day).days))

        visit_number = 1
        retested = False
        viral_load: tuple[date, int] | None = None
        contacts = [w for w in ANC_CONTACT_WEEKS if w > gestation + 2 and w < delivery_week]
        for week in contacts:
            day = enrol_day + timedelta(weeks=week - gestation, days=rng.randrange(-3, 4))
            if stops_at and day >= stops_at:
                return
            if dies_at and day >= dies_at:
                self.emit("enrolment", "ClientDied", chart, self.clock(dies_at), {}, posted_after=timedelta(days=2))
                return
            if transfer_at and art_start and art_start >= transfer_at:
                transfer_at = art_start + DAY  # she leaves after the ART start already booked here
            if transfer_at and day >= transfer_at:
                moved = self.transfer(
                    chart, elsewhere, transfer_at, delivery_day, person, national_id, known_status, art_start
                )
                transfer_at = None
                if moved is None:
                    return
                (chart, arrived), visit_number = moved, 1
                if dies_at and dies_at <= arrived:
                    dies_at = None
            if day <= arrived:  # her enrolment there is that facility's first contact
                continue
            if not self.chance(r.anc_visit_attended):
                continue
            visit_number += 1
            when = self.clock(day)
            gw = gestation + (day - enrol_day).days // 7
            if (
                self.emit(
                    "enrolment", "AncVisitRecorded", chart, when, {"visit_number": visit_number, "gestation_weeks": gw}
                )
                is None
            ):
                return
            if week in (34, 36) and known_status == "negative" and not retested and self.chance(r.retest_negative):
                retested = True
                converted = self.chance(r.seroconversion)
                self.emit("enrolment", "HivTestRecorded", chart, when + timedelta(minutes=15), _test(converted, "anc"))
                if converted:
                    known_status, diagnosed = "positive", day
                    art_start = self.start_art(chart, day, when)
            if (
                week in (34, 36)
                and art_start is not None
                and art_start < day
                and viral_load is None
                and self.chance(r.viral_load_done)
            ):
                copies = self.viral_load_copies()
                self.emit(
                    "enrolment",
                    "ViralLoadRecorded",
                    chart,
                    when + timedelta(minutes=10),
                    {"copies_per_ml": copies},
                    posted_after=timedelta(days=rng.randrange(5, 15)),
                )
                viral_load = (day, copies)
        if stops_at and delivery_day >= stops_at:
            return
        if dies_at:
            self.emit("enrolment", "ClientDied", chart, self.clock(dies_at), {}, posted_after=timedelta(days=2))
            return
        self.delivery(chart, delivery_day, known_status, positive, diagnosed, art_start, viral_load)

    def transfer(
        self,
        chart: Chart,
        elsewhere: str,
        day: date,
        delivery_day: date,
        person: dict[str, Any],
        national_id: str | None,
        known_status: str,
        art_start: date | None,
    ) -> tuple[Chart, date] | None:
        """Transfer out; perhaps enrol again at another facility of the programme, before she
        delivers. The new chart and the day she enrols there, or None when she is not seen again
        in the programme."""
        self.emit("enrolment", "ClientTransferredOut", chart, self.clock(day), {"to_facility_id": elsewhere})
        arrival_day = min(day + timedelta(days=self.rng.randrange(7, 28)), delivery_day - DAY)
        if national_id is None or not self.chance(self.rates.transfer_in) or arrival_day <= day:
            return None
        new_chart = Chart(elsewhere, chart.client_ref + "-T")
        status: dict[str, Any] = {"hiv_status": known_status, "on_art": art_start is not None}
        if art_start is not None:
            status["art_start_date"] = art_start.isoformat()
        enrolled = self.emit(
            "enrolment",
            "ClientEnrolled",
            new_chart,
            self.clock(arrival_day),
            {**person, "status_at_enrolment": "pregnant", **status},
        )
        return (new_chart, arrival_day) if enrolled is not None else None

    def start_art(self, chart: Chart, diagnosed: date, at: datetime) -> date | None:
        r = self.rates
        if self.chance(r.never_starts_art):
            return None
        day = diagnosed if self.chance(r.same_day_art) else diagnosed + timedelta(days=self.rng.randrange(1, 21))
        when = at + timedelta(minutes=40) if day == diagnosed else self.clock(day)
        started = self.emit("enrolment", "ArtInitiated", chart, when, {"regimen": self.rng.choice(REGIMENS)})
        return day if started is not None else None

    def viral_load_copies(self) -> int:
        if self.chance(self.rates.viral_suppression):
            return self.rng.choice((0, 0, 20, 40, 75, 150, 400))
        return int(10 ** self.rng.uniform(3.05, 5.5))

    def postnatal_mother(
        self, chart: Chart, t: datetime, person: dict[str, Any], positive: bool, known_positive: bool
    ) -> None:
        """Enrolled after delivering elsewhere: status, ART, and a viral load while breastfeeding."""
        r = self.rates
        status: dict[str, Any] = {"hiv_status": "unknown", "on_art": False}
        if known_positive:
            since = t.date() - timedelta(days=self.rng.randrange(60, 3000))
            status = {"hiv_status": "positive", "hiv_status_known_since": since.isoformat(), "on_art": True}
            status["art_start_date"] = (since + timedelta(days=self.rng.randrange(0, 30))).isoformat()
        enrolled = self.emit(
            "enrolment", "ClientEnrolled", chart, t, {**person, "status_at_enrolment": "postnatal", **status}
        )
        if enrolled is None:
            return
        on_art = known_positive
        if not known_positive and self.chance(r.tested_at_anc1):
            self.emit("enrolment", "HivTestRecorded", chart, t + timedelta(minutes=20), _test(positive, "postnatal"))
            if positive:
                on_art = self.start_art(chart, t.date(), t) is not None
        if on_art and self.chance(r.viral_load_done):
            day = t.date() + timedelta(days=self.rng.randrange(80, 100))
            self.emit(
                "enrolment",
                "ViralLoadRecorded",
                chart,
                self.clock(day),
                {"copies_per_ml": self.viral_load_copies()},
                posted_after=timedelta(days=self.rng.randrange(5, 15)),
            )

    # -- delivery and the infants ------------------------------------------------------------

    def delivery(
        self,
        chart: Chart,
        day: date,
        known_status: str,
        positive: bool,
        diagnosed: date | None,
        art_start: date | None,
        viral_load: tuple[date, int] | None,
    ) -> None:
        r, rng = self.rates, self.rng
        when = self.clock(day)
        mother_dies = self.chance(r.maternal_death / 2)
        if known_status == "unknown" and self.chance(0.9):
            test_at = when - timedelta(hours=2)
            self.emit("enrolment", "HivTestRecorded", chart, test_at, _test(positive, "labour_delivery"))
            known_status = "positive" if positive else "negative"
            if positive:
                diagnosed = day
                if not mother_dies:
                    art_start = self.start_art(chart, day, test_at)
        place = self.pick(("facility", r.facility_delivery), ("home", r.home_delivery), otherwise="in_transit")
        skilled = self.chance(0.99) if place == "facility" else place == "home" and self.chance(r.skilled_at_home)
        infants = []
        for n in range(2 if self.chance(r.twins) else 1):
            infant: dict[str, Any] = {
                "infant_ref": f"{chart.client_ref}-B{n + 1}",
                "sex": rng.choice(("female", "male")),
                "birth_weight_g": max(900, min(5000, int(rng.gauss(3100 if n == 0 else 2500, 450)))),
                "outcome": "stillbirth" if self.chance(r.stillbirth) else "live_birth",
            }
            infants.append(infant)
        delivered = self.emit(
            "enrolment",
            "DeliveryRecorded",
            chart,
            when,
            {
                "place": place,
                "skilled_attendant": skilled,
                "maternal_outcome": "died" if mother_dies else "alive",
                "infants": infants,
            },
            posted_after=timedelta(hours=rng.randrange(1, 48)),
        )
        if delivered is None or known_status != "positive":
            return
        # high risk (WHO 2025 updated recommendations on HIV clinical management, infant prophylaxis):
        # ART < 4 weeks at delivery, VL > 1000 or none, diagnosed in labour
        high_risk = (
            art_start is None
            or (day - art_start).days < 28
            or viral_load is None
            or viral_load[1] > 1000
            or diagnosed == day
        )
        lost_at = day + timedelta(days=rng.randrange(14, 400)) if self.chance(r.lost_after_delivery) else None
        breastfeeding_stops: date | None = None
        for infant in infants:
            if infant["outcome"] == "live_birth":
                breastfeeding_stops = self.infant(chart, infant["infant_ref"], day, high_risk, lost_at, delivered)
        if mother_dies:
            return
        died = day + timedelta(days=rng.randrange(30, 500)) if self.chance(r.maternal_death / 2) else None
        if lost_at and died and died >= lost_at:
            died = None
        if art_start is not None and breastfeeding_stops is not None:
            # a viral load every 3 months while breastfeeding (WHO consolidated HIV guidelines 2021,
            # viral load monitoring of pregnant and breastfeeding women; national schedules: 3-6 months)
            for months in (3, 6, 9, 12):
                vl_day = day + timedelta(days=30 * months + rng.randrange(-7, 8))
                if vl_day >= breastfeeding_stops or (lost_at and vl_day >= lost_at) or (died and vl_day >= died):
                    break
                if self.chance(r.viral_load_done):
                    self.emit(
                        "enrolment",
                        "ViralLoadRecorded",
                        chart,
                        self.clock(vl_day),
                        {"copies_per_ml": self.viral_load_copies()},
                        posted_after=timedelta(days=rng.randrange(5, 15)),
                    )
        if died:
            self.emit("enrolment", "ClientDied", chart, self.clock(died), {}, posted_after=timedelta(days=3))

    def infant(
        self,
        chart: Chart,
        ref: str,
        born: date,
        high_risk: bool,
        lost_at: date | None,
        delivered: EmrEvent,
    ) -> date | None:
        """An HIV-exposed infant's follow-up until its final test or an outcome. Returns the day
        breastfeeding stops (None when never breastfed)."""
        r, rng = self.rates, self.rng
        ends = lost_at
        outcome: tuple[date, str] | None = None
        if self.chance(r.infant_death):
            outcome = (born + timedelta(days=rng.randrange(1, 540)), "died")
        elif self.chance(r.infant_transfer_out):
            outcome = (born + timedelta(days=rng.randrange(30, 540)), "transferred_out")
        if outcome and (ends is None or outcome[0] < ends):
            ends = outcome[0]
        else:
            outcome = None

        def post(
            event_type: str, day: date, data: dict[str, Any], lab: bool = False, last: bool = False
        ) -> EmrEvent | None:
            if ends is not None and day >= ends and not last:
                return None
            lag = timedelta(days=rng.randrange(7, 22)) if lab else timedelta(minutes=30)
            return self.emit(
                "followup",
                event_type,
                chart,
                max(self.clock(day), delivered.occurred_at + timedelta(minutes=30)),
                data,
                infant_ref=ref,
                posted_after=lag,
                not_before=delivered.arrives_at,
            )

        if self.chance(r.infant_prophylaxis):
            if high_risk:
                post("InfantProphylaxisRecorded", born, {"drug": "NVP", "duration_weeks": 12})
                post("InfantProphylaxisRecorded", born, {"drug": "AZT", "duration_weeks": 6})
            else:
                post("InfantProphylaxisRecorded", born, {"drug": "NVP", "duration_weeks": 6})

        feeding = self.pick(
            ("exclusive_breastfeeding", r.exclusive_breastfeeding),
            ("replacement_feeding", r.replacement_feeding),
            otherwise="mixed_feeding",
        )
        breastfed = feeding != "replacement_feeding"
        stops = born + timedelta(weeks=rng.randrange(26, 79)) if breastfed else None
        infected_on: date | None = born if self.chance(r.mtct_early) else None
        if infected_on is None and stops and self.chance(r.mtct_breastfeeding):
            infected_on = born + timedelta(days=rng.randrange(60, (stops - born).days))

        samples: list[tuple[date, str]] = []
        if high_risk and self.chance(r.birth_nat_if_high_risk):
            samples.append((born + timedelta(days=rng.randrange(0, 3)), "NAT"))
        if self.chance(r.nat6_on_time):
            samples.append((born + timedelta(days=42 + rng.randrange(-10, 11)), "NAT"))
        elif r.nat6_on_time < 1 and self.chance(r.nat6_late / (1 - r.nat6_on_time)):
            samples.append((born + timedelta(days=70 + rng.randrange(7, 60)), "NAT"))
        if self.chance(r.nat9_done):
            samples.append((born + timedelta(days=270 + rng.randrange(-14, 15)), "NAT"))
        if self.chance(r.final_test_done):
            final = max(born + timedelta(days=548), (stops or born) + timedelta(days=91))
            samples.append((final + timedelta(days=rng.randrange(0, 30)), "antibody"))

        for weeks in (6, 10, 14):
            day = born + timedelta(weeks=weeks, days=rng.randrange(-3, 4))
            if self.chance(r.infant_visit):
                post("InfantVisitRecorded", day, {})
                if weeks == 6:
                    post("InfantFeedingRecorded", day, {"method": feeding})
                    post("InfantCotrimoxazoleRecorded", day, {})  # started at the 6-week visit (WHO 2021)
        if stops is not None:
            post("InfantFeedingRecorded", stops, {"method": "breastfeeding_stopped"})

        for day, test in sorted(samples):
            infected = infected_on is not None and day >= infected_on
            result = post(
                "InfantTestResulted",
                day,
                {"test": test, "result": "positive" if infected else "negative", "confirmatory": False},
                lab=True,
            )
            if result is None or not infected:
                continue
            # a positive NAT calls for a confirmatory sample at once and ART without delay (WHO 2021
            # infant diagnosis algorithm, consolidated HIV guidelines 2021)
            seen = result.arrives_at.date() + timedelta(days=rng.randrange(0, 8))
            if self.chance(r.confirmatory_done):
                post("InfantTestResulted", seen, {"test": "NAT", "result": "positive", "confirmatory": True}, lab=True)
            if self.chance(r.infant_art_if_positive):
                post("InfantArtInitiated", seen, {})
            break
        if outcome is not None:
            post("InfantOutcomeRecorded", outcome[0], {"outcome": outcome[1]}, last=True)
        return stops

    # -- data-entry errors -------------------------------------------------------------------

    def maybe_invalid(self, chart: Chart, enrolled: EmrEvent, birth_date: date) -> None:
        """Now and then an EMR posts an event the platform must refuse (rejected with a code and a
        reason, nothing written: docs/emr-intake.md, "Codes"). Each kind is refused whatever else
        is true of the mother."""
        if not self.chance(self.rates.invalid):
            return
        kind = self.rng.choice(
            ("unknown_client", "occurred_in_future", "gestation_out_of_range", "delivery_before_enrolment")
        )
        when = enrolled.occurred_at + timedelta(days=self.rng.randrange(1, 30))
        if kind == "unknown_client":
            target, data, event_type = (
                Chart(chart.facility_id, chart.client_ref + "-X"),
                {"visit_number": 2},
                "AncVisitRecorded",
            )
        elif kind == "occurred_in_future":
            # a typo in the year: a visit a century ahead
            target, data, event_type = chart, {"visit_number": 2}, "AncVisitRecorded"
        elif kind == "gestation_out_of_range":
            target, data, event_type = chart, {"visit_number": 2, "gestation_weeks": 52}, "AncVisitRecorded"
        else:
            target, event_type = chart, "DeliveryRecorded"
            when = enrolled.occurred_at - timedelta(days=self.rng.randrange(30, 120))
            data = {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [{"infant_ref": chart.client_ref + "-E1", "sex": "female", "outcome": "live_birth"}],
            }
        arrives = max(when, enrolled.arrives_at) + timedelta(minutes=5)
        if kind == "occurred_in_future":
            when = when.replace(year=when.year + 100)
        if arrives >= self.end:
            return
        body = {
            "event_id": self.new_id(),
            "type": event_type,
            "facility_id": target.facility_id,
            "occurred_at": _iso(when),
            "client_ref": target.client_ref,
            "data": data,
        }
        # a record number nobody enrolled is held, as if her enrolment were still to come (it never is)
        expect: Outcome = "pending" if kind == "unknown_client" else "rejected"
        self.events.append(EmrEvent("enrolment", body, when, self.arrival(chart.facility_id, arrives), expect, kind))


def _test(positive: bool, setting: str) -> dict[str, str]:
    return {"result": "positive" if positive else "negative", "setting": setting}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
