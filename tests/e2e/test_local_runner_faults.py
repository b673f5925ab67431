"""`pmtct dev` on a bad day: a port already taken, a service killed, the dev broker killed, the runner
itself killed. Each used to lose something or leave something behind: a taken broker port was
silently swapped for a random one; one dead service stopped the whole platform; a restarted broker
came back empty and the services auto-created its topics with another partition count; PostgreSQL
outlived a `kill -9` of the runner."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from test_local_runner import pick_offset, postmaster_pid, start

from pmtct_tools.devissuer import DevIssuer
from pmtct_tools.testing import read_topic
from servicekit.settings import PORTS

pytestmark = pytest.mark.e2e

PARTITIONS = 3


def test_a_taken_broker_port_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    offset = pick_offset()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 9092 + offset))
        squatter.listen()
        run = subprocess.run(
            [sys.executable, "-m", "pmtct_tools.cli", "dev", "--no-demo", "--data-dir", str(tmp_path / "d")]
            + ["--port-offset", str(offset)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2
    assert f"port {9092 + offset} (the dev broker) taken" in run.stderr
    assert not (tmp_path / "d" / "postgres").exists()  # refused before anything started


def _pid(proc: psutil.Process, needle: str) -> int:
    """The live child whose command line has `needle` (a killed one is a zombie until reaped)."""
    for child in proc.children(recursive=True):
        try:
            if needle in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    raise StopIteration(needle)


def _wait(predicate, what: str, timeout_s: float = 180) -> None:
    """Poll until `predicate` (a generous deadline: the machine may be busy; no timing is asserted)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not seen in {timeout_s:.0f} s: {what}"
        time.sleep(0.3)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _on_topic(bootstrap: str, ce_id: str) -> bool:
    def found(records) -> bool:
        return any(dict(r.headers).get("ce_id") == ce_id.encode() for r in records)

    return found(asyncio.run(read_topic(bootstrap, "pmtct.enrolment.v1", until=found, timeout_s=10)))


def test_pmtct_dev_restarts_what_dies_republishes_to_a_new_broker_and_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "pmtct"
    offset = pick_offset()
    os.environ["PMTCT_KAFKA_TOPIC_PARTITIONS"] = str(PARTITIONS)
    try:
        proc, _ = start(data_dir, offset)
    finally:
        del os.environ["PMTCT_KAFKA_TOPIC_PARTITIONS"]
    runner = psutil.Process(proc.pid)
    url = {s: f"http://127.0.0.1:{p + offset}" for s, p in PORTS.items()}
    bootstrap = f"127.0.0.1:{9092 + offset}"
    try:
        # an enrolment accepted before anything fails
        token = DevIssuer(data_dir / "issuer").ensure().mint("clinic", "events:write", ["FAC-ZA-001"])
        event_id = str(uuid.uuid4())
        reply = httpx.post(
            url["enrolment"] + "/v1/events",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "events": [
                    {
                        "event_id": event_id,
                        "type": "ClientEnrolled",
                        "facility_id": "FAC-ZA-001",
                        "occurred_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
                        "client_ref": f"ANC-{uuid.uuid4().hex[:8].upper()}",
                        "data": {
                            "age_years": 27,
                            "status_at_enrolment": "pregnant",
                            "hiv_status": "negative",
                            "on_art": False,
                            "gestation_weeks": 14,
                        },
                    }
                ]
            },
            timeout=30,
        )
        assert reply.json()["accepted"] == 1, reply.text
        [published] = _published_ce_ids(data_dir)
        _wait(lambda: _on_topic(bootstrap, published), "the enrolment on its topic")

        # a killed service is started again; the others keep running
        others = {s: _pid(runner, f"{s}.main:app") for s in ("enrolment", "referrals", "reporting")}
        followup = _pid(runner, "followup.main:app")
        os.kill(followup, signal.SIGKILL)
        _wait(
            lambda: _pid_or_none(runner, "followup.main:app") not in (None, followup) and _ready(url["followup"]),
            "followup started again and ready",
        )
        assert {s: _pid(runner, f"{s}.main:app") for s in others} == others

        # a killed dev broker is started again on its port, with the configured partitions, and
        # what the outboxes hold is published to it again
        broker = _pid(runner, "tansu")
        os.kill(broker, signal.SIGKILL)
        _wait(lambda: _pid_or_none(runner, "tansu") not in (None, broker), "a new broker")
        _wait(lambda: _on_topic(bootstrap, published), "the enrolment published again to the new broker")
        assert _partitions(bootstrap, "pmtct.enrolment.v1") == PARTITIONS
        _wait(lambda: all(_ready(u) for u in url.values()), "every service ready on the new broker")

        # the runner killed outright: nothing it started survives it
        children = runner.children(recursive=True)
        pg = postmaster_pid(data_dir)
    except BaseException:
        proc.kill()
        raise
    proc.kill()
    proc.wait(10)

    def gone(pid: int) -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (all(gone(c.pid) for c in children) and gone(pg)):
        time.sleep(0.3)
    left = [(c.pid, " ".join(c.cmdline())[:120]) for c in children if not gone(c.pid)]
    assert left == [] and gone(pg), f"left behind: {left}, postgres {pg} gone: {gone(pg)}"


def _pid_or_none(runner: psutil.Process, needle: str) -> int | None:
    try:
        return _pid(runner, needle)
    except StopIteration:
        return None


def _partitions(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    async def count() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            await consumer.topics()
            return len(consumer.partitions_for_topic(topic) or ())
        finally:
            await consumer.stop()

    return asyncio.run(count())


def _published_ce_ids(data_dir: Path) -> list[str]:
    from test_local_runner import sql

    return sql(data_dir, "SELECT string_agg(event_id::text, ',') FROM enrolment.outbox").split(",")
