"""The set-based SQL helpers the services share: one statement per lookup or insert, whatever the size."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import Boolean, Column, Date, DateTime, Integer, MetaData, Table, Text, select, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from servicekit.db import any_of, insert_rows, pairs_in

scratch = Table(
    "helper_scratch",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("ref", Text),
    Column("at", DateTime(timezone=True)),
    Column("on_day", Date),
    Column("count", Integer),
    Column("flag", Boolean),
    Column("doc", JSONB),
)


async def test_rows_inserted_in_one_statement_read_back_as_given_and_are_found_by_array_lookups(spine) -> None:
    rows = [
        {
            "id": uuid.uuid4(),
            "facility_id": f"FAC-{i % 3}",
            "ref": None if i == 4 else f"R{i}",
            "at": datetime(2026, 1, 1, i, tzinfo=UTC),
            "on_day": date(2026, 1, 1 + i),
            "count": i,
            "flag": i % 2 == 0,
            "doc": {"i": i, "nested": [1, {"x": None}]} if i != 5 else None,
        }
        for i in range(10)
    ]
    async with spine.sessions() as session, session.begin():
        await session.execute(text("DROP TABLE IF EXISTS helper_scratch"))
        await session.execute(
            text(
                "CREATE TABLE helper_scratch (seq bigserial, id uuid PRIMARY KEY, facility_id text NOT NULL,"
                " ref text, at timestamptz, on_day date, count int, flag boolean, doc jsonb)"
            )
        )
        await insert_rows(session, scratch, rows)
        await insert_rows(session, scratch, [])
        stored = (await session.execute(select(scratch).order_by(text("seq")))).mappings().all()
        picked = (
            await session.execute(select(scratch.c.count).where(any_of(scratch.c.id, [rows[2]["id"], rows[7]["id"]])))
        ).scalars()
        paired = (
            await session.execute(
                select(scratch.c.count).where(
                    pairs_in((scratch.c.facility_id, scratch.c.ref), [("FAC-1", "R1"), ("FAC-0", "R1")])
                )
            )
        ).scalars()
        picked, paired = sorted(picked), list(paired)
        await session.execute(text("DROP TABLE helper_scratch"))
    assert [dict(r) for r in stored] == rows
    assert picked == [2, 7]
    assert paired == [1]
