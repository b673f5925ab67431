"""A hand-built cohort of 56 mothers and their infants, posted as partner EMRs post: mothers to the
enrolment service, infants to the follow-up service, referrals to the referrals service.

It has late results (posted after later events), a transfer between facilities, deaths of mothers
and infants, duplicates (a batch posted twice, an event twice in one batch), out-of-order arrival
(an infant's 9-month test posted before its 3-month one) and corrections (a positive test voided,
another replaced by a negative one, a delivery voided after its baby's first test). The numbers each
indicator should show are written down by hand in `test_cohort.py`, from the group comments below.

Facilities: A = FAC-ZA-001 and B = FAC-ZA-002 (Cape Town Metro, Western Cape, ZA), C = FAC-ZA-004
(Umgungundlovu, KwaZulu-Natal, ZA), K = FAC-KE-001 (Kisumu, KE). Every time is 09:00 UTC unless
given, so a day is the same day in every time zone the services might use.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

A, B, C, K = "FAC-ZA-001", "FAC-ZA-002", "FAC-ZA-004", "FAC-KE-001"


def at(day: str, hour: int = 9) -> str:
    return f"{day}T{hour:02d}:00:00Z"


@dataclass
class Emr:
    """Posts to the real services and remembers the platform ids they hand out."""

    client: httpx.AsyncClient
    enrolment: str
    followup: str
    referrals: str
    headers: dict[str, str]
    clients: dict[str, str] = field(default_factory=dict)
    infants: dict[str, str] = field(default_factory=dict)

    async def mothers(self, events: list[dict[str, Any]], expect: str = "accepted") -> list[dict]:
        reply = await self.client.post(f"{self.enrolment}/v1/events", json={"events": events}, headers=self.headers)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        wrong = [(events[r["index"]]["type"], r) for r in results if r["status"] != expect]
        assert not wrong, wrong
        for event, result in zip(events, results, strict=True):
            if event["type"] == "ClientEnrolled" and result["client_id"]:
                self.clients.setdefault(event["client_ref"], result["client_id"])
            for infant in result.get("infants") or []:
                self.infants[infant["infant_ref"]] = infant["infant_id"]
        return results

    async def babies(self, events: list[dict[str, Any]], timeout_s: float = 60) -> None:
        """Follow-up knows an infant once it has consumed the delivery: until then its events are
        held (`pending`) and applied when it does; wait until every one is."""
        reply = await self.client.post(f"{self.followup}/v1/events", json={"events": events}, headers=self.headers)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        wrong = [r for r in results if r["status"] not in ("accepted", "pending")]
        assert not wrong, [(events[r["index"]], r) for r in wrong]
        held = [r["event_id"] for r in results if r["status"] == "pending"]
        deadline = asyncio.get_running_loop().time() + timeout_s
        while held:
            states = [
                (await self.client.get(f"{self.followup}/v1/events/{e}", headers=self.headers)).json() for e in held
            ]
            assert all(s["status"] in ("accepted", "pending") for s in states), states
            held = [s["event_id"] for s in states if s["status"] == "pending"]
            if held:
                assert asyncio.get_running_loop().time() < deadline, f"follow-up never learnt of {held}"
                await asyncio.sleep(0.5)

    async def refer(self, subject_ref: str, due_by: str, requested_at: str) -> str:
        body = {
            "subject_type": "client",
            "subject_id": self.clients[subject_ref],
            "from_facility_id": K,
            "referral_service": "family_planning",
            "reason_code": "family_planning_counselling",
            "due_by": due_by,
            "requested_at": requested_at,
        }
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            reply = await self.client.post(f"{self.referrals}/v1/referrals", json=body, headers=self.headers)
            # the referrals service learns of a mother from the platform's events, seconds after her enrolment
            unknown = reply.status_code == 422 and reply.json().get("code") == "unknown_subject"
            if not unknown or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]

    async def act(self, referral_id: str, action: str, **body: str) -> None:
        reply = await self.client.post(
            f"{self.referrals}/v1/referrals/{referral_id}/{action}", json=body, headers=self.headers
        )
        assert reply.status_code == 200, reply.text


def event(kind: str, facility: str, when: str, data: dict | None = None, **who: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "facility_id": facility,
        "occurred_at": when,
        **who,
        "data": data or {},
    }


def enrol(ref: str, facility: str, day: str, hiv: str = "unknown", status: str = "pregnant", **extra) -> dict:
    data = {"age_years": 26, "status_at_enrolment": status, "hiv_status": hiv, "on_art": False, **extra}
    if hiv == "positive":
        data.update(on_art=True, hiv_status_known_since="2023-01-02", art_start_date="2023-01-09")
    elif hiv == "negative":
        data.update(hiv_status_known_since=day)
    return event("ClientEnrolled", facility, at(day), data, client_ref=ref)


def mother(emr: Emr, ref: str) -> dict[str, str]:
    return {"client_id": emr.clients[ref]}


def infant(emr: Emr, ref: str) -> dict[str, str]:
    return {"infant_id": emr.infants[ref]}


def hiv_test(emr: Emr, ref: str, facility: str, when: str, result: str, setting: str = "anc") -> dict:
    return event("HivTestRecorded", facility, when, {"result": result, "setting": setting}, **mother(emr, ref))


def art(emr: Emr, ref: str, facility: str, when: str) -> dict:
    return event("ArtInitiated", facility, when, {"regimen": "TDF/3TC/DTG"}, **mother(emr, ref))


def delivery(emr: Emr, ref: str, facility: str, day: str, skilled: bool = True, babies: int = 1) -> dict:
    data = {
        "place": "facility" if skilled else "home",
        "skilled_attendant": skilled,
        "maternal_outcome": "alive",
        "infants": [
            {"infant_ref": f"{ref}-B{n}", "sex": "female", "birth_weight_g": 3100, "outcome": "live_birth"}
            for n in range(1, babies + 1)
        ],
    }
    return event("DeliveryRecorded", facility, at(day), data, **mother(emr, ref))


def nat(emr: Emr, ref: str, facility: str, day: str, result: str, confirmatory: bool = False) -> dict:
    data = {"test": "NAT", "result": result, "confirmatory": confirmatory}
    return event("InfantTestResulted", facility, at(day), data, **infant(emr, ref))


def refs(group: str, count: int) -> list[str]:
    return [f"{group}-{n}" for n in range(1, count + 1)]


N1, N2, N3, N4, N5 = refs("N1", 8), refs("N2", 4), refs("N3", 3), refs("N4", 3), refs("N5", 3)
N6, N7, N8, N9, N10 = refs("N6", 2), refs("N7", 2), refs("N8", 1), refs("N9", 5), refs("N10", 1)
N11, N12, N13, N14, N16 = refs("N11", 4), refs("N12", 6), refs("N13", 4), refs("N14", 6), refs("N16", 1)
N17, N18 = refs("N17", 2), refs("N18", 1)
#: the N6 women's national ids: how enrolment recognises them at B (unique to this run)
NATIONAL_IDS = {r: f"NID-{r}-{uuid.uuid4().hex[:8]}" for r in N6}
MOTHERS = N1 + N2 + N3 + N4 + N5 + N6 + N7 + N8 + N9 + N10 + N11 + N12 + N13 + N14 + N16 + N17 + N18


def enrolments() -> list[dict]:
    """Every first enrolment (the N6 transfer in at B comes later)."""
    return [
        # N1, A: 8 pregnant women of unknown status, tested negative at ANC1 (2026-11-03)
        *(enrol(r, A, "2026-11-03") for r in N1),
        # N2, A: 4 pregnant women known positive, already on ART (2026-11-04)
        *(enrol(r, A, "2026-11-04", "positive") for r in N2),
        # N3, A: 3 of unknown status, diagnosed positive at ANC1 and started on ART that day (2026-11-05)
        *(enrol(r, A, "2026-11-05") for r in N3),
        # N4, B: 3 of unknown status, never tested (2026-11-06)
        *(enrol(r, B, "2026-11-06") for r in N4),
        # N5, B: 3 of unknown status whose ANC1 test result is posted late (2026-11-09)
        *(enrol(r, B, "2026-11-09") for r in N5),
        # N6, A: 2 enrolled in October, tested negative, transferred out to B, enrolled there in November
        *(enrol(r, A, "2026-10-01", national_id=NATIONAL_IDS[r]) for r in N6),
        # N7, C: 2 negative at enrolment (2026-10-05) who seroconvert in November
        *(enrol(r, C, "2026-10-05", "negative") for r in N7),
        # N8, C: 1 known positive on ART (2026-11-02) who dies on 2026-11-15
        *(enrol(r, C, "2026-11-02", "positive") for r in N8),
        # N9, K: 5 of unknown status tested negative at ANC1 (2026-11-10)
        *(enrol(r, K, "2026-11-10") for r in N9),
        # N10, K: 1 postnatal woman, negative (2026-11-10): not an ANC1 client
        *(enrol(r, K, "2026-11-10", "negative", status="postnatal") for r in N10),
        # N11, C: 4 negative (2026-03-02), delivered 2026-10-15, 3 with a skilled attendant
        *(enrol(r, C, "2026-03-02", "negative") for r in N11),
        # N12, A: 6 known positive (2026-03-02), delivered at A on 2026-09-01
        *(enrol(r, A, "2026-03-02", "positive") for r in N12),
        # N13, B: 4 known positive (2026-05-04), delivered 2026-11-01: 2 at the facility, 2 at home (one twins)
        *(enrol(r, B, "2026-05-04", "positive") for r in N13),
        # N14, A: 6 known positive, the final-outcome birth cohort of 2024 (one enrolled in 2023)
        *(enrol(r, A, "2024-03-04", "positive") for r in N14[:5]),
        enrol(N14[5], A, "2023-10-02", "positive"),
        # N16, C: 1 known positive (2025-06-02), delivered 2026-01-05; her baby's tests arrive out of order
        *(enrol(r, C, "2025-06-02", "positive") for r in N16),
        # N17, C: 2 of unknown status (2026-11-11) whose ANC1 test was entered as positive by mistake: N17-1's is
        # voided, N17-2's replaced by the negative result she had (`corrections`)
        *(enrol(r, C, "2026-11-11") for r in N17),
        # N18, C: 1 known positive on ART (2026-11-02); a delivery on 2026-11-12 entered for her by mistake, with
        # her "baby's" NAT at birth, voided on 2026-11-14 (`corrections`)
        *(enrol(r, C, "2026-11-02", "positive") for r in N18),
    ]


def mother_events(emr: Emr) -> list[dict]:
    """Tests, ART starts, visits, transfers, deaths and deliveries posted on time."""
    return [
        *(hiv_test(emr, r, A, at("2026-11-03", 10), "negative") for r in N1),
        *(hiv_test(emr, r, A, at("2026-11-05", 10), "positive") for r in N3),
        *(art(emr, r, A, at("2026-11-05", 11)) for r in N3),
        # N5: the second ANC visit arrives before the ANC1 test result
        *(event("AncVisitRecorded", B, at("2026-11-16"), {"visit_number": 2}, **mother(emr, r)) for r in N5),
        *(hiv_test(emr, r, A, at("2026-10-01", 10), "negative") for r in N6),
        *(event("ClientTransferredOut", A, at("2026-10-20"), {"to_facility_id": B}, **mother(emr, r)) for r in N6),
        *(hiv_test(emr, r, C, at("2026-11-10"), "positive") for r in N7),
        *(art(emr, r, C, at("2026-11-10", 11)) for r in N7),
        *(event("ClientDied", C, at("2026-11-15"), {}, **mother(emr, r)) for r in N8),
        *(hiv_test(emr, r, K, at("2026-11-10", 10), "negative") for r in N9),
        *(delivery(emr, r, C, "2026-10-15", skilled=r != N11[3]) for r in N11),
        *(delivery(emr, r, A, "2026-09-01") for r in N12),
        delivery(emr, N13[0], B, "2026-11-01"),
        delivery(emr, N13[1], B, "2026-11-01"),
        delivery(emr, N13[2], B, "2026-11-01", skilled=False),
        delivery(emr, N13[3], B, "2026-11-01", skilled=False, babies=2),
        *(delivery(emr, r, A, "2024-11-05") for r in N14[:4]),
        delivery(emr, N14[4], A, "2024-10-07"),
        delivery(emr, N14[5], A, "2024-03-04"),
        *(delivery(emr, r, C, "2026-01-05") for r in N16),
        # N17's ANC1 tests entered as positive, N18's delivery entered by mistake (corrected in `corrections`)
        *(hiv_test(emr, r, C, at("2026-11-11", 10), "positive") for r in N17),
        delivery(emr, N18[0], C, "2026-11-12"),
    ]


def transfers_in() -> list[dict]:
    """N6 at B: new to the facility, known to the platform by national id, so a transfer in."""
    return [enrol(r, B, "2026-11-02", national_id=NATIONAL_IDS[r]) for r in N6]


def baby(ref: str) -> str:
    return f"{ref}-B1"


def infant_events(emr: Emr) -> list[dict]:
    """Infant events posted on time; the late ones are in `late_infant_events`."""
    f1, f2, f3, f4, _, f6 = (baby(r) for r in N14)
    i1, i2, i3, i4, i5, _ = (baby(r) for r in N12)
    return [
        # N12 infants (born 2026-09-01): first NAT at 6 weeks (42 days); i5 positive, confirmed, on ART
        *(nat(emr, i, A, "2026-10-13", "negative") for i in (i1, i2, i3, i4)),
        nat(emr, i5, A, "2026-10-13", "positive"),
        nat(emr, i5, A, "2026-10-20", "positive", confirmatory=True),
        event("InfantArtInitiated", A, at("2026-10-21"), {}, **infant(emr, i5)),
        # N13 infants (born 2026-11-01): two with a NAT at birth; the third dies
        nat(emr, baby(N13[0]), B, "2026-11-02", "negative"),
        nat(emr, baby(N13[1]), B, "2026-11-02", "negative"),
        event("InfantOutcomeRecorded", B, at("2026-11-10"), {"outcome": "died"}, **infant(emr, baby(N13[2]))),
        # N14, born 2024-11-05: f1 uninfected (negative NAT, weaned, negative antibody test at 18 months)
        nat(emr, f1, A, "2024-12-17", "negative"),
        event("InfantFeedingRecorded", A, at("2025-05-05"), {"method": "replacement_feeding"}, **infant(emr, f1)),
        event(
            "InfantTestResulted",
            A,
            at("2026-05-05"),
            {"test": "antibody", "result": "negative", "confirmatory": False},
            **infant(emr, f1),
        ),
        # f2 died, f3 transferred out, f4 infected (positive NAT confirmed) and on ART
        event("InfantOutcomeRecorded", A, at("2025-02-01"), {"outcome": "died"}, **infant(emr, f2)),
        event("InfantOutcomeRecorded", A, at("2025-05-01"), {"outcome": "transferred_out"}, **infant(emr, f3)),
        nat(emr, f4, A, "2024-12-17", "positive"),
        nat(emr, f4, A, "2024-12-24", "positive", confirmatory=True),
        event("InfantArtInitiated", A, at("2024-12-26"), {}, **infant(emr, f4)),
        # f5 (born 2024-10-07) has no news: follow-up closes it as unknown (or LTFU) at 24 months
        # f6 (born 2024-03-04) died
        event("InfantOutcomeRecorded", A, at("2024-05-01"), {"outcome": "died"}, **infant(emr, f6)),
        # N16's baby (born 2026-01-05): its 9-month NAT arrives first
        nat(emr, baby(N16[0]), C, "2026-10-05", "negative"),
        # N18's "baby" (the delivery voided later): a NAT at birth
        nat(emr, baby(N18[0]), C, "2026-11-13", "negative"),
    ]


def late_mother_events(emr: Emr) -> list[dict]:
    """N5's ANC1 results (11-09) arrive after her visit of 11-16; N11's postnatal retest is posted twice
    in one batch (the second is a duplicate)."""
    retest = hiv_test(emr, N11[0], C, at("2026-11-12"), "negative", setting="postnatal")
    return [*(hiv_test(emr, r, B, at("2026-11-09", 10), "negative") for r in N5), retest, dict(retest)]


def late_infant_events(emr: Emr) -> list[dict]:
    """i6's 6-week NAT, and N16's baby's 3-month NAT (91 days): its first virologic test after all."""
    return [nat(emr, baby(N12[5]), A, "2026-10-13", "negative"), nat(emr, baby(N16[0]), C, "2026-04-06", "negative")]


def voided(event_id: str, facility: str, when: str) -> dict:
    return event("EventVoided", facility, when, {"voided_event_id": event_id, "reason": "entered_in_error"})


async def corrections(emr: Emr, on_time: list[dict]) -> None:
    """The clinic (C) corrects N17's positive ANC1 tests and N18's delivery, posted on time (`mother_events`;
    N18's baby's NAT at birth with the infant events)."""
    wrong = [e for e in on_time if e["type"] == "HivTestRecorded" and e["client_id"] in {emr.clients[r] for r in N17}]
    (delivered,) = [e for e in on_time if e["type"] == "DeliveryRecorded" and e["client_id"] == emr.clients[N18[0]]]
    replacement = {**hiv_test(emr, N17[1], C, at("2026-11-11", 10), "negative"), "replaces": wrong[1]["event_id"]}
    await emr.mothers(
        [
            voided(wrong[0]["event_id"], C, at("2026-11-12")),
            replacement,
            voided(delivered["event_id"], C, at("2026-11-14")),
        ]
    )


async def post(emr: Emr) -> None:
    """The whole cohort, in the order an unreliable network of clinics might deliver it."""
    await emr.mothers(enrolments())
    on_time = mother_events(emr)
    await emr.mothers(on_time)
    # a clinic that did not see the reply posts the same batch again: nothing happens twice
    await emr.mothers(on_time, expect="duplicate")
    transferred = await emr.mothers(transfers_in())
    assert [r["client_id"] for r in transferred] == [emr.clients[r] for r in N6], "the transfer is the same woman"
    await emr.babies(infant_events(emr))
    late = late_mother_events(emr)
    results = await emr.mothers(late[:-1])
    assert results
    reply = await emr.client.post(f"{emr.enrolment}/v1/events", json={"events": [late[-1]]}, headers=emr.headers)
    assert reply.json()["results"][0]["status"] == "duplicate"
    await emr.babies(late_infant_events(emr))
    await corrections(emr, on_time)
    await referrals(emr)


async def referrals(emr: Emr) -> None:
    """Six referrals from K, made by hand: the only referrals of facility K. The referrals service
    expires an open referral the day after its due date, so each one acted on is acted on at once,
    and none is left open in November (after November it would expire)."""
    r1 = await emr.refer(N9[0], "2026-11-27", at("2026-11-10"))
    await emr.act(r1, "complete", at=at("2026-11-18"))
    r2 = await emr.refer(N9[1], "2026-11-28", at("2026-11-10"))
    await emr.act(r2, "complete", at=at("2026-11-20"))
    r3 = await emr.refer(N9[2], "2026-11-29", at("2026-11-10"))
    await emr.act(r3, "decline", at=at("2026-11-12"), outcome_code="client_refused")
    r5 = await emr.refer(N9[4], "2026-12-15", at("2026-11-10"))
    await emr.act(r5, "accept")
    await emr.act(r5, "complete")
    await emr.refer(N10[0], "2026-10-20", at("2026-10-05"))  # r6 is never closed: it expires
    r7 = await emr.refer(N9[3], "2026-11-26", at("2026-11-10"))
    await emr.act(r7, "cancel", at=at("2026-11-11"), outcome_code="entered_in_error")
