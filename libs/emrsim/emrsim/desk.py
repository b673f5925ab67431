"""The referral desk: what Mentor Mothers do through the referrals API once the EMRs have posted.

They refer some of their mothers by hand (family planning, psychosocial support, partner and
family testing, TB screening), and work the open referrals of their facility: most are accepted,
many of the accepted are completed, a few are declined. Automatic referrals (EID sample, tracing,
ART) are mostly closed by the platform itself when the event that meets them arrives.

Each decision is drawn from a `random.Random` seeded with the programme's seed and the mother's
record number or the referral's id, so a rerun on the same platform decides the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import httpx

MANUAL_SERVICES = ("family_planning", "psychosocial_support", "partner_family_testing", "tb_screening")
PAST = {"accept": "accepted", "complete": "completed", "decline": "declined"}


@dataclass(frozen=True, slots=True)
class DeskRates:
    #: mothers a Mentor Mother refers by hand
    manual_referral: float = 0.15
    #: open referrals accepted; of the accepted, completed; of the rest, declined by the client
    accept: float = 0.7
    complete: float = 0.6
    decline: float = 0.1


class ReferralDesk:
    def __init__(
        self,
        client: httpx.AsyncClient,
        referrals_url: str,
        mint: Callable[[str, str, list[str]], str],
        seed: int,
        today: date,
        rates: DeskRates = DeskRates(),
    ) -> None:
        self.client = client
        self.url = referrals_url.rstrip("/")
        self.mint = mint
        self.seed = seed
        self.today = today
        self.rates = rates
        self.done: Counter[str] = Counter()
        self._headers: dict[str, dict[str, str]] = {}

    def headers(self, facility_id: str) -> dict[str, str]:
        if facility_id not in self._headers:
            token = self.mint(f"mentor-mothers-{facility_id}", "referrals:read referrals:write", [facility_id])
            self._headers[facility_id] = {"Authorization": f"Bearer {token}"}
        return self._headers[facility_id]

    async def refer_by_hand(self, mothers: Iterable[tuple[str, str, str]]) -> None:
        """`mothers`: (facility_id, client_ref, client_id) of the programme's enrolled mothers. A mother
        enrolled at two facilities (a transfer) is one client: she is referred once, from the first."""
        referred: set[str] = set()
        for facility_id, client_ref, client_id in sorted(mothers):
            if client_id in referred:
                continue
            referred.add(client_id)
            rng = random.Random(f"emrsim:{self.seed}:desk:{client_ref}")
            if rng.random() >= self.rates.manual_referral:
                continue
            body = {
                "subject_type": "client",
                "subject_id": client_id,
                "from_facility_id": facility_id,
                "referral_service": rng.choice(MANUAL_SERVICES),
                "reason_code": "mentor_mother_assessment",
                "due_by": (self.today + timedelta(days=rng.randrange(14, 60))).isoformat(),
            }
            response = await self.post_referral(body, facility_id)
            if response.status_code == 201:
                self.done["referred by hand"] += 1
            elif response.status_code == 409 and _code(response) == "referral_already_open":
                # the platform referred her for it already (adherence support after an unsuppressed VL)
                self.done["already referred"] += 1
            else:
                self.done[f"refused {response.status_code} {_code(response)}"] += 1

    async def post_referral(self, body: dict, facility_id: str, patience_s: float = 60) -> httpx.Response:
        """POST /v1/referrals; a 422 `unknown_subject` is retried for a while: the referrals service
        learns of a mother from the platform's events, a few seconds after her EMR posted them."""
        deadline = asyncio.get_running_loop().time() + patience_s
        while True:
            response = await self.client.post(f"{self.url}/v1/referrals", json=body, headers=self.headers(facility_id))
            if response.status_code != 422 or _code(response) != "unknown_subject":
                return response
            if asyncio.get_running_loop().time() > deadline:
                return response
            await asyncio.sleep(0.5)

    async def work_open_referrals(self, facility_ids: Iterable[str]) -> None:
        for facility_id in facility_ids:
            for referral in await self.open_referrals(facility_id):
                await self.decide(facility_id, referral)

    async def open_referrals(self, facility_id: str) -> list[dict]:
        found, offset = [], 0
        while True:
            response = await self.client.get(
                f"{self.url}/v1/referrals",
                params={"facility_id": facility_id, "status": "requested", "limit": 1000, "offset": offset},
                headers=self.headers(facility_id),
            )
            response.raise_for_status()
            page = response.json()["items"]
            found += page
            if len(page) < 1000:
                return found
            offset += len(page)

    async def decide(self, facility_id: str, referral: dict) -> None:
        rng = random.Random(f"emrsim:{self.seed}:desk:{referral['id']}")
        roll = rng.random()
        if roll < self.rates.accept:
            steps = ["accept"] + (["complete"] if rng.random() < self.rates.complete else [])
        elif roll < self.rates.accept + self.rates.decline:
            steps = ["decline"]
        else:
            return  # still waiting for someone to act on it
        for action in steps:
            body = {"outcome_code": "client_declined"} if action == "decline" else {}
            response = await self.client.post(
                f"{self.url}/v1/referrals/{referral['id']}/{action}", json=body, headers=self.headers(facility_id)
            )
            # 409: the platform closed it meanwhile (the event that meets it arrived): nothing to do
            self.done[PAST[action] if response.status_code == 200 else f"{action}: {response.status_code}"] += 1
            if response.status_code != 200:
                return


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""
