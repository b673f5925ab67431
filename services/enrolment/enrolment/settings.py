"""Settings of the enrolment service (env prefix `PMTCT_`)."""

from pydantic import AnyHttpUrl, Field, FilePath, SecretStr, field_validator

from servicekit.settings import ServiceSettings

from .personal_data import decode_key


class Settings(ServiceSettings):
    service_name: str = "enrolment"
    #: AES-256-GCM key (urlsafe base64 of 32 bytes) for names, phone numbers and national ids at rest;
    #: required at start-up (`pmtct dev` generates one per data directory, never committed)
    pii_key: SecretStr | None = None
    #: a viral load below this many copies/mL is suppressed (WHO consolidated HIV guidelines 2021:
    #: 1000; a national choice)
    vl_suppression_threshold: int = 1000
    #: two deliveries of one woman closer than this are one delivery posted twice (~22 weeks, the
    #: earliest viable gestation, between them)
    min_days_between_deliveries: int = 154
    #: the FHIR ConceptMap `POST /fhir` reads codes through (CIEL, LOINC, SNOMED CT -> the platform's
    #: vocabulary); unset: the one shipped with the service (enrolment/data/fhir-conceptmap.json,
    #: docs/fhir-intake.md says how to make a site's own)
    fhir_concept_map: FilePath | None = None
    #: a Patient identifier whose `system`, or whose type text, is one of these is the EMR's record
    #: number (`client_ref`, an infant's `infant_ref`): the first that matches wins
    fhir_record_number_identifiers: list[str] = ["OpenMRS ID"]
    #: ... and one of these is her national id (kept encrypted, and as a keyed hash)
    fhir_national_id_identifiers: list[str] = ["National ID"]
    #: follow-up's base URL inside the deployment: the front door (`POST /v1/events`, frontdoor.py)
    #: forwards infant events there (`pmtct dev`, the test harness and the compose file set it);
    #: unset, infant events posted here are answered `service_unavailable`
    followup_url: AnyHttpUrl | None = None
    #: how long the front door waits for follow-up's answer before its events are `service_unavailable`
    followup_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("pii_key")
    @classmethod
    def _pii_key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_key(value.get_secret_value())
        return value


class ConfigurationError(RuntimeError):
    """The service cannot start: a required key is missing from its configuration."""


def require_keys(settings: Settings) -> None:
    """Fail at start-up, before touching the database, if the keys that protect personal data are missing."""
    if settings.pii_key is None:
        raise ConfigurationError(
            "PMTCT_PII_KEY is not set: the enrolment service encrypts names, phone numbers and national ids"
            " with it. Set it to the urlsafe base64 of 32 random bytes (`pmtct dev` generates one)."
        )
    if not settings.hmac_key:
        raise ConfigurationError(
            "PMTCT_HMAC_KEY is not set: the enrolment service hashes national ids and infant record numbers"
            " with it, and follow-up must use the same key."
        )
