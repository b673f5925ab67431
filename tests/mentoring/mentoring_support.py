"""Helpers of the Mentor Mother tests: the platform's services as real processes (the session's
`platform` fixture), an EMR posting events, staff and their apps' tokens, polling until an event
has travelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import httpx

from pmtct_tools.testing import TestIssuer, unique

#: the facility these tests work at (few other tests use it); OTHER: a second one
FACILITY = "FAC-MW-002"
OTHER = "FAC-MW-001"
APP_SCOPES = "worklist:read caseload:read contacts:write"

T = TypeVar("T")


def ago(days: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def event(type_: str, occurred_at: datetime, data: dict[str, Any], facility: str = FACILITY, **subject: Any) -> dict:
    return {
        "event_id": str(uuid4()),
        "type": type_,
        "facility_id": facility,
        "occurred_at": occurred_at.isoformat(),
        "data": data,
        **subject,
    }


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60) -> T:
    """`probe()` until it returns something other than None (an event still on its way)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.3)


@dataclass
class Programme:
    """The platform as its users reach it: an EMR, an admin, staff with their apps."""

    platform: Any
    issuer: TestIssuer

    def http(self, service: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.platform.url(service), timeout=30)

    def emr(self, facility: str = FACILITY) -> dict[str, str]:
        return self.issuer.headers("events:write", [facility], client_id="emr")

    @property
    def admin(self) -> dict[str, str]:
        return self.issuer.headers("admin", ["*"], client_id="admin-console")

    def app(self, staff_id: str, facility: str = FACILITY) -> dict[str, str]:
        """Her app's token: its subject is her staff id."""
        return self.issuer.headers(APP_SCOPES, [facility], client_id="mentor-app", subject=staff_id)

    async def staff(self, role: str, facility: str = FACILITY, prefix: str = "MM") -> str:
        staff_id = unique(prefix)
        async with self.http("followup") as http:
            r = await http.put(
                f"/v1/staff/{staff_id}", json={"role": role, "facility_id": facility}, headers=self.admin
            )
        assert r.status_code == 200, r.text
        return staff_id

    async def post(self, service: str, *events: dict, facility: str = FACILITY) -> list[dict]:
        async with self.http(service) as http:
            r = await http.post("/v1/events", json={"events": list(events)}, headers=self.emr(facility))
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert all(x["status"] == "accepted" for x in results), results
        return results

    async def mother(
        self, delivered_days_ago: float | None = 60, facility: str = FACILITY, **personal: Any
    ) -> tuple[str, str | None]:
        """A woman living with HIV on ART, enrolled pregnant at 16 weeks 150 days before she
        delivered `delivered_days_ago` (None: still pregnant). Her client id and her infant's."""
        ref = {"client_ref": unique("ANC")}
        events = [
            event(
                "ClientEnrolled",
                ago((delivered_days_ago or 0) + 150),
                {
                    "age_years": 27,
                    "status_at_enrolment": "pregnant",
                    "hiv_status": "positive",
                    "hiv_status_known_since": ago(700).date().isoformat(),
                    "on_art": True,
                    "art_start_date": ago(600).date().isoformat(),
                    "gestation_weeks": 16,
                    **personal,
                },
                facility,
                **ref,
            )
        ]
        if delivered_days_ago is not None:
            events.append(
                event(
                    "DeliveryRecorded",
                    ago(delivered_days_ago),
                    {
                        "place": "facility",
                        "skilled_attendant": True,
                        "maternal_outcome": "alive",
                        "infants": [{"infant_ref": unique("HEI"), "sex": "female", "outcome": "live_birth"}],
                    },
                    facility,
                    **ref,
                )
            )
        results = await self.post("enrolment", *events, facility=facility)
        infants = results[-1].get("infants") or []
        return results[0]["client_id"], (infants[0]["infant_id"] if infants else None)

    async def assign(self, client_id: str, staff_id: str, by: dict[str, str]) -> dict:
        """Assign through the API, once follow-up knows the mother (her enrolment is on its way)."""

        async def put() -> dict | None:
            async with self.http("followup") as http:
                r = await http.put(f"/v1/clients/{client_id}/mentor", json={"staff_id": staff_id}, headers=by)
            if r.status_code == 404:
                return None
            assert r.status_code == 200, r.text
            return r.json()

        return await eventually(put, f"follow-up knows mother {client_id}")

    async def records(self, staff_id: str, *records: dict, facility: str = FACILITY) -> dict:
        """Her app posts a batch of records (`POST /v1/contacts`); the whole reply."""
        async with self.http("followup") as http:
            r = await http.post("/v1/contacts", json={"events": list(records)}, headers=self.app(staff_id, facility))
        assert r.status_code == 200, r.text
        return r.json()

    async def referrals(self, subject_id: str, done: Callable[[list[dict]], bool], facility: str = FACILITY) -> list:
        """The subject's referrals, once `done` holds for them (the records are on their way)."""
        headers = self.issuer.headers("referrals:read", [facility], client_id="clinic")

        async def probe() -> list | None:
            async with self.http("referrals") as http:
                r = await http.get("/v1/referrals", params={"subject_id": subject_id}, headers=headers)
            found = r.json()["items"]
            return found if done(found) else None

        return await eventually(probe, f"referrals of {subject_id}", timeout_s=90)

    async def figures(self, facility: str, period: str, **params: Any) -> dict:
        headers = self.issuer.headers("reports:read", [facility], client_id="manager")
        async with self.http("reporting") as http:
            r = await http.get(
                "/v1/programme", params={"facility_id": facility, "period": period, **params}, headers=headers
            )
        assert r.status_code == 200, r.text
        return r.json()


def of(referrals: list[dict], service: str) -> list[dict]:
    return [r for r in referrals if r["referral_service"] == service]
