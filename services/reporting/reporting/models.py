"""Tables of the reporting read model (created by migrations 0002 and 0003).

Three layers, each a function of the one before, so the whole read model is a function of the set
of events and not of the order they arrived in:

1. facts, one row per event (reporting.facts), keyed by the CloudEvent id: `mother_facts`,
   `deliveries`, `infant_facts`, `referral_facts`, `interactions`; less what the voids (`voids`,
   tombstones `voided_facts`, `voided_infants`: migration 0007) took out;
2. one row per subject derived from its facts (reporting.repository): `enrolments` (a mother's
   episodes, reporting.episodes), `infants`, `referrals`;
3. `monthly_counts`: every count of reporting.indicators per facility and month, moved as a
   subject's row changes; client interactions are added there directly (addition commutes, and
   the inbox makes each event count once) and taken out by a void.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from .indicators import COUNTS

metadata = sa.MetaData()

mother_facts = sa.Table(
    "mother_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("client_id", sa.Uuid, nullable=False),
    #: enrolled, anc_visit, hiv_test, art_start, delivery, pregnancy_ended (what the episodes read), and
    #: viral_load, died, vl_overdue, lost (today's overdue and lost counts); see reporting.facts
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
    sa.Column("age_years", sa.Integer),
    sa.Column("art_start_date", sa.Date),
    sa.Column("known_since", sa.Date),
    sa.Column("gestation_weeks", sa.Integer),
    sa.Column("edd", sa.Date),
    sa.Column("visit_number", sa.Integer),
    sa.Column("status_before", sa.Text),
    sa.Column("opens_episode", sa.Boolean),
    sa.Column("anc_visit_number", sa.Integer),
    sa.Column("period", sa.Text),
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
    sa.Column("age_years", sa.Integer),
    #: MER fine age band at enrolment (reporting.ages)
    sa.Column("age_band", sa.Text, nullable=False),
    #: the ANC1 day; null when the episode has none here (reporting.episodes)
    sa.Column("anc1_on", sa.Date),
    sa.Column("stat_status", sa.Text),
    sa.Column("art_status", sa.Text),
    sa.Column("pregnancy_start", sa.Date, nullable=False),
    sa.Column("delivered_on", sa.Date),
    #: enrolment, or anc1 (a new pregnancy opened by its ANC1 visit without a new enrolment)
    sa.Column("opened_by", sa.Text, nullable=False),
)

#: conclusive tests after ANC1 of women not known positive (reporting.episodes.PostAnc1Test)
mother_tests = sa.Table(
    "mother_tests",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("client_id", sa.Uuid, nullable=False),
    sa.Column("enrolled_on", sa.Date, nullable=False),
    sa.Column("tested_on", sa.Date, nullable=False),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("modality", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("age_years", sa.Integer),
    sa.Column("age_band", sa.Text, nullable=False),
    sa.Column("newly_positive", sa.Boolean, nullable=False),
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
    #: as enrolment knew it when the delivery arrived (not counted: `positive_at_delivery` is)
    sa.Column("mother_hiv_status", sa.Text, nullable=False),
    sa.Column("live_births", sa.Integer, nullable=False),
    #: every infant it registered (migration 0007): a void of the delivery drops them
    sa.Column("infant_ids", sa.ARRAY(sa.Uuid)),
    #: derived (migration 0009): she was known positive at the delivery by her facts dated on or
    #: before it, in any arrival order (`episodes.known_positive_at`); NULL until derived
    sa.Column("positive_at_delivery", sa.Boolean),
)

infant_facts = sa.Table(
    "infant_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("infant_id", sa.Uuid, nullable=False),
    #: hei (follow-up started), test, feeding, art_start, contact, outcome or lost (reporting.facts)
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
    sa.Column("test", sa.Text),
    sa.Column("method", sa.Text),
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
    #: the outcome by 18 months from the facts (reporting.infants): infected, uninfected, died, unknown or null
    sa.Column("fo_outcome", sa.Text),
    #: the same from every fact known now, at any age (a diagnosis after 18 months counts)
    sa.Column("outcome_now", sa.Text),
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

#: a clinic's contact, one per event (reporting.facts.INTERACTIONS), already counted in `monthly_counts`:
#: kept so that a void takes it out again (migration 0007)
interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("infant_id", sa.Uuid),
)

#: the audit of corrections: each ClientEventVoided / InfantEventVoided, the voiding facility and day
voids = sa.Table(
    "voids",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("voided_event_id", sa.Uuid, nullable=False),
    sa.Column("voided_type", sa.Text, nullable=False),
    sa.Column("voided_ids", sa.ARRAY(sa.Uuid), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("replaced_by_event_id", sa.Uuid),
    sa.Column("facility_id", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("occurred_on", sa.Date, nullable=False),
    sa.Column("client_id", sa.Uuid, nullable=False),
    sa.Column("infant_id", sa.Uuid),
)
#: every CloudEvent id a void took out, and every infant a voided delivery had registered: a fact of
#: either arriving after the void (another topic, a redelivery) is not stored
voided_facts = sa.Table(
    "voided_facts",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("voided_by", sa.Uuid, nullable=False),
)
voided_infants = sa.Table(
    "voided_infants",
    metadata,
    sa.Column("infant_id", sa.Uuid, primary_key=True),
    sa.Column("voided_by", sa.Uuid, nullable=False),
)

#: every read-model table: what a rebuild empties before it replays the topics
READ_MODEL = (
    mother_facts,
    enrolments,
    mother_tests,
    deliveries,
    infant_facts,
    infants,
    referral_facts,
    referrals,
    interactions,
    voids,
    voided_facts,
    voided_infants,
    monthly_counts,
)


class _Table(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's table models: their tables join `metadata`, not SQLModel's global one."""


_TIME = sa.DateTime(timezone=True)


class SubmissionBase(SQLModel):
    """One push of a data set for a period to DHIS2, and what DHIS2 answered (migration 0003)."""

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    data_set: str = Field(sa_type=sa.Text, description="mer or programme")
    period: str = Field(sa_type=sa.Text, description="The period in the platform's spelling, e.g. FY2026 or 2026-09")
    dry_run: bool
    trigger: str = Field(sa_type=sa.Text, description="manual (the API or pmtct dhis2 push) or scheduled")
    requested_at: datetime = Field(sa_type=_TIME)
    finished_at: datetime = Field(sa_type=_TIME)
    outcome: str = Field(sa_type=sa.Text, description="SUCCESS, WARNING (conflicts), ERROR, or FAILED (no answer)")
    http_status: int | None = None
    attempts: int
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0
    #: each conflict: object, value (the reason), errorCode, property
    conflicts: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(JSONB, nullable=False))
    description: str | None = Field(default=None, sa_type=sa.Text)


class SubmissionRow(SubmissionBase, _Table, table=True):
    __tablename__ = "dhis2_submissions"

    #: what was sent: "dataElement|categoryOptionCombo|orgUnit|attributeOptionCombo" -> value
    data_values: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(JSONB, nullable=False))


dhis2_submissions = SubmissionRow.__table__
