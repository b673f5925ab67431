"""Clinical presets (followup/presets.py): the national choices are data files selected by
`PMTCT_CLINICAL_PRESET`, validated when the settings load (an invalid preset stops start-up with a
message naming the field), and the schedule follows them: its test points, their names on the
worklist, the final test after breastfeeding, the regimens."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from followup import presets
from followup.eid_schedule import EidRules, FeedingFact, InfantFacts, infant_plan, prophylaxis_for
from followup.schedule import add_months
from followup.settings import Settings
from pmtct_events.followup import FeedingMethod, ProphylaxisDrug, ScheduleKind

B = date(2030, 1, 15)


def routine(rules: EidRules, high_risk: bool = False) -> list[tuple[str, str | None, date]]:
    plan = infant_plan(InfantFacts(birth_date=B, high_risk=high_risk, follow_up_from=B), rules)
    return [
        (r.kind.value, r.label, r.window_start)
        for r in plan.requirements
        if r.kind
        in (ScheduleKind.nat_birth, ScheduleKind.nat_6_weeks, ScheduleKind.nat_9_months, ScheduleKind.routine_nat)
    ]


def test_the_shipped_presets_load_and_the_who_file_is_the_code_default() -> None:
    assert presets.available() == ["kenya-2022", "south-africa-2023", "who-2025"]
    for name in presets.available():
        preset = presets.load(name)
        assert preset.preset.sources, f"{name} cites its sources"
    assert presets.load("who-2025").infant == EidRules(), "who-2025.toml and eid_schedule's defaults say the same"


def test_the_default_preset_is_who_2025_and_the_setting_selects_another(monkeypatch) -> None:
    assert Settings().clinical_preset == "who-2025"
    monkeypatch.setenv("PMTCT_CLINICAL_PRESET", "kenya-2022")
    settings = Settings()
    assert settings.preset is not None and settings.preset.preset.title.startswith("Kenya")
    assert [p.code for p in settings.eid.test_points] == ["nat_6_weeks", "nat_6_months", "nat_12_months"]


def test_a_variable_still_overrides_one_value_of_the_preset(monkeypatch) -> None:
    monkeypatch.setenv("PMTCT_CLINICAL_PRESET", "south-africa-2023")
    monkeypatch.setenv("PMTCT_EID__GRACE_DAYS", "21")
    settings = Settings()
    assert settings.eid.grace_days == 21
    assert settings.eid.test_points[1].label == "PCR at 10 weeks", "the rest is the preset's"


def test_an_unknown_preset_stops_start_up_naming_the_setting_and_the_shipped_presets(monkeypatch) -> None:
    monkeypatch.setenv("PMTCT_CLINICAL_PRESET", "narnia-2031")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "PMTCT_CLINICAL_PRESET='narnia-2031'" in message and "who-2025" in message


@pytest.mark.parametrize(
    "broken, field",
    [
        (
            '[[infant.test_points]]\ncode = "nat_6_weeks"\nlabel = "x"\nfrom = { weeks = 8 }\nto = { weeks = 4 }\n',
            "infant.test_points.0",
        ),
        ("[infant]\ngrace_days = -3\n", "infant.grace_days"),
        ("[infant]\ngrace_dayz = 14\n", "infant.grace_dayz"),
        (
            '[[infant.high_risk_prophylaxis]]\ndrug = "ASPIRIN"\nduration_weeks = 6\n',
            "infant.high_risk_prophylaxis.0.drug",
        ),
        (
            '[[infant.test_points]]\ncode = "a1"\nlabel = "x"\nfrom = {}\nto = {}\n'
            '[[infant.test_points]]\ncode = "a1"\nlabel = "y"\nfrom = {}\nto = {}\n',
            "infant",
        ),
    ],
    ids=[
        "a window that ends before it begins",
        "a negative grace",
        "an unknown field",
        "a drug not in the vocabulary",
        "a test point twice",
    ],
)
def test_an_invalid_preset_stops_start_up_with_a_message_naming_the_field(tmp_path, monkeypatch, broken, field) -> None:
    path = tmp_path / "country.toml"
    path.write_text('[preset]\ntitle = "A country"\nsources = ["its guideline"]\n' + broken)
    monkeypatch.setenv("PMTCT_CLINICAL_PRESET", str(path))
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert str(path) in message and f"{field}" in message, message


def test_kenya_tests_at_6_weeks_6_months_and_12_months_and_names_the_items_for_what_they_are() -> None:
    rules = presets.load("kenya-2022").infant
    assert routine(rules) == [
        ("nat_6_weeks", "PCR at 6 weeks", B + timedelta(weeks=6)),
        ("routine_nat", "PCR at 6 months", add_months(B, 6)),
        ("routine_nat", "PCR at 12 months", add_months(B, 12)),
    ]
    stopped = InfantFacts(
        birth_date=B,
        high_risk=False,
        follow_up_from=B,
        feeding=(FeedingFact(add_months(B, 20), FeedingMethod.breastfeeding_stopped),),
    )
    final = next(r for r in infant_plan(stopped, rules).requirements if r.kind is ScheduleKind.final_test)
    assert final.window_start == add_months(B, 20) + timedelta(weeks=6), "6 weeks after breastfeeding ends"


def test_south_africa_tests_every_exposed_infant_at_birth_10_weeks_and_6_months() -> None:
    rules = presets.load("south-africa-2023").infant
    assert routine(rules) == [
        ("nat_birth", "PCR at birth", B),
        ("routine_nat", "PCR at 10 weeks", B + timedelta(weeks=10)),
        ("routine_nat", "PCR at 6 months", add_months(B, 6)),
    ]


def test_each_preset_has_its_regimens() -> None:
    who, kenya = presets.load("who-2025").infant, presets.load("kenya-2022").infant
    assert [p.drug for p in prophylaxis_for(True, who)] == [ProphylaxisDrug.AZT_3TC_NVP, ProphylaxisDrug.NVP]
    assert [p.drug for p in prophylaxis_for(False, who)] == [ProphylaxisDrug.NVP]
    assert [p.drug for p in prophylaxis_for(False, kenya)] == [ProphylaxisDrug.AZT_NVP, ProphylaxisDrug.NVP]
