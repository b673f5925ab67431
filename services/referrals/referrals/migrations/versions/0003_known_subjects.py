"""The subjects the platform knows, by facility: a referral by hand is only for a subject known
at the referring facility. Learnt from every consumed event (referrals.handlers.preload); the
subjects of referrals made before this revision are known at their referring facility.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE known_subject (
            subject_id uuid NOT NULL,
            facility_id text NOT NULL,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (subject_id, facility_id)
        )"""
    )
    op.execute(
        "INSERT INTO known_subject (subject_id, facility_id)"
        " SELECT DISTINCT subject_id, from_facility_id FROM referral ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.execute("DROP TABLE known_subject")
