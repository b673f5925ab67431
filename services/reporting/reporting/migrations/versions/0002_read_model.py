"""The reporting read model: coded facts per event (mothers, deliveries, infants, referrals), one row
per subject derived from them (enrolment episodes, infants, referrals), and the indicator counts
per facility and month kept from those. No names, references or free text.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: one column per count of reporting.indicators, as of this revision
COUNT_KEYS = (
    "anc1",
    "stat_known",
    "stat_known_positive",
    "stat_newly_positive",
    "stat_negative",
    "stat_pos",
    "art_already",
    "art_new",
    "art_total",
    "negative_at_enrolment",
    "seroconverted",
    "deliveries",
    "skilled_deliveries",
    "hiv_pos_deliveries",
    "hei_born",
    "eid_first",
    "eid_0_2",
    "eid_2_12",
    "eid_0_2_positive",
    "hei_pos",
    "hei_pos_art",
    "hei_pos_no_art",
    "fo_cohort",
    "fo_outcome",
    "fo_infected",
    "fo_uninfected",
    "fo_unknown",
    "fo_died",
    "referrals_due",
    "referrals_completed",
    "referrals_declined",
    "referrals_expired",
    "referrals_open",
    "client_interactions",
)


def upgrade() -> None:
    op.create_table(
        "mother_facts",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("client_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("status_at_enrolment", sa.Text),
        sa.Column("hiv_status", sa.Text),
        sa.Column("on_art", sa.Boolean),
        sa.Column("transfer_in", sa.Boolean),
        sa.Column("result", sa.Text),
        sa.Column("setting", sa.Text),
    )
    op.create_index("mother_facts_by_client", "mother_facts", ["client_id"])
    op.create_table(
        "enrolments",
        sa.Column("client_id", sa.Uuid, primary_key=True),
        sa.Column("enrolled_on", sa.Date, primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("status_at_enrolment", sa.Text, nullable=False),
        sa.Column("hiv_status_at_enrolment", sa.Text, nullable=False),
        sa.Column("on_art_at_enrolment", sa.Boolean, nullable=False),
        sa.Column("first_test_result", sa.Text),
        sa.Column("first_test_setting", sa.Text),
        sa.Column("first_positive_on", sa.Date),
        sa.Column("art_started_on", sa.Date),
    )

    op.create_table(
        "deliveries",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("client_id", sa.Uuid, nullable=False),
        sa.Column("delivered_on", sa.Date, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("skilled_attendant", sa.Boolean, nullable=False),
        sa.Column("mother_hiv_status", sa.Text, nullable=False),
        sa.Column("live_births", sa.Integer, nullable=False),
    )
    op.create_index("deliveries_by_client", "deliveries", ["client_id"])

    op.create_table(
        "infant_facts",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("infant_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("birth_date", sa.Date),
        sa.Column("age_days", sa.Integer),
        sa.Column("result", sa.Text),
        sa.Column("confirmatory", sa.Boolean),
        sa.Column("outcome", sa.Text),
    )
    op.create_index("infant_facts_by_infant", "infant_facts", ["infant_id"])
    op.create_table(
        "infants",
        sa.Column("infant_id", sa.Uuid, primary_key=True),
        sa.Column("facility_id", sa.Text),
        sa.Column("birth_date", sa.Date),
        sa.Column("first_nat_on", sa.Date),
        sa.Column("first_nat_age_days", sa.Integer),
        sa.Column("first_nat_result", sa.Text),
        sa.Column("first_nat_facility_id", sa.Text),
        sa.Column("first_pos_nat_on", sa.Date),
        sa.Column("first_pos_nat_age_days", sa.Integer),
        sa.Column("first_pos_nat_facility_id", sa.Text),
        sa.Column("art_started_on", sa.Date),
        sa.Column("outcome", sa.Text),
    )

    op.create_table(
        "referral_facts",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("referral_id", sa.Uuid, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("referral_service", sa.Text, nullable=False),
        sa.Column("due_by", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
    )
    op.create_index("referral_facts_by_referral", "referral_facts", ["referral_id"])
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.Uuid, primary_key=True),
        sa.Column("facility_id", sa.Text, nullable=False),
        sa.Column("referral_service", sa.Text, nullable=False),
        sa.Column("due_by", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )

    op.create_table(
        "monthly_counts",
        sa.Column("facility_id", sa.Text, primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        *(sa.Column(key, sa.BigInteger, nullable=False, server_default="0") for key in COUNT_KEYS),
    )
    op.create_index("monthly_counts_by_month", "monthly_counts", ["month"])


def downgrade() -> None:
    for table in (
        "monthly_counts",
        "referrals",
        "referral_facts",
        "infants",
        "infant_facts",
        "deliveries",
        "enrolments",
        "mother_facts",
    ):
        op.drop_table(table)
