"""Tables of the reporting read model (created by migration 0002).

Three layers, each a function of the one before, so the whole read model is a function of the set
of events and not of the order they arrived in:

1. facts, one row per event (reporting.facts), keyed by the CloudEvent id: `mother_facts`,
   `deliveries`, `infant_facts`, `referral_facts`;
2. one row per subject derived from its facts (reporting.repository): `enrolments` (a mother's
   episodes, reporting.episodes), `infants`, `referrals`;
3. `monthly_counts`: every count of reporting.indicators per facility and month, moved as a
   subject's row changes; client interactions are added there directly (addition commutes, and
   the inbox makes each event count once).
"""

from __future__ import annotations

import sqlalchemy as sa

from .indicators import COUNTS

metadata = sa.MetaData()

mother_facts = sa.Table(
    "mother_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("client_id", sa.Uuid, nullable=False),
    #: enrolled, hiv_test or art_start (see reporting.facts)
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    #: the day in the clinic's own time zone, as the EMR sent it
    sa.Column("occurred_on", sa.Date, nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("status_at_enrolment", sa.Text),
    sa.Column("hiv_status", sa.Text),
    sa.Column("on_art", sa.Boolean),
    sa.Column("transfer_in", sa.Boolean),
    sa.Column("result", sa.Text),
    sa.Column("setting", sa.Text),
)

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

#: a delivery is both a fact and a subject row
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("client_id", sa.Uuid, nullable=False),
    sa.Column("delivered_on", sa.Date, nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("skilled_attendant", sa.Boolean, nullable=False),
    sa.Column("mother_hiv_status", sa.Text, nullable=False),
    sa.Column("live_births", sa.Integer, nullable=False),
)

infant_facts = sa.Table(
    "infant_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("infant_id", sa.Uuid, nullable=False),
    #: hei (follow-up started), nat, art_start or outcome
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("occurred_on", sa.Date, nullable=False),
    #: when follow-up recorded it (the CloudEvent time): a later outcome record corrects an earlier one
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("birth_date", sa.Date),
    sa.Column("age_days", sa.Integer),
    sa.Column("result", sa.Text),
    sa.Column("confirmatory", sa.Boolean),
    sa.Column("outcome", sa.Text),
)

infants = sa.Table(
    "infants",
    metadata,
    sa.Column("infant_id", sa.Uuid, primary_key=True),
    #: the facility following the HIV-exposed infant (InfantFollowUpStarted)
    sa.Column("facility_id", sa.Text),
    sa.Column("birth_date", sa.Date),
    #: earliest virologic (NAT) sample, whatever its result, and where it was taken
    sa.Column("first_nat_on", sa.Date),
    sa.Column("first_nat_age_days", sa.Integer),
    sa.Column("first_nat_result", sa.Text),
    sa.Column("first_nat_facility_id", sa.Text),
    #: earliest positive NAT that is not a confirmatory test
    sa.Column("first_pos_nat_on", sa.Date),
    sa.Column("first_pos_nat_age_days", sa.Integer),
    sa.Column("first_pos_nat_facility_id", sa.Text),
    sa.Column("art_started_on", sa.Date),
    #: the final outcome follow-up recorded last
    sa.Column("outcome", sa.Text),
)

referral_facts = sa.Table(
    "referral_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("referral_id", sa.Uuid, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("referral_service", sa.Text, nullable=False),
    sa.Column("due_by", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)

#: each referral at its highest version (referral events carry the whole state)
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

monthly_counts = sa.Table(
    "monthly_counts",
    metadata,
    sa.Column("facility_id", sa.Text, primary_key=True),
    #: first day of the month (for the final-outcome cohort: 24 months after the birth month)
    sa.Column("month", sa.Date, primary_key=True),
    *(sa.Column(key, sa.BigInteger, nullable=False, server_default="0") for key in COUNTS),
)

#: every read-model table: what a rebuild empties before it replays the topics
READ_MODEL = (
    mother_facts,
    enrolments,
    deliveries,
    infant_facts,
    infants,
    referral_facts,
    referrals,
    monthly_counts,
)
