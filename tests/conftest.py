"""Session fixtures: one real PostgreSQL and one real broker per test run (see pmtct_tools.testing)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import free_port
from pmtct_tools.testing import Infra, TestIssuer, start_infra, test_issuer
from servicekit import bootstrap, migrations
from servicekit.settings import SERVICES

# Tests look at spans, so this process and the services it starts record them, as a deployment with
# an OTLP exporter does (with none configured a service records no spans; see servicekit.telemetry).
os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_always_on")


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    started = start_infra(tmp_path_factory.mktemp("infra"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def migrated(infra: Infra) -> Infra:
    """The platform database: roles, schemas and every service's migrations."""
    asyncio.run(bootstrap.bootstrap(infra.admin_url))
    for service in SERVICES:
        migrations.upgrade(service, bootstrap.service_url(infra.admin_url, service))
    return infra


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestIssuer]:
    with test_issuer(tmp_path_factory.mktemp("issuer")) as i:
        yield i


TEST_KEYS = {
    "PMTCT_PII_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "PMTCT_HMAC_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
}


def service_env(infra: Infra, issuer: TestIssuer, service: str) -> dict[str, str]:
    env = {
        **TEST_KEYS,
        "PMTCT_DATABASE_URL": bootstrap.service_url(infra.admin_url, service),
        "PMTCT_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "PMTCT_KAFKA_IDEMPOTENT_PRODUCER": "false" if infra.is_tansu else "true",
        "PMTCT_AUTH_JWKS_URL": issuer.jwks_url,
        "PMTCT_AUTH_ISSUER": "pmtct-dev-issuer",
        "PMTCT_RELAY_POLL_INTERVAL_S": "0.2",
        "PMTCT_LOG_JSON": "true",
    }
    return env


@pytest.fixture
def settings_env(migrated: Infra, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch):
    """Point in-process service settings at the test infrastructure: `settings_env("followup")`."""

    def apply(service: str) -> dict[str, str]:
        env = service_env(migrated, issuer, service)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env

    return apply


@pytest.fixture(scope="session")
def platform(migrated: Infra, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """All four services as real processes (uvicorn) against the test infrastructure."""
    p = Platform(
        data_dir=tmp_path_factory.mktemp("platform"),
        database_url=migrated.admin_url,
        kafka_bootstrap_servers=migrated.bootstrap_servers,
        ports={s: free_port() for s in SERVICES},
    )
    p.jwks_server = issuer.server
    p.issuer = issuer.issuer
    p.extra_env = {
        **TEST_KEYS,
        "PMTCT_KAFKA_IDEMPOTENT_PRODUCER": "false" if migrated.is_tansu else "true",
        "PMTCT_RELAY_POLL_INTERVAL_S": "0.2",
        # a site's ConceptMap for POST /fhir: its OpenMRS encounter types on top of the shipped map
        "PMTCT_FHIR_CONCEPT_MAP": str(
            Path(__file__).parent / "enrolment" / "fixtures" / "fhir" / "site-conceptmap.json"
        ),
    }
    for s in SERVICES:
        p.start_service(s)
    try:
        p.wait_ready()
        yield p
    finally:
        p.jwks_server = None  # owned by the issuer fixture
        p.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = Path(__file__).parent / "artifacts"
    out.mkdir(exist_ok=True)
    return out
