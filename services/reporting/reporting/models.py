"""Tables of the reporting read model (created by migration 0002).

A mother's coded facts are kept as they come, and her enrolment episodes are recomputed from all
of them (reporting.episodes). Each delivery, infant and referral has one row holding the dated
facts the indicators need; handlers merge facts into it with commutative rules (earliest sample,
latest referral version, ...). Either way a row ends the same whatever order the events arrive
in. Each change of a subject row moves that subject's counts in `monthly_counts`, which the
indicator queries sum. Client interactions are added there directly: addition commutes, and the
inbox makes each event count once.
"""

from __future__ import annotations

import sqlalchemy as sa

from .indicators import COUNTS

metadata = sa.MetaData()

mother_facts = sa.Table(
    "mother_facts",
    metadata,
    #: the CloudEvent id: a fact applied twice is stored once
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("client_id", sa.Uuid, nullable=False),
    #: enrolled, hiv_test or art_start (see reporting.episodes)
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("status_at_enrolment", sa.Text),
    sa.Column("hiv_status", sa.Text),
    sa.Column("on_art", sa.Boolean),
    sa.Column("transfer_in", sa.Boolean),
    sa.Column("result", sa.Text),
    sa.Column("setting", sa.Text),
)

#: derived from mother_facts by reporting.episodes, for the client whose facts changed
enrolments = sa.Table(
    "enrolments",
    metadata,
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

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("client_id", sa.Uuid, primary_key=True),
    sa.Column("delivered_on", sa.Date, primary_key=True),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("skilled_attendant", sa.Boolean, nullable=False),
    sa.Column("mother_hiv_status", sa.Text, nullable=False),
    sa.Column("live_births", sa.Integer, nullable=False),
)

infants = sa.Table(
    "infants",
    metadata,
    sa.Column("infant_id", sa.Uuid, primary_key=True),
    #: the facility following the HIV-exposed infant (InfantFollowUpStarted)
    sa.Column("facility_id", sa.Text),
    sa.Column("birth_date", sa.Date),
    #: earliest virologic (NAT) sample, whatever its result, and where it was taken
    sa.Column("first_nat_at", sa.DateTime(timezone=True)),
    sa.Column("first_nat_on", sa.Date),
    sa.Column("first_nat_age_days", sa.Integer),
    sa.Column("first_nat_result", sa.Text),
    sa.Column("first_nat_facility_id", sa.Text),
    #: earliest positive NAT that is not a confirmatory test
    sa.Column("first_pos_nat_at", sa.DateTime(timezone=True)),
    sa.Column("first_pos_nat_on", sa.Date),
    sa.Column("first_pos_nat_age_days", sa.Integer),
    sa.Column("first_pos_nat_facility_id", sa.Text),
    sa.Column("art_started_on", sa.Date),
    #: the final outcome follow-up recorded last (a later record corrects an earlier one)
    sa.Column("outcome", sa.Text),
    sa.Column("outcome_recorded_at", sa.DateTime(timezone=True)),
)

referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column("referral_id", sa.Uuid, primary_key=True),
    #: the referring facility, which owns closing the loop
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("referral_service", sa.Text, nullable=False),
    sa.Column("due_by", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

#: every count of reporting.indicators per facility and month: the sum over the subjects counted in
#: that cell, moved by the handlers as a subject's facts change; client interactions are added directly
monthly_counts = sa.Table(
    "monthly_counts",
    metadata,
    sa.Column("facility_id", sa.Text, primary_key=True),
    #: first day of the month (for the final-outcome cohort: 24 months after the birth month)
    sa.Column("month", sa.Date, primary_key=True),
    *(sa.Column(key, sa.BigInteger, nullable=False, server_default="0") for key in COUNTS),
)

#: every read-model table: what a rebuild empties before it replays the topics
READ_MODEL = (mother_facts, enrolments, deliveries, infants, referrals, monthly_counts)
