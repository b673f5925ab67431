from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings

from . import presets
from .eid_schedule import EidRules
from .mentoring.rules import MentoringRules
from .mother_schedule import MotherRules


class Settings(ServiceSettings):
    """The clinical rules come from the preset `PMTCT_CLINICAL_PRESET` (followup/presets.py); nested
    variables override single values on top of it, with `__` in their names: `PMTCT_EID__GRACE_DAYS=21`."""

    model_config = SettingsConfigDict(env_prefix="PMTCT_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "followup"

    #: a shipped preset's name (who-2025, kenya-2022, south-africa-2023) or a TOML file's path
    clinical_preset: str = presets.DEFAULT_PRESET
    #: the preset as loaded (what `eid` and `mother_viral_load` were built from)
    preset: presets.ClinicalPreset | None = None
    eid: EidRules = EidRules()
    #: the mother's rules (the preset's `[mother]`; the name is older than its retesting rules)
    mother_viral_load: MotherRules = MotherRules()
    #: the Mentor Mothers' work: caseload rule, tracing attempts, topics (followup.mentoring)
    mentoring: MentoringRules = MentoringRules()
    #: days without contact after an item became overdue before ClientLostToFollowUp
    lost_to_follow_up_days: int = Field(90, ge=1)

    #: how often the durable timers look for due, overdue and lost subjects
    timer_interval_s: float = Field(2.0, gt=0)
    timer_batch_size: int = Field(200, ge=1)
    #: a subject's timers wait this long after its last input, so that a backfill burst (a delivery
    #: dated weeks ago, then its results) is applied before anything is announced as overdue
    timer_settle_s: float = Field(15.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_clinical_preset(cls, data: Any) -> Any:
        """Load and validate the preset (an invalid one stops start-up, naming the field), then lay
        what the environment or the caller set on top of its sections."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset")
        if not isinstance(preset, presets.ClinicalPreset):
            preset = presets.load(str(data.get("clinical_preset") or presets.DEFAULT_PRESET))
        eid = data.get("eid")
        if not isinstance(eid, EidRules):
            overrides = eid if isinstance(eid, dict) else {}
            try:
                eid = EidRules.model_validate({**preset.infant.model_dump(by_alias=True), **overrides})
            except ValueError as exc:
                raise presets.PresetError(f"PMTCT_EID overrides on preset {preset.preset.title!r}: {exc}") from exc
        mother = data.get("mother_viral_load")
        if not isinstance(mother, MotherRules):
            overrides = mother if isinstance(mother, dict) else {}
            try:
                mother = MotherRules.model_validate({**preset.mother.model_dump(), **overrides})
            except ValueError as exc:
                raise presets.PresetError(
                    f"PMTCT_MOTHER_VIRAL_LOAD overrides on preset {preset.preset.title!r}: {exc}"
                ) from exc
        return {**data, "preset": preset, "eid": eid, "mother_viral_load": mother}
