"""Clinical presets: the national choices of the follow-up rules, as data files.

`PMTCT_CLINICAL_PRESET` (default `who-2025`) names a file of `followup/presets/` (`who-2025.toml`,
`kenya-2022.toml`, `south-africa-2023.toml`), or is the path of a TOML file of the same shape. The
file is validated when the settings load, so a service with an invalid preset does not start; the
error names the file and the field (`infant.test_points.1.to.weeks: ...`). docs/clinical-rules.md
shows every field and the presets side by side.

A preset has one section per subject of care:

- `[infant]`: the HIV-exposed infant's schedule (`eid_schedule.EidRules`): test points, windows,
  grace, final diagnosis, high-risk rules, prophylaxis regimens.
- `[mother]`: the mother's rules (`mother_schedule.MotherRules`): HIV retesting while she is not
  known positive, ART start, viral loads and the response to an unsuppressed one.

Variables still override single values on top of the preset (`PMTCT_EID__GRACE_DAYS=21`,
`PMTCT_MOTHER_VIRAL_LOAD__UNSUPPRESSED_COPIES=1000`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .eid_schedule import EidRules
from .mother_schedule import MotherRules

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "who-2025"


class PresetInfo(BaseModel):
    """What the preset is and what it follows (shown in docs/clinical-rules.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1)
    #: the guidelines the values come from: document, year, section
    sources: tuple[str, ...] = Field(min_length=1)


class ClinicalPreset(BaseModel):
    """A whole preset file. New sections are new fields (each a frozen model with defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: PresetInfo
    infant: EidRules = EidRules()
    mother: MotherRules = MotherRules()


class PresetError(ValueError):
    """An unknown or invalid preset: the message names the file and each offending field."""


def available() -> list[str]:
    """The presets shipped with the service."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def path_of(name: str) -> Path:
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    return PRESETS_DIR / f"{name}.toml"


def load(name: str = DEFAULT_PRESET) -> ClinicalPreset:
    """The preset `name` (a shipped preset's name, or a TOML file's path), validated."""
    path = path_of(name)
    if not path.is_file():
        raise PresetError(
            f"PMTCT_CLINICAL_PRESET={name!r}: no such preset ({path}); shipped presets: {', '.join(available())}"
        )
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"clinical preset {path}: not valid TOML: {exc}") from exc
    return parse(data, str(path))


def parse(data: dict[str, Any], source: str = "<preset>") -> ClinicalPreset:
    try:
        return ClinicalPreset.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise PresetError(f"clinical preset {source} is invalid: {problems}") from exc
