"""The referral is declared once (referrals.models): its table model describes exactly the table the
migrations created, and the record, the table and the API share one field list."""

from __future__ import annotations

from conftest import Api

from pmtct_tools.testing import declared_columns, migrated_columns
from referrals.models import Referral, ReferralBase, ReferralFields, ReferralRow, metadata, referral
from referrals.schemas import ReferralPublic


async def test_the_table_model_is_the_migrated_table(api: Api) -> None:
    """Names, types, nullability, keys and defaults, in order too: the repository's text statements
    read `referral.*` positionally."""
    async with api.sessions() as session:
        assert declared_columns(referral) == await migrated_columns(session, "referral")


def test_one_field_list() -> None:
    assert referral is ReferralRow.__table__
    assert list(referral.c.keys()) == list(ReferralFields.model_fields) == list(Referral.model_fields)
    assert list(ReferralPublic.model_fields) == list(ReferralBase.model_fields)
    # the service's own fields stay inside it
    assert {"created_by", "cause_event_id", "updated_at"}.isdisjoint(ReferralPublic.model_fields)


def test_the_tables_are_the_services_own() -> None:
    """SQLModel's global metadata would be shared by every service imported in one process."""
    from sqlmodel import SQLModel

    assert "referral" not in SQLModel.metadata.tables
    assert metadata.tables["referral"] is referral
