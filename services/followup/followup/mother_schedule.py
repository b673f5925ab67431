"""The viral-load schedule of a mother living with HIV: a VL at 34–36 weeks of gestation and every
3 months while breastfeeding (WHO consolidated HIV guidelines 2021, viral load monitoring of
pregnant and breastfeeding women; national schedules say every 3–6 months), configurable per
country through `MotherRules`.

1. Late pregnancy: one VL in weeks 34–36 of gestation (from the expected delivery date), if she is
   known positive by then. A delivery before week 34 means there is no such window; a delivery
   before the VL was taken cancels it (the postnatal schedule takes over).
2. Breastfeeding: a VL every 3 months after delivery while any of her infants breastfeeds (at most
   24 months), from her diagnosis on if she was diagnosed after delivery.
3. A VL meets the latest item whose window has opened (two weeks' tolerance); earlier open ones are
   superseded. Death or transfer out cancels what is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field

from pmtct_events.followup import ScheduleKind

from .schedule import Requirement, Slot, add_months, cancel_open, frozen, match_routine

GESTATION_WEEKS = 40
#: a delivery at least this long before the expected date belongs to an earlier pregnancy
EARLIER_PREGNANCY_WEEKS = 20


class MotherRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    late_pregnancy_from_weeks: int = Field(34, ge=4, le=42)
    late_pregnancy_to_weeks: int = Field(36, ge=4, le=42)
    breastfeeding_every_months: int = Field(3, ge=1)
    window_days: int = Field(28, ge=1)
    grace_days: int = Field(14, ge=0)
    early_tolerance_days: int = Field(14, ge=0)
    max_breastfeeding_months: int = Field(24, ge=0)


@dataclass(frozen=True, slots=True)
class MotherFacts:
    positive_since: date | None = None
    edd: date | None = None
    delivered_on: date | None = None
    #: the day the last of her infants stopped breastfeeding; None while one still does (or unknown)
    breastfeeding_until: date | None = None
    viral_loads: tuple[date, ...] = ()
    died_on: date | None = None
    transferred_out_on: date | None = None


def mother_plan(f: MotherFacts, rules: MotherRules) -> list[Requirement]:
    """The viral loads she needs given the facts so far (rules 1–3 of the module docstring)."""
    if not rules.enabled or f.positive_since is None:
        return []
    slots: list[Slot] = []
    pregnancy: Slot | None = None
    delivered_this_pregnancy = False
    if f.edd is not None:
        begin = f.edd - timedelta(weeks=GESTATION_WEEKS - rules.late_pregnancy_from_weeks)
        end = f.edd - timedelta(weeks=GESTATION_WEEKS - rules.late_pregnancy_to_weeks)
        delivered_this_pregnancy = f.delivered_on is not None and f.delivered_on >= f.edd - timedelta(
            weeks=EARLIER_PREGNANCY_WEEKS
        )
        too_early = delivered_this_pregnancy and f.delivered_on is not None and f.delivered_on < begin
        if f.positive_since <= end and not too_early:
            pregnancy = Slot(ScheduleKind.mother_viral_load, None, begin, end, rules.grace_days)
            slots.append(pregnancy)
    if f.delivered_on is not None:
        limit = f.breastfeeding_until or add_months(f.delivered_on, rules.max_breastfeeding_months)
        k = 1
        while (begin := add_months(f.delivered_on, k * rules.breastfeeding_every_months)) < limit:
            if begin >= f.positive_since and (pregnancy is None or begin > pregnancy.window_start):
                end = begin + timedelta(days=rules.window_days)
                slots.append(Slot(ScheduleKind.mother_viral_load, None, begin, end, rules.grace_days))
            k += 1
    for on in sorted(f.viral_loads):
        match_routine(slots, on, lambda _s: True, rules.early_tolerance_days)
    if pregnancy is not None and delivered_this_pregnancy and pregnancy.open:
        pregnancy.cancel_reason = "delivered"
    if f.died_on is not None:
        cancel_open(slots, "died")
    if f.transferred_out_on is not None:
        cancel_open(slots, "transferred_out")
    return frozen(slots)
