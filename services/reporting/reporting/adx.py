"""ADX export: the same figures as the DHIS2 JSON, as an IHE QRPH Aggregate Data Exchange message.

The document follows the ADX profile (IHE Quality, Research and Public Health Technical Framework
Supplement "Aggregate Data Exchange (ADX)", namespace `urn:ihe:qrph:adx:2015`): an `adx` root with
its `exported` time; one `group` per org unit, carrying `orgUnit`, `period` (ISO 8601 start and
duration: `2026-11-01/P1M`, `2026-10-01/P3M`, `2025-10-01/P1Y` for FY2026) and `dataSet`, and the
attribute option combo (`attributeOptionCombo`) when the mapping has one; one `dataValue` per value
with `dataElement`, `value` and the disaggregation. ADX names disaggregations by category; the
mapping knows category option combos, so each value carries its combo's code as
`categoryOptionCombo` (DHIS2's ADX import resolves it; a ministry whose ADX profile names the
categories maps them from the combo).
"""

from __future__ import annotations

from datetime import datetime
from xml.etree import ElementTree as ET

from .periods import Period
from .schemas import DataValueSet

NAMESPACE = "urn:ihe:qrph:adx:2015"


def adx_period(period: Period) -> str:
    """ISO 8601 start/duration, as ADX spells a period."""
    duration = "P1Y" if period.length == 12 else f"P{period.length}M"
    return f"{period.start.isoformat()}/{duration}"


def document(values: DataValueSet, period: Period, exported: datetime) -> bytes:
    ET.register_namespace("", NAMESPACE)
    root = ET.Element(f"{{{NAMESPACE}}}adx", {"exported": exported.isoformat().replace("+00:00", "Z")})
    groups: dict[tuple[str, str | None], ET.Element] = {}
    for v in values.dataValues:
        key = (v.orgUnit, v.attributeOptionCombo)
        if key not in groups:
            attributes = {"orgUnit": v.orgUnit, "period": adx_period(period), "dataSet": values.dataSet}
            if v.attributeOptionCombo:
                attributes["attributeOptionCombo"] = v.attributeOptionCombo
            groups[key] = ET.SubElement(root, f"{{{NAMESPACE}}}group", attributes)
        ET.SubElement(
            groups[key],
            f"{{{NAMESPACE}}}dataValue",
            {"dataElement": v.dataElement, "categoryOptionCombo": v.categoryOptionCombo, "value": v.value},
        )
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
