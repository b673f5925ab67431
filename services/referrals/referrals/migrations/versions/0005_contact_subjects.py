"""A referral's subject may be an index contact (a partner or child an HIV-positive client named
for testing), known by its platform contact id.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("referral_subject_type_check", "referral", type_="check")
    op.create_check_constraint(
        "referral_subject_type_check", "referral", "subject_type IN ('client', 'infant', 'contact')"
    )


def downgrade() -> None:
    op.drop_constraint("referral_subject_type_check", "referral", type_="check")
    op.create_check_constraint("referral_subject_type_check", "referral", "subject_type IN ('client', 'infant')")
