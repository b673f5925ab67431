"""What the worklist, the infant's record and the published plans call each item: one place.

A routine test of the clinical preset is called by the preset's own label ("NAT at 6 weeks",
Kenya's "PCR at 6 months"); a step of the prophylaxis regimen and an HEI visit by what the preset
says of them ("Prophylaxis: NVP from week 0", "HEI visit at 10 weeks"); every other item by its
kind's name below. Every kind has a name (a test holds it), so no item is shown as a raw code or
without a name.
"""

from __future__ import annotations

from pmtct_events.followup import ScheduleKind

KIND_LABELS: dict[ScheduleKind, str] = {
    # the infant's tests (the WHO preset's points; a preset's own label wins)
    ScheduleKind.nat_birth: "NAT at birth",
    ScheduleKind.nat_6_weeks: "NAT at 6 weeks",
    ScheduleKind.nat_9_months: "NAT at 9 months",
    ScheduleKind.routine_nat: "Routine NAT",
    ScheduleKind.entry_nat: "Entry NAT",
    ScheduleKind.confirmatory_nat: "Confirmatory NAT",
    ScheduleKind.repeat_test: "Repeat test (after an indeterminate or discordant result)",
    ScheduleKind.nat_after_antibody: "NAT after a positive antibody test",
    ScheduleKind.final_test: "Final HIV test",
    # the infant's care
    ScheduleKind.record_feeding_status: "Record feeding status",
    ScheduleKind.infant_art_start: "Start ART",
    ScheduleKind.infant_prophylaxis: "Start infant prophylaxis",
    ScheduleKind.infant_cotrimoxazole: "Cotrimoxazole",
    ScheduleKind.hei_visit: "HEI clinic visit",
    # the mother's
    ScheduleKind.mother_hiv_test_anc1: "HIV test at ANC1",
    ScheduleKind.mother_hiv_retest_third_trimester: "HIV retest in the third trimester",
    ScheduleKind.mother_hiv_test_delivery: "HIV test at delivery",
    ScheduleKind.mother_hiv_retest_postpartum: "Postpartum HIV retest",
    ScheduleKind.mother_hiv_retest_inconclusive: "HIV retest after an inconclusive result",
    ScheduleKind.mother_art_start: "Start ART (mother)",
    ScheduleKind.mother_viral_load: "Mother's viral load",
    ScheduleKind.mother_adherence_support: "Enhanced adherence support",
    ScheduleKind.mother_repeat_viral_load: "Repeat viral load",
}


def of_kind(kind: ScheduleKind) -> str:
    """The name of an item of this kind that the preset does not name itself."""
    return KIND_LABELS[kind]
