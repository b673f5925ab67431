"""Operations fixes, each named for what went wrong: the database name of DATABASE_URL ignored,
`pmtct token` minting from whatever directory it ran in, `pmtct dlq replay` failing on the dev
broker, `pmtct replay reporting` reaching for whatever PostgreSQL was on localhost."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import jwt
import pytest
from spine_support import publish

from pmtct_tools import datadir
from pmtct_tools.devissuer import DevIssuer
from pmtct_tools.testing import read_topic, unique
from servicekit import bootstrap, dlq, kafka
from servicekit.db import asyncpg_dsn


async def test_the_database_named_in_database_url_is_the_platforms_database(migrated) -> None:
    name = unique("pmtct_named").replace("-", "_")
    admin = bootstrap.with_admin_database(migrated.admin_url, name)
    await bootstrap.bootstrap(admin, ("followup",))
    assert bootstrap.service_url(admin, "followup").split("?")[0].endswith(f"/{name}")
    conn = await asyncpg.connect(asyncpg_dsn(bootstrap.service_url(admin, "followup")))
    try:
        assert await conn.fetchval("SELECT current_database()") == name
        assert await conn.fetchval("SELECT current_schema()") == "followup"
    finally:
        await conn.close()
    # the maintenance database names none of its own: the platform's is `pmtct`, as before
    assert bootstrap.database_for(bootstrap.with_admin_database(migrated.admin_url, "postgres")) == "pmtct"


def _pmtct(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "PMTCT_DATA_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "pmtct_tools.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pmtct_token_finds_the_runners_issuer_from_anywhere_or_says_what_it_needs(tmp_path: Path) -> None:
    """It minted from `./.pmtct` wherever it ran, making up a new key whose tokens every service rejected."""
    data = tmp_path / "runner" / ".pmtct"
    issuer = DevIssuer(data / "issuer").ensure()
    deep = tmp_path / "runner" / "services" / "followup"
    deep.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ("token", "--client-id", "c", "--scope", "reports:read", "--facility", "FAC-ZA-001")

    below = _pmtct(*args, cwd=deep)  # the nearest .pmtct above the current directory
    by_env = _pmtct(*args, cwd=elsewhere, env={"PMTCT_DATA_DIR": str(data)})
    lost = _pmtct(*args, cwd=elsewhere)

    public = issuer._private_key().public_key()
    for minted in (below, by_env):
        assert minted.returncode == 0, minted.stderr
        claims = jwt.decode(minted.stdout.strip(), public, algorithms=["RS256"], audience="pmtct")
        assert claims["azp"] == "c"  # signed by the runner's issuer, the key its services trust
    if datadir.repository_root() is None or not (datadir.repository_root() / ".pmtct" / "issuer").exists():
        assert lost.returncode == 2
        assert "--data-dir" in lost.stderr and "PMTCT_DATA_DIR" in lost.stderr
    assert not (elsewhere / ".pmtct").exists()  # no key made up on the spot


def test_pmtct_replay_reporting_without_a_runner_or_a_database_url_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PMTCT_DATABASE_URL", "PMTCT_DATA_DIR")}
    run = subprocess.run(
        [sys.executable, "-m", "pmtct_tools.cli", "replay", "reporting", "--data-dir", str(tmp_path / "nothing")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "postgres/postmaster.pid" in run.stderr


async def test_dlq_replay_works_on_a_broker_without_idempotent_producers(spine, migrated) -> None:
    if not migrated.is_tansu:
        pytest.skip("the dev broker (Tansu) is the one without InitProducerId")
    settings = spine.settings.model_copy(update={"kafka_idempotent_producer": True})
    await kafka.ensure_topics(spine.settings, [spine.topic])
    producer = kafka.producer(spine.settings)
    await producer.start()
    try:
        [ce] = await publish(spine, producer, [spine.event("replayed", 0)])
        records = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 1)
    finally:
        await producer.stop()
    letter = dlq.dead_letter(records[0])
    letter = dataclasses.replace(letter, dlq_topic=spine.topic + ".dlq", ce_id=str(ce.id))
    done = await dlq.replay(settings, [letter])
    assert [d.ce_id for d in done] == [str(ce.id)]
    again = await read_topic(spine.settings.kafka_bootstrap_servers, spine.topic, until=lambda rs: len(rs) >= 2)
    assert [dict(r.headers)["ce_id"] for r in again] == [str(ce.id).encode()] * 2
