"""No name, phone number, national id or EMR record number ever reaches the broker.

This file sorts last in tests/enrolment on purpose: by the time it runs, every enrolment test has
posted its events, and the EMR fixture remembers every name, phone number, national id, client_ref
and infant_ref it invented. The test adds its own batch of every event type (so it proves something
when run alone too), then reads every message on every `pmtct.*` topic, dead-letter topics
included, and looks for each of those values in keys, values and headers.
"""

from __future__ import annotations

import json
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pmtct_events import BY_CE_TYPE

#: field names that would mean personal data is on the wire, whatever their values
PERSONAL_FIELDS = {"given_name", "family_name", "phone", "national_id", "client_ref", "infant_ref", "name", "address"}


async def every_message(bootstrap_servers: str, timeout_s: float = 60) -> list[ConsumerRecord]:
    """Every record on every platform topic, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith("pmtct."))
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).items():
                records.extend(batch)
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        assert not pending, f"could not read to the end of {sorted(map(str, pending))}"
        return records
    finally:
        await consumer.stop()


def field_names(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {n for v in value.values() for n in field_names(v)}
    if isinstance(value, list):
        return {n for v in value for n in field_names(v)}
    return set()


async def test_no_personal_data_or_record_number_posted_is_on_any_topic(enrolment, emr) -> None:
    mother, other = emr.ref(), emr.ref()
    events = [
        emr.enrolment(mother, at=emr.ago(250), hiv_status="unknown"),
        emr.hiv_test(mother, emr.ago(240)),
        emr.art(mother, emr.ago(239)),
        emr.viral_load(mother, emr.ago(150), copies=20),
        emr.anc_visit(mother, emr.ago(140), gestation_weeks=30),
        emr.delivery(mother, emr.ago(60), infants=[emr.infant(), emr.infant(outcome="stillbirth")]),
        emr.transfer_out(mother, emr.ago(30)),
        emr.enrolment(other, at=emr.ago(100), status_at_enrolment="postnatal", gestation_weeks=None),
        emr.died(other, emr.ago(20)),
    ]
    nid = events[0]["data"]["national_id"]
    events.append(emr.enrolment(emr.ref(), at=emr.ago(25), facility_id="FAC-ZA-002", national_id=nid))
    results = await enrolment.accept(events)
    await enrolment.wait_published()
    await enrolment.catalog_events({results[0]["client_id"], results[7]["client_id"]}, expected=len(events))
    secrets = {s for s in emr.posted_pii if len(s) >= 6}
    assert len(secrets) >= 15  # this test's own: 3 women, 3 record numbers, 2 babies

    records = await every_message(enrolment.infra.bootstrap_servers)

    assert len(records) >= len(events)
    leaks = []
    for r in records:
        wire = b"\x00".join([r.key or b"", r.value or b"", *(v or b"" for _, v in r.headers or [])])
        leaks += [(r.topic, r.offset, s) for s in secrets if s.encode() in wire]
        ce_type = dict(r.headers or []).get("ce_type", b"").decode()
        if ce_type in BY_CE_TYPE:  # a catalog event (other tests may put deliberately broken messages on topics)
            payload = json.loads(r.value)
            leaks += [(r.topic, r.offset, f"field {n}") for n in field_names(payload) & PERSONAL_FIELDS]
    assert leaks == []
