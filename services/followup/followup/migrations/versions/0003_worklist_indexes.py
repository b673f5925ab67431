"""Worklist indexes that stay small however long a facility's overdue backlog grows.

Each part of the worklist (at-once actions, overdue items, items due, items the timers marked
overdue after the day asked about) reads its own partial index in the order it needs, so a
query touches about as many index entries as it returns.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = "status IN ('planned', 'due', 'overdue')"
URGENT = "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test')"
SHOWN = ["window_start", "window_end", "overdue_on", "kind", "test", "subject_type", "subject_id", "client_id"]


def upgrade() -> None:
    op.drop_index("schedule_items_worklist", "schedule_items")
    op.create_index(
        "schedule_items_overdue",
        "schedule_items",
        ["facility_id", "overdue_on"],
        postgresql_where=sa.text(OPEN),
        postgresql_include=SHOWN,
    )
    op.create_index(
        "schedule_items_pending",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text("status IN ('planned', 'due')"),
        postgresql_include=SHOWN,
    )
    op.create_index(
        "schedule_items_marked_overdue",
        "schedule_items",
        ["facility_id", "overdue_on"],
        postgresql_where=sa.text("status = 'overdue'"),
    )
    op.create_index(
        "schedule_items_urgent",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(f"{OPEN} AND {URGENT}"),
    )


def downgrade() -> None:
    for name in ("schedule_items_urgent", "schedule_items_marked_overdue", "schedule_items_pending"):
        op.drop_index(name, "schedule_items")
    op.drop_index("schedule_items_overdue", "schedule_items")
    op.create_index(
        "schedule_items_worklist",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(OPEN),
        postgresql_include=["overdue_on", "window_end", "kind"],
    )
