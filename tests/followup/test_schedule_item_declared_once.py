"""A schedule item is declared once (followup.models): its table model describes exactly the table
the migrations created, the API shows the same fields, and the rules' dataclass `schedule.Item`
(kept a dataclass for speed, see models.py) holds the same fields with the same types."""

from __future__ import annotations

import dataclasses
import typing

from followup_support import FollowupService

from followup.models import ScheduleItemBase, ScheduleItemRow, metadata, schedule_items
from followup.schedule import Item
from followup.schemas import ScheduleItemPublic
from pmtct_tools.testing import declared_columns, migrated_columns


async def test_the_table_model_is_the_migrated_table(followup: FollowupService) -> None:
    """Names, types, nullability, keys and defaults (not their order: nothing reads it by position)."""
    async with followup.sessions() as session:
        assert sorted(declared_columns(schedule_items)) == sorted(await migrated_columns(session, "schedule_items"))


def test_one_field_list() -> None:
    assert schedule_items is ScheduleItemRow.__table__
    assert list(ScheduleItemPublic.model_fields) == list(ScheduleItemBase.model_fields)
    assert set(ScheduleItemBase.model_fields) <= set(schedule_items.c.keys())


def test_the_rules_item_has_the_declared_fields() -> None:
    hints = typing.get_type_hints(Item)
    # `changed` is the repository's bookkeeping; `announced` is what the rules need of the
    # announcement stamps (set by `tick`, loaded as "either stamp is set")
    fields = [f.name for f in dataclasses.fields(Item) if f.name not in ("changed", "announced")]
    declared = {n: f.annotation for n, f in ScheduleItemBase.model_fields.items()}
    assert {n: hints[n] for n in fields} == {n: declared[n] for n in fields}
    # the announcement stamps are the repository's, not the rules'
    assert set(declared) - set(fields) == {"due_announced_at", "overdue_announced_at"}


def test_the_tables_are_the_services_own() -> None:
    from sqlmodel import SQLModel

    assert "schedule_items" not in SQLModel.metadata.tables
    assert metadata.tables["schedule_items"] is schedule_items
