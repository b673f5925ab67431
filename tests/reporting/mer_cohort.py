"""A hand-built cohort for the MER 2.8 definitions: 79 mothers and 40 HIV-exposed infants over
PEPFAR FY2024-FY2026, as the events the services publish (built from the contracts and sent to the
topics the reporting consumer reads). `test_mer_cohort.py` writes down by hand what each indicator
and disaggregation should show, from the group comments below.

Facilities (`FACILITIES`, a registry of their own): A = FAC-LS-001 and B = FAC-LS-002 (district
Maseru, province Central, LS), C = FAC-LS-003 (Leribe, Northern, LS), D = FAC-SZ-001 (Hhohho,
Hhohho Region, SZ). Every event happens at 09:00 UTC, so its day is the same in any zone.

Groups of mothers (FY2026 = 2025-10-01 to 2026-09-30 unless said), age at ANC1 in brackets:
- M1  A 2025-11-03: 10 of unknown status tested negative on the ANC1 day (5 aged 22, 5 aged 27); two of
      them transfer in at B on 2026-01-05 (no second ANC1)
- M2  A 2025-11-04: 6 known positive on ART since 2022 (3 aged 33, 3 aged 38), gestation 12 weeks;
      deliver at A 2026-05-04 (skilled); the first has twins: 7 infants, NAT at birth, one positive
      (confirmed 05-11, ART 05-12)
- M3  A 2026-02-02: 4 of unknown status tested positive at ANC1 and started ART that day (2 aged 17,
      2 aged 22); deliver at A 2026-06-15 (the fourth at home); the first has twins: 5 infants, NAT
      at 6 weeks (2026-07-27) negative
- M4  B 2026-02-10: 5 negative known since 2024-05-01, before this pregnancy (gestation 14 weeks),
      not retested (aged 27): status not known at ANC1
- M5  B 2026-02-11: 3 negative known since 2024-01-15, retested negative at ANC1 (aged 42)
- M6  B 2026-03-02: 3 negative known since 2026-01-20, in this pregnancy (gestation 16 weeks: it began
      2025-11-10): recent negatives (aged 14)
- M7  C 2026-04-06: 4 of unknown status tested negative at ANC1 (aged 20); positive at a later ANC visit
      on 2026-07-06 (post-ANC1, pregnancy), ART 07-07; deliver at C 2026-09-14; 4 infants, NAT at birth
      negative
- M8  C 2026-04-07: 3 of unknown status, not tested at ANC1; tested negative at ANC visit 2 on 2026-05-05
      (aged 26): status not known at ANC1, a post-ANC1 test in May
- M9  C 2026-01-12: 3 known positive, not on ART (aged 35); deliver at C 2026-06-01; ART 2026-06-20,
      after the delivery (postnatal ART); 3 infants, NAT at 70 days (2026-08-10): 2 negative, 1 positive
- M10 C 2026-01-13: 2 known positive on ART since 2025-12-01, gestation 20 weeks (the pregnancy began
      2025-08-26): new on ART in this pregnancy (aged 45); deliver at C 2026-06-08; 2 infants, NAT at
      birth negative
- M11 D 2026-05-04: 4 enrolled postnatally, unknown status, tested at enrolment (setting postnatal):
      3 negative, 1 positive (aged 24); the positive one's infant, born 2026-01-20, NAT on 2026-05-05
      (105 days) positive, ART 05-06
- M12 D 2026-03-09: 3 enrolled at their third ANC visit (a visit 3 recorded that day), tested negative
      that day (aged 29): not ANC1 clients here, post-ANC1 tests
- M13 D 2026-02-16: 4 of unknown status tested negative at ANC1 (aged 31); deliver at D 2026-08-10 (2
      with a skilled attendant); tested at labour and delivery that day: 2 negative, 1 positive (ART
      that day), 1 not tested; the positive one's infant NAT at birth negative
- M14 A 2026-09-01: 2 of unknown status tested negative at ANC1 (aged 19): the results are posted late
      (`LATE`), after the first submission
- M15 A 2024-11-04 (FY2025): 5 of unknown status tested negative at ANC1 (aged 25)
- M16 B 2025-03-03 (FY2025): 4 known positive on ART since 2020 (aged 30); deliver at B 2025-09-01;
      4 infants, NAT at 6 weeks (2025-10-13, FY2026) negative; the first positive at 9 months
      (2026-06-01, 273 days), ART 06-05
- M19 C 2025-01-06 (FY2025): 2 known positive on ART since 2024-06-03 (aged 23); deliver at C 2025-07-07;
      their next pregnancy is opened by its ANC1 visit (visit 1, `opens_episode`, no new enrolment) at C on
      2026-03-16 (aged 24): new ANC1 clients of FY2026, known positive, already on ART
- M18 A 2023-05-01: 12 known positive on ART (aged 28), the mothers of the PMTCT_FO birth cohort of FY2024
      (reported in FY2026): 13 infants at A, F1/F2 twins:
      F1-F4 born 2023-11-06, NAT 6 weeks negative, breastfeeding stopped 2024-11-06, antibody test at
      18 months (2025-05-06) negative: uninfected;
      F5 born 2023-12-04, NAT 2024-01-15 positive, ART: infected;
      F6 born 2024-01-08, died 2024-06-01;  F7 born 2024-02-05, transferred out 2024-08-01: unknown;
      F8 born 2024-03-04, lost to follow-up 2025-01-10, nothing after: unknown;
      F9 born 2024-04-01, lost 2024-12-01, then a visit 2025-02-03: no documented outcome;
      F10 born 2024-05-06, nothing recorded; follow-up's calendar "unknown" at 24 months is ignored;
      F11 born 2024-06-03, NAT 6 weeks negative, breastfeeding stopped 2025-06-03, antibody at 18 months
      (2025-12-03) negative, posted late (`LATE`): no outcome, then uninfected;
      F12 born 2024-07-01, NAT 6 weeks negative, still breastfeeding, positive NAT at 20 months
      (2026-03-02, after the 18-month visit window): no documented outcome by 18 months;
      F13 born 2024-09-02, replacement feeding from birth, NAT at 91 days (2024-12-02) negative: uninfected.
- Referrals at A due in September 2026: one completed, one expired, one cancelled.
- Today's follow-up (the dashboard): M10's two infants' 6-week NAT overdue since 2026-08-01, no test since;
  an M3 infant's overdue on 2026-07-20, tested on 07-27 (resolved); the first M2 mother's viral load overdue
  since 2026-08-01, the second's overdue then done on 08-15; the first M12 mother lost to follow-up on
  2026-07-01, nothing since; F8 lost (above). None of these changes an indicator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pmtct_events import Event
from pmtct_events import enrolment as en
from pmtct_events import followup as fu
from pmtct_events import referrals as rf

A, B, C, D = "FAC-LS-001", "FAC-LS-002", "FAC-LS-003", "FAC-SZ-001"
FACILITIES = """facility_id,name,district,province,country,dhis2_org_unit
FAC-LS-001,Maseru Filter Clinic,Maseru,Central,LS,LsMsuFlt001
FAC-LS-002,Qoaling Health Centre,Maseru,Central,LS,LsMsuQol002
FAC-LS-003,Leribe Hospital,Leribe,Northern,LS,LsLrbHsp003
FAC-SZ-001,Mbabane Public Health Unit,Hhohho,Hhohho Region,SZ,SzHhoMbb001
"""


def at(day: str | date) -> datetime:
    return datetime.fromisoformat(str(day)).replace(hour=9, tzinfo=UTC)


def hiv_test_overdue(client: uuid.UUID, facility: str, day: str) -> fu.ClientHivTestOverdue:
    """Follow-up announced her ANC1 HIV test overdue on `day`."""
    return fu.ClientHivTestOverdue(
        client_id=client,
        facility_id=facility,
        occurred_at=at(day),
        item_id=uuid.uuid4(),
        kind="mother_hiv_test_anc1",
        window_end=date.fromisoformat(day) - timedelta(days=1),
        overdue_on=date.fromisoformat(day),
    )


@dataclass
class Cohort:
    events: list[Event] = field(default_factory=list)
    #: posted after the first submission
    late: list[Event] = field(default_factory=list)

    def mother(
        self,
        facility: str,
        day: str,
        age: int,
        hiv: str = "unknown",
        status: str = "pregnant",
        on_art: bool = False,
        **extra,
    ) -> uuid.UUID:
        client = uuid.uuid4()
        self.events.append(
            en.ClientEnrolled(
                client_id=client,
                facility_id=facility,
                occurred_at=at(day),
                status_at_enrolment=status,
                age_years=age,
                hiv_status=hiv,
                on_art=on_art,
                **extra,
            )
        )
        return client

    def test(self, client, facility, day, result, setting="anc", age=None, late=False, before="unknown") -> None:
        event = en.HivTestRecorded(
            client_id=client,
            facility_id=facility,
            occurred_at=at(day),
            result=result,
            setting=setting,
            status_before=before,
            age_years=age,
        )
        (self.late if late else self.events).append(event)

    def art(self, client, facility, day) -> None:
        self.events.append(en.ArtInitiated(client_id=client, facility_id=facility, occurred_at=at(day)))

    def visit(self, client, facility, day, number) -> None:
        self.events.append(
            en.AncVisitRecorded(client_id=client, facility_id=facility, occurred_at=at(day), visit_number=number)
        )

    def deliver(self, client, facility, day, hiv="positive", skilled=True, babies=1) -> list[uuid.UUID]:
        infants = [uuid.uuid4() for _ in range(babies)]
        self.events.append(
            en.DeliveryRecorded(
                client_id=client,
                facility_id=facility,
                occurred_at=at(day),
                place="facility" if skilled else "home",
                skilled_attendant=skilled,
                maternal_outcome="alive",
                infants=[en.DeliveredInfant(infant_id=i, sex="female", outcome="live_birth") for i in infants],
                mother_hiv_status=hiv,
            )
        )
        return infants

    def hei(self, infant, client, facility, born) -> None:
        self.events.append(
            fu.InfantFollowUpStarted(
                infant_id=infant,
                client_id=client,
                facility_id=facility,
                occurred_at=at(born),
                birth_date=date.fromisoformat(born),
                high_risk=False,
            )
        )

    def infant_test(self, infant, client, facility, born, day, result, test="NAT", confirmatory=False, late=False):
        age = (date.fromisoformat(day) - date.fromisoformat(born)).days
        event = fu.InfantTestResulted(
            infant_id=infant,
            client_id=client,
            facility_id=facility,
            occurred_at=at(day),
            test=test,
            result=result,
            confirmatory=confirmatory,
            age_days=age,
        )
        (self.late if late else self.events).append(event)

    def infant_art(self, infant, client, facility, day) -> None:
        self.events.append(
            fu.InfantArtInitiated(infant_id=infant, client_id=client, facility_id=facility, occurred_at=at(day))
        )

    def overdue(self, infant, client, facility, day) -> None:
        self.events.append(
            fu.InfantTestOverdue(
                infant_id=infant,
                client_id=client,
                facility_id=facility,
                occurred_at=at(day),
                item_id=uuid.uuid4(),
                kind="nat_6_weeks",
                test="NAT",
                window_end=date.fromisoformat(day) - timedelta(days=1),
                overdue_on=date.fromisoformat(day),
            )
        )

    def feeding(self, infant, client, facility, day, method) -> None:
        self.events.append(
            fu.InfantFeedingRecorded(
                infant_id=infant, client_id=client, facility_id=facility, occurred_at=at(day), method=method
            )
        )

    def outcome(self, infant, client, facility, born, day, outcome) -> None:
        self.events.append(
            fu.InfantFinalOutcomeRecorded(
                infant_id=infant,
                client_id=client,
                facility_id=facility,
                occurred_at=at(day),
                outcome=outcome,
                birth_date=date.fromisoformat(born),
                age_days=(date.fromisoformat(day) - date.fromisoformat(born)).days,
            )
        )

    def referral(self, facility, client, due: str, *steps: tuple[str, str]) -> None:
        referral = uuid.uuid4()
        common = {
            "referral_id": referral,
            "facility_id": facility,
            "subject_type": "client",
            "subject_id": client,
            "referral_service": "family_planning",
            "urgency": "routine",
            "due_by": date.fromisoformat(due),
            "origin": "manual",
            "reason_code": "family_planning_counselling",
        }
        kinds = {
            "requested": rf.ReferralCreated,
            "completed": rf.ReferralCompleted,
            "expired": rf.ReferralExpired,
            "cancelled": rf.ReferralCancelled,
        }
        for version, (status, day) in enumerate((("requested", "2026-09-01"), *steps), start=1):
            self.events.append(kinds[status](**common, occurred_at=at(day), status=status, version=version))


def build() -> Cohort:
    c = Cohort()
    # M1
    m1 = [c.mother(A, "2025-11-03", 22 if n < 5 else 27) for n in range(10)]
    for n, m in enumerate(m1):
        c.test(m, A, "2025-11-03", "negative", age=22 if n < 5 else 27)
    for m in m1[:2]:
        c.events.append(
            en.ClientTransferredOut(client_id=m, facility_id=A, occurred_at=at("2025-12-20"), to_facility_id=B)
        )
        c.events.append(
            en.ClientEnrolled(
                client_id=m,
                facility_id=B,
                occurred_at=at("2026-01-05"),
                status_at_enrolment="pregnant",
                age_years=22,
                hiv_status="negative",
                hiv_status_known_since=date(2025, 11, 3),
                on_art=False,
                transfer_in=True,
            )
        )
    # M2
    m2: list[uuid.UUID] = [
        c.mother(
            A,
            "2025-11-04",
            33 if n < 3 else 38,
            "positive",
            on_art=True,
            art_start_date=date(2022, 1, 10),
            hiv_status_known_since=date(2022, 1, 3),
            gestation_weeks=12,
        )
        for n in range(6)
    ]
    positive_m2 = None
    for n, m in enumerate(m2):
        babies = c.deliver(m, A, "2026-05-04", babies=2 if n == 0 else 1)
        for b in babies:
            c.hei(b, m, A, "2026-05-04")
            if positive_m2 is None:
                positive_m2 = b
                c.infant_test(b, m, A, "2026-05-04", "2026-05-04", "positive")
                c.infant_test(b, m, A, "2026-05-04", "2026-05-11", "positive", confirmatory=True)
                c.infant_art(b, m, A, "2026-05-12")
            else:
                c.infant_test(b, m, A, "2026-05-04", "2026-05-04", "negative")
    for n, m in enumerate(m2[:2]):
        c.events.append(
            fu.ClientViralLoadOverdue(
                client_id=m,
                facility_id=A,
                occurred_at=at("2026-08-01"),
                item_id=uuid.uuid4(),
                kind="mother_viral_load",
                window_end=date(2026, 7, 31),
                overdue_on=date(2026, 8, 1),
            )
        )
        if n == 1:
            c.events.append(
                en.ViralLoadRecorded(
                    client_id=m, facility_id=A, occurred_at=at("2026-08-15"), copies_per_ml=40, suppressed=True
                )
            )
    # M3
    for n in range(4):
        age = 17 if n < 2 else 22
        m = c.mother(A, "2026-02-02", age)
        c.test(m, A, "2026-02-02", "positive", age=age)
        c.art(m, A, "2026-02-02")
        for b in c.deliver(m, A, "2026-06-15", skilled=n != 3, babies=2 if n == 0 else 1):
            c.hei(b, m, A, "2026-06-15")
            if n == 0:
                c.overdue(b, m, A, "2026-07-20")
            c.infant_test(b, m, A, "2026-06-15", "2026-07-27", "negative")
    # M4, M5, M6
    for n in range(5):
        m = c.mother(B, "2026-02-10", 27, "negative", hiv_status_known_since=date(2024, 5, 1), gestation_weeks=14)
        if n == 0:  # her ANC1 test overdue, never tested: in today's overdue tests
            c.events.append(hiv_test_overdue(m, B, "2026-03-03"))
    for n in range(3):
        m = c.mother(B, "2026-02-11", 42, "negative", hiv_status_known_since=date(2024, 1, 15))
        if n == 0:  # overdue, then tested on the 11th: not overdue today
            c.events.append(hiv_test_overdue(m, B, "2026-02-09"))
        c.test(m, B, "2026-02-11", "negative", age=42, before="negative")
    for _ in range(3):
        c.mother(B, "2026-03-02", 14, "negative", hiv_status_known_since=date(2026, 1, 20), gestation_weeks=16)
    # M7
    for _ in range(4):
        m = c.mother(C, "2026-04-06", 20)
        c.test(m, C, "2026-04-06", "negative", age=20)
        c.test(m, C, "2026-07-06", "positive", age=20, before="negative")
        c.art(m, C, "2026-07-07")
        for b in c.deliver(m, C, "2026-09-14"):
            c.hei(b, m, C, "2026-09-14")
            c.infant_test(b, m, C, "2026-09-14", "2026-09-14", "negative")
    # M8
    for _ in range(3):
        m = c.mother(C, "2026-04-07", 26)
        c.visit(m, C, "2026-05-05", 2)
        c.test(m, C, "2026-05-05", "negative", age=26)
    # M9
    for n in range(3):
        m = c.mother(C, "2026-01-12", 35, "positive", hiv_status_known_since=date(2025, 6, 1))
        (b,) = c.deliver(m, C, "2026-06-01")
        c.art(m, C, "2026-06-20")
        c.hei(b, m, C, "2026-06-01")
        c.infant_test(b, m, C, "2026-06-01", "2026-08-10", "positive" if n == 0 else "negative")
    # M10
    for _ in range(2):
        m = c.mother(
            C,
            "2026-01-13",
            45,
            "positive",
            on_art=True,
            art_start_date=date(2025, 12, 1),
            hiv_status_known_since=date(2025, 11, 24),
            gestation_weeks=20,
        )
        (b,) = c.deliver(m, C, "2026-06-08")
        c.hei(b, m, C, "2026-06-08")
        c.infant_test(b, m, C, "2026-06-08", "2026-06-08", "negative")
        c.overdue(b, m, C, "2026-08-01")
    # M11
    for n in range(4):
        m = c.mother(D, "2026-05-04", 24, status="postnatal")
        c.test(m, D, "2026-05-04", "positive" if n == 3 else "negative", setting="postnatal", age=24)
        if n == 3:
            b = uuid.uuid4()
            c.hei(b, m, D, "2026-01-20")
            c.infant_test(b, m, D, "2026-01-20", "2026-05-05", "positive")
            c.infant_art(b, m, D, "2026-05-06")
    # M12
    for n in range(3):
        m = c.mother(D, "2026-03-09", 29)
        if n == 0:
            c.events.append(
                fu.ClientLostToFollowUp(
                    facility_id=D,
                    occurred_at=at("2026-07-01"),
                    subject_type="client",
                    subject_id=m,
                    client_id=m,
                    last_seen_on=date(2026, 3, 9),
                )
            )
        c.visit(m, D, "2026-03-09", 3)
        c.test(m, D, "2026-03-09", "negative", age=29)
    # M13
    for n in range(4):
        m = c.mother(D, "2026-02-16", 31)
        c.test(m, D, "2026-02-16", "negative", age=31)
        hiv = "positive" if n == 2 else "negative"
        babies = c.deliver(m, D, "2026-08-10", hiv=hiv, skilled=n < 2)
        if n < 3:
            c.test(m, D, "2026-08-10", hiv, setting="labour_delivery", age=31, before="negative")
        if n == 2:
            c.art(m, D, "2026-08-10")
            c.hei(babies[0], m, D, "2026-08-10")
            c.infant_test(babies[0], m, D, "2026-08-10", "2026-08-10", "negative")
    # M14: results late
    for _ in range(2):
        m = c.mother(A, "2026-09-01", 19)
        c.test(m, A, "2026-09-01", "negative", age=19, late=True)
    # M15, M16 (FY2025)
    for _ in range(5):
        m = c.mother(A, "2024-11-04", 25)
        c.test(m, A, "2024-11-04", "negative", age=25)
    for n in range(4):
        m = c.mother(B, "2025-03-03", 30, "positive", on_art=True, art_start_date=date(2020, 2, 3))
        (b,) = c.deliver(m, B, "2025-09-01")
        c.hei(b, m, B, "2025-09-01")
        c.infant_test(b, m, B, "2025-09-01", "2025-10-13", "negative")
        if n == 0:
            c.infant_test(b, m, B, "2025-09-01", "2026-06-01", "positive")
            c.infant_art(b, m, B, "2026-06-05")
    # M19: a second pregnancy opened by ANC1 (enrolment's pregnancy episodes)
    for _ in range(2):
        m = c.mother(C, "2025-01-06", 23, "positive", on_art=True, art_start_date=date(2024, 6, 3))
        c.deliver(m, C, "2025-07-07")
        c.events.append(
            en.AncVisitRecorded(
                client_id=m,
                facility_id=C,
                occurred_at=at("2026-03-16"),
                visit_number=1,
                opens_episode=True,
                age_years=24,
                pregnancy_number=2,
            )
        )
    # M18 and the FO cohort
    mothers = [
        c.mother(A, "2023-05-01", 28, "positive", on_art=True, art_start_date=date(2021, 3, 1)) for _ in range(12)
    ]
    births = ["2023-11-06"] * 4 + [
        "2023-12-04",
        "2024-01-08",
        "2024-02-05",
        "2024-03-04",
        "2024-04-01",
        "2024-05-06",
        "2024-06-03",
        "2024-07-01",
        "2024-09-02",
    ]
    owners = [mothers[0], mothers[0], *mothers[1:]]
    infants = []
    for index, (m, born) in enumerate(zip(owners, births, strict=True)):
        if index != 1:  # F1 and F2 are twins: one delivery
            babies = c.deliver(m, A, born, babies=2 if index == 0 else 1)
            infants.extend(babies)
    assert len(infants) == 13
    for infant, m, born in zip(infants, owners, births, strict=True):
        c.hei(infant, m, A, born)
    f = dict(enumerate(infants, start=1))
    own = dict(enumerate(owners, start=1))
    born = dict(enumerate(births, start=1))

    def six_weeks(n: int) -> str:
        return str(date.fromisoformat(born[n]) + timedelta(days=42))

    for n in (1, 2, 3, 4):
        c.infant_test(f[n], own[n], A, born[n], six_weeks(n), "negative")
        c.feeding(f[n], own[n], A, str(date.fromisoformat(born[n]) + timedelta(days=14)), "exclusive_breastfeeding")
        c.feeding(f[n], own[n], A, "2024-11-06", "breastfeeding_stopped")
        c.infant_test(f[n], own[n], A, born[n], "2025-05-06", "negative", test="antibody")
    c.infant_test(f[5], own[5], A, born[5], "2024-01-15", "positive")
    c.infant_art(f[5], own[5], A, "2024-01-20")
    c.outcome(f[6], own[6], A, born[6], "2024-06-01", "died")
    c.outcome(f[7], own[7], A, born[7], "2024-08-01", "transferred_out")
    for n, lost_on in ((8, "2025-01-10"), (9, "2024-12-01")):
        c.events.append(
            fu.ClientLostToFollowUp(
                facility_id=A,
                occurred_at=at(lost_on),
                subject_type="infant",
                subject_id=f[n],
                client_id=own[n],
                last_seen_on=date.fromisoformat(born[n]),
            )
        )
    c.events.append(
        fu.InfantVisitRecorded(infant_id=f[9], client_id=own[9], facility_id=A, occurred_at=at("2025-02-03"))
    )
    c.outcome(f[10], own[10], A, born[10], "2026-05-06", "unknown")
    c.infant_test(f[11], own[11], A, born[11], six_weeks(11), "negative")
    c.feeding(f[11], own[11], A, "2025-06-03", "breastfeeding_stopped")
    c.infant_test(f[11], own[11], A, born[11], "2025-12-03", "negative", test="antibody", late=True)
    c.infant_test(f[12], own[12], A, born[12], six_weeks(12), "negative")
    c.feeding(f[12], own[12], A, "2024-08-01", "exclusive_breastfeeding")
    c.infant_test(f[12], own[12], A, born[12], "2026-03-02", "positive")
    c.feeding(f[13], own[13], A, born[13], "replacement_feeding")
    c.infant_test(f[13], own[13], A, born[13], "2024-12-02", "negative")
    # referrals at A, due in September 2026
    c.referral(A, m1[2], "2026-09-20", ("completed", "2026-09-10"))
    c.referral(A, m1[3], "2026-09-21", ("expired", "2026-09-22"))
    c.referral(A, m1[4], "2026-09-22", ("cancelled", "2026-09-05"))
    return c
