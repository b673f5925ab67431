"""Personal data is encrypted with a key from configuration; without it the service does not start."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from pydantic import ValidationError

from enrolment.main import build_app
from enrolment.personal_data import PersonalDataCipher
from enrolment.settings import ConfigurationError, Settings

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def test_a_value_decrypts_only_for_the_client_and_column_it_was_written_for() -> None:
    cipher = PersonalDataCipher(KEY)
    her, other = uuid.uuid4(), uuid.uuid4()
    blob = cipher.encrypt(her, "phone", "+27 82 555 0101")

    assert cipher.decrypt(her, "phone", blob) == "+27 82 555 0101"
    assert b"555" not in blob
    with pytest.raises(InvalidTag):
        cipher.decrypt(other, "phone", blob)
    with pytest.raises(InvalidTag):
        cipher.decrypt(her, "given_name", blob)
    with pytest.raises(InvalidTag):
        PersonalDataCipher(base64.urlsafe_b64encode(bytes(32)).decode()).decrypt(her, "phone", blob)


def test_the_same_value_encrypts_differently_each_time() -> None:
    cipher = PersonalDataCipher(KEY)
    her = uuid.uuid4()

    assert cipher.encrypt(her, "given_name", "Thandi") != cipher.encrypt(her, "given_name", "Thandi")


@pytest.mark.parametrize("key", ["not base64 at all!", base64.urlsafe_b64encode(bytes(16)).decode()])
def test_a_malformed_personal_data_key_is_refused_in_the_settings(key: str) -> None:
    with pytest.raises(ValidationError, match="personal-data key"):
        Settings(pii_key=key, hmac_key="k")


@pytest.mark.parametrize(
    "missing, message",
    [
        ({"pii_key": None, "hmac_key": "k"}, "PMTCT_PII_KEY is not set"),
        ({"pii_key": KEY, "hmac_key": None}, "PMTCT_HMAC_KEY"),
    ],
)
async def test_the_service_refuses_to_start_without_its_keys_before_connecting_to_anything(missing, message) -> None:
    # an unreachable database and broker: the key check must fail first, and clearly
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", kafka_bootstrap_servers="127.0.0.1:1", **missing
    )
    app = build_app(settings)

    with pytest.raises(ConfigurationError, match=message):
        async with app.router.lifespan_context(app):
            pass
