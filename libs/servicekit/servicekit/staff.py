"""The staff registry: Mentor Mothers, Community Mentor Mothers and site coordinators.

Each member has a staff id (the `sub` of the tokens her app is issued), a role, the facility she
works at and an active flag. No names: a staff id is what the platform knows her by, and it is the
only thing about her that travels on Kafka.

A demo registry ships with the platform (`servicekit/data/staff.csv`, staff at every demo
facility); `PMTCT_STAFF=path.csv` replaces it. The follow-up service owns the staff table: it
loads the registry at start-up (members it does not know yet are added; those it knows keep what
the admin API last set) and announces every change as `StaffMemberChanged`.
"""

from __future__ import annotations

import csv
from collections.abc import Container
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pmtct_events.mentoring import StaffRole

COLUMNS = ("staff_id", "role", "facility_id", "active")

__all__ = ["COLUMNS", "StaffMember", "StaffRole", "load", "parse_csv"]


@dataclass(frozen=True, slots=True)
class StaffMember:
    staff_id: str
    role: StaffRole
    facility_id: str
    active: bool = True


def parse_csv(text: str) -> list[StaffMember]:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"staff registry lacks columns: {', '.join(missing)}")
    members = []
    for line, row in enumerate(reader, start=2):
        active = row["active"].strip().lower()
        if active not in ("true", "false"):
            raise ValueError(f"staff registry line {line}: active must be true or false, not {row['active']!r}")
        try:
            role = StaffRole(row["role"].strip())
        except ValueError as exc:
            roles = ", ".join(r.value for r in StaffRole)
            raise ValueError(f"staff registry line {line}: role {row['role']!r} is not one of {roles}") from exc
        staff_id = row["staff_id"].strip()
        if not staff_id:
            raise ValueError(f"staff registry line {line}: staff_id is empty")
        members.append(StaffMember(staff_id, role, row["facility_id"].strip(), active == "true"))
    return members


@lru_cache(maxsize=4)
def load(path: Path | None = None) -> tuple[StaffMember, ...]:
    if path is None:
        text = resources.files("servicekit.data").joinpath("staff.csv").read_text()
    else:
        text = Path(path).read_text()
    return tuple(parse_csv(text))


def at_start_up(
    staff_path: Path | None, facilities_path: Path | None, facilities: Container[str]
) -> tuple[StaffMember, ...]:
    """The members the follow-up service adds at start-up. The shipped demo staff work at the demo
    facilities: when `PMTCT_FACILITIES` replaces those and `PMTCT_STAFF` is not set, there are none
    from a file (staff come through the admin API), rather than a service that cannot start. A
    registry that names a facility the facility registry lacks stops start-up, naming them."""
    if staff_path is None and facilities_path is not None:
        return ()
    members = load(staff_path)
    unknown = sorted({m.facility_id for m in members if m.facility_id not in facilities})
    if unknown:
        raise ValueError(f"staff registry names facilities not in the facility registry: {unknown}")
    return members
