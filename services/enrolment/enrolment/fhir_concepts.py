"""The codes an EMR's FHIR resources carry (CIEL, LOINC, SNOMED CT, the EMR's own), read through a
FHIR R4 ConceptMap into the platform's intake vocabulary (`TARGET_SYSTEM`, the codes of `Target`).

The default map ships with the service (`data/fhir-conceptmap.json`; where every code in it comes
from is in the element's `comment` and in docs/fhir-intake.md); `PMTCT_FHIR_CONCEPT_MAP` names
another file, for a site that codes differently (its own encounter types, another CIEL source URL).
A group without `source` matches codings without a `system`: OpenMRS's FHIR2 module puts the
concept's own uuid first, system-less (for a CIEL concept, `<CIEL id>` followed by `A`s).

A site's map need hold only its own codes: a group with `unmapped` `{"mode": "other-map", "url":
DEFAULT_URL}` falls through to the shipped map for every code it does not hold.

A coded element is known when any of its codings is in the map, and all its known codings must
agree; otherwise `lookup` answers None and the entry is refused, naming the codes (never guessed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B.conceptmap import ConceptMap
from pydantic import ValidationError

#: the code system of the platform's intake vocabulary: the targets of the ConceptMap
TARGET_SYSTEM = "https://pmtct.org/fhir/CodeSystem/emr-intake"
DEFAULT_MAP = Path(__file__).parent / "data" / "fhir-conceptmap.json"
#: the canonical URL of the shipped map (a site's map names it in `group.unmapped.url`)
DEFAULT_URL = "https://pmtct.org/fhir/ConceptMap/emr-intake"


class Target(StrEnum):
    """What a code means to the platform: the target codes of the ConceptMap."""

    # what an Observation is (its `code`)
    hiv_test = "hiv-test"
    infant_nat = "infant-nat"
    infant_antibody = "infant-antibody"
    viral_load = "viral-load"
    gestation_weeks = "gestation-weeks"
    edd = "edd"
    pregnancy_status = "pregnancy-status"
    art_start_date = "art-start-date"
    hiv_diagnosis_date = "hiv-diagnosis-date"
    anc_visit_number = "anc-visit-number"
    birth_weight = "birth-weight"
    # an Observation's coded answer (`valueCodeableConcept`)
    positive = "positive"
    negative = "negative"
    indeterminate = "indeterminate"
    yes = "yes"
    no = "no"
    # what an Encounter is (its `type`)
    anc_visit = "anc-visit"
    delivery = "delivery"
    postnatal_visit = "postnatal-visit"
    # what an EpisodeOfCare is (its `type`)
    pmtct_programme = "pmtct-programme"
    # a medicine (MedicationRequest / MedicationDispense, or the Medication they name)
    art = "art"
    nevirapine = "NVP"
    zidovudine = "AZT"
    lamivudine = "3TC"
    # a RelatedPerson's relationship to the patient it names
    mother = "mother"
    # how a pregnancy ended without a delivery (a Condition's or an Observation's code)
    miscarriage = "miscarriage"
    abortion = "abortion"
    ectopic = "ectopic"
    # why she left the programme (an Observation's code and its answer; an Encounter's discharge disposition)
    discontinuation_reason = "discontinuation-reason"
    transferred_out = "transferred-out"


class ConceptMapError(ValueError):
    """The ConceptMap file cannot be used (the service refuses to start with it)."""


@dataclass(frozen=True, slots=True)
class Concepts:
    """A loaded ConceptMap: (source system or None, source code) -> target."""

    url: str
    table: Mapping[tuple[str | None, str], Target]
    #: the canonical URLs of the maps unmapped codes fall through to (`group.unmapped`, other-map)
    falls_through_to: frozenset[str] = frozenset()

    def lookup(self, concept: Any) -> Target | None:
        """The target of a CodeableConcept (as JSON), or None when no coding is known or two known
        codings disagree."""
        found = {self.table.get((c.get("system"), str(c.get("code")))) for c in codings(concept)}
        found.discard(None)
        return found.pop() if len(found) == 1 else None  # type: ignore[return-value]


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code") is not None]


def describe(concept: Any) -> str:
    """The codes of a CodeableConcept as a reason names them: `system|code` (or `|code`), text."""
    named = [f"{c.get('system') or ''}|{c.get('code')}" for c in codings(concept)]
    if not named and isinstance(concept, dict) and concept.get("text"):
        named = [repr(concept["text"])]
    return ", ".join(named) or "no code"


def parse(resource: Any) -> Concepts:
    """A ConceptMap (as JSON) as a lookup table; refuses one that is not a valid R4 ConceptMap,
    maps to another vocabulary, or maps a code to two targets."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "ConceptMap":
        raise ConceptMapError("not a FHIR ConceptMap (resourceType ConceptMap)")
    try:
        ConceptMap.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConceptMapError(
            f"not a valid R4 ConceptMap: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    table: dict[tuple[str | None, str], Target] = {}
    other: set[str] = set()
    for g, group in enumerate(resource.get("group") or ()):
        unmapped = group.get("unmapped") or {}
        if unmapped.get("mode") == "other-map":
            if unmapped.get("url") != DEFAULT_URL:
                raise ConceptMapError(f"group[{g}].unmapped: other-map can name only the shipped map, {DEFAULT_URL}")
            other.add(DEFAULT_URL)
        if group.get("target", TARGET_SYSTEM) != TARGET_SYSTEM:
            raise ConceptMapError(f"group[{g}] maps to {group.get('target')!r}, not to {TARGET_SYSTEM}")
        source = group.get("source")
        for e, element in enumerate(group.get("element") or ()):
            targets = {t.get("code") for t in element.get("target") or () if t.get("equivalence") != "unmatched"}
            if len(targets) != 1:
                raise ConceptMapError(f"group[{g}].element[{e}] ({element.get('code')}) needs exactly one target")
            code = targets.pop()
            try:
                target = Target(code)
            except ValueError:
                raise ConceptMapError(
                    f"group[{g}].element[{e}]: {code!r} is not a code of {TARGET_SYSTEM}"
                    f" ({', '.join(t.value for t in Target)})"
                ) from None
            key = (source, str(element.get("code")))
            if table.get(key, target) != target:
                raise ConceptMapError(f"{source or ''}|{key[1]} maps to both {table[key]} and {target}")
            table[key] = target
    return Concepts(url=str(resource.get("url") or ""), table=table, falls_through_to=frozenset(other))


@lru_cache(maxsize=4)
def load(path: Path | None = None) -> Concepts:
    """The ConceptMap at `path` (None: the one shipped with the service)."""
    file = path or DEFAULT_MAP
    try:
        raw = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConceptMapError(f"{file}: {exc}") from None
    try:
        found = parse(raw)
    except ConceptMapError as exc:
        raise ConceptMapError(f"{file}: {exc}") from None
    if DEFAULT_URL in found.falls_through_to and file != DEFAULT_MAP:
        found = Concepts(found.url, {**load(None).table, **found.table}, found.falls_through_to)
    return found


def targets_of(concepts: Concepts, wanted: Iterable[Target]) -> set[tuple[str | None, str]]:
    """The source codes that map to any of `wanted` (docs and tests)."""
    want = set(wanted)
    return {key for key, target in concepts.table.items() if target in want}
