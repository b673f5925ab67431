"""The facility registry: id, name, district, province, country, DHIS2 org unit.

A demo registry ships with the platform; `PMTCT_FACILITIES=path.csv` replaces it. Events for a
facility that is not in the registry are rejected.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

COLUMNS = ("facility_id", "name", "district", "province", "country", "dhis2_org_unit")


@dataclass(frozen=True, slots=True)
class Facility:
    facility_id: str
    name: str
    district: str
    province: str
    country: str
    dhis2_org_unit: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class FacilityRegistry:
    def __init__(self, facilities: list[Facility]) -> None:
        self._by_id = {f.facility_id: f for f in facilities}

    def __contains__(self, facility_id: object) -> bool:
        return facility_id in self._by_id

    def get(self, facility_id: str) -> Facility | None:
        return self._by_id.get(facility_id)

    def all(self) -> list[Facility]:
        return list(self._by_id.values())

    def in_district(self, district: str) -> list[Facility]:
        return [f for f in self._by_id.values() if f.district == district]

    def in_province(self, province: str) -> list[Facility]:
        return [f for f in self._by_id.values() if f.province == province]

    def in_country(self, country: str) -> list[Facility]:
        return [f for f in self._by_id.values() if f.country == country]


def parse_csv(text: str) -> FacilityRegistry:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"facility registry lacks columns: {', '.join(missing)}")
    return FacilityRegistry([Facility(**{c: row[c].strip() for c in COLUMNS}) for row in reader])


@lru_cache(maxsize=4)
def load(path: Path | None = None) -> FacilityRegistry:
    if path is None:
        text = resources.files("servicekit.data").joinpath("facilities.csv").read_text()
    else:
        text = Path(path).read_text()
    return parse_csv(text)
