"""Push delivery to real local HTTP receivers: every change of 200 referrals reaches a receiver
that fails the first attempt of some deliveries and is down for a while, each accepted exactly
once and in feed order, signed as Standard Webhooks says; a second receiver that does not answer
meanwhile does not hold the first back; repeated failure pauses a subscription, which resumes and
re-sends from a feed position."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from conftest import FACILITY, OTHER_FACILITY, Api
from sqlalchemy import text as sa_text
from standardwebhooks import Webhook, WebhookVerificationError

from pmtct_tools.localinfra import free_port
from referrals.subscriptions import check_url
from servicekit.problems import Problem

REFERRALS = 200
ACCEPTED = 50  # of them, accepted too: a second change each


class Receiver:
    """A webhook receiver: a real HTTP server (uvicorn) on a local port. `answer(body, attempt)`
    gives the status to answer the `attempt`-th delivery of an entry; it may wait first."""

    def __init__(self, answer: Callable[[dict, int], Any] | None = None) -> None:
        self.port = free_port()
        self.answer = answer
        self.secret: str | None = None
        self.accepted: list[dict] = []
        self.attempts: Counter[str] = Counter()
        self.bad_signatures = 0
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self.bad_signatures += 1
            status = 401
        else:
            entry = json.loads(body)
            assert headers["webhook-id"] == entry["event_id"]
            self.attempts[entry["event_id"]] += 1
            status = 200
            if self.answer is not None:
                status = await self.answer(entry, self.attempts[entry["event_id"]])
            if status == 200:
                self.accepted.append(entry)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


async def subscribe(api: Api, receiver: Receiver, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.http.post("/v1/subscriptions", json={"url": receiver.url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    receiver.secret = created["secret"]
    return created


async def until(
    check: Callable[[], Any], what: str, timeout_s: float = 120, explain: Callable[[], Any] | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"never: {what}" + (f"\n{await explain()}" if explain is not None else ""))
        await asyncio.sleep(0.05)


async def push_state(api: Api, subscription_id: str) -> str:
    """What the deliverer and the database were doing (for a failure message)."""
    tasks = {name: ("done" if t.done() else "running") for name, t in api.app.state.runtime.tasks.items()}
    async with api.sessions() as session:
        row = (
            await session.execute(
                sa_text(
                    "SELECT status, failures, next_attempt_at, leased_until, lease_owner, now() AS now"
                    " FROM subscription WHERE id = :id"
                ),
                {"id": subscription_id},
            )
        ).first()
        busy = (
            await session.execute(
                sa_text(
                    "SELECT state, wait_event_type, wait_event, now() - xact_start AS age, left(query, 160)"
                    " FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle'"
                    " AND pid <> pg_backend_pid()"
                )
            )
        ).all()
    return f"tasks: {tasks}\nsubscription: {row and dict(row._mapping)}\nbusy sessions: {[tuple(b) for b in busy]}"


async def deliveries(api: Api, subscription: dict, headers: dict[str, str]) -> list[dict]:
    response = await api.http.get(
        f"/v1/subscriptions/{subscription['id']}/deliveries", params={"limit": 1000}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def flaky(entry: dict, attempt: int) -> bool:
    """Some deliveries fail at their first attempt (one in ten entries, by event id)."""
    return attempt == 1 and int(entry["event_id"].replace("-", ""), 16) % 10 == 0


async def test_every_change_of_200_referrals_reaches_a_flaky_receiver_once_in_feed_order(api: Api) -> None:
    ministry = api.auth("referrals:read", [FACILITY], client="ministry-a")
    national = api.auth("referrals:read", ["*"], client="ministry-b")
    went_down = asyncio.Event()
    release_slow = asyncio.Event()

    async def fast_answer(entry: dict, attempt: int) -> int:
        if flaky(entry, attempt):
            return 500
        if len(fast.accepted) == REFERRALS // 2:
            went_down.set()
        return 200

    async def slow_answer(entry: dict, attempt: int) -> int:
        await release_slow.wait()  # a receiver that does not answer for now
        return 200

    fast, slow = Receiver(fast_answer), Receiver(slow_answer)
    await fast.start()
    await slow.start()
    a = await subscribe(api, fast, ministry)
    b = await subscribe(api, slow, national)
    assert (
        a["facility_ids"] == [FACILITY]
        and b["facility_ids"] is None
        and "secret" not in (await api.http.get(f"/v1/subscriptions/{a['id']}", headers=ministry)).json()
    )
    try:
        both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
        made = [await api.create() for _ in range(REFERRALS)]
        for r in made[:ACCEPTED]:
            assert (await api.act(r["id"], "accept", both)).status_code == 200

        # halfway, the first receiver goes down until the platform has failed to reach it twice
        await asyncio.wait_for(went_down.wait(), 120)
        await fast.stop()

        async def refused_twice() -> bool:
            log = await deliveries(api, a, ministry)
            return sum(1 for d in log if d["error"] and "Connect" in d["error"]) >= 2

        await until(refused_twice, "two refused connections")
        await fast.start()

        ours = {r["id"] for r in made}
        feed: list[dict] = []
        after = a["cursor"]
        while True:
            page = (await api.http.get("/v1/feed", params={"after": after}, headers=ministry)).json()
            feed += [e for e in page["entries"] if e["referral_id"] in ours]
            after = page["next_cursor"]
            if not page["has_more"]:
                break
        assert len(feed) == REFERRALS + ACCEPTED

        async def fast_has_all() -> bool:
            return len(fast.accepted) >= len(feed)

        await until(fast_has_all, "the first receiver has every change")
        # every change accepted once, in the feed's order (so each referral's in version order)
        assert [e["event_id"] for e in fast.accepted] == [e["event_id"] for e in feed]
        assert [e["data"] for e in fast.accepted] == [e["data"] for e in feed]
        versions: dict[str, list[int]] = defaultdict(list)
        for e in fast.accepted:
            versions[e["referral_id"]].append(e["version"])
        assert all(v == sorted(v) for v in versions.values())
        assert fast.bad_signatures == 0
        # every entry that failed its first attempt was retried (and a few more: those sent while it was down)
        retried = {i for i, n in fast.attempts.items() if n > 1}
        assert {e["event_id"] for e in feed if flaky(e, 1)} <= retried
        log = await deliveries(api, a, ministry)
        assert {d["outcome"] for d in log} == {"delivered", "failed"}
        assert {d["status_code"] for d in log if d["outcome"] == "failed"} >= {500, None}
        assert (await api.http.get(f"/v1/subscriptions/{a['id']}", headers=ministry)).json()["status"] == "active"

        # the second receiver has not answered once all this time; now it does, and catches up
        assert slow.accepted == []
        release_slow.set()

        # (an answer that came after the platform's timeout never reached it: that entry is sent
        # again, with the same webhook-id, which is what a receiver de-duplicates on)
        def slow_ours() -> list[str]:
            return list(dict.fromkeys(e["event_id"] for e in slow.accepted if e["referral_id"] in ours))

        async def slow_has_all() -> bool:
            return len(slow_ours()) >= len(feed)

        await until(slow_has_all, "the second receiver has every change")
        assert slow_ours() == [e["event_id"] for e in feed]
    finally:
        release_slow.set()
        for s, h in ((a, ministry), (b, national)):
            await api.http.delete(f"/v1/subscriptions/{s['id']}", headers=h)
        await fast.stop()
        await slow.stop()


async def test_repeated_failure_pauses_and_resume_and_resend_deliver_again(api: Api) -> None:
    headers = api.auth("referrals:read", [FACILITY], client="hie")
    healthy = False

    async def answer(entry: dict, attempt: int) -> int:
        return 200 if healthy else 503

    receiver = Receiver(answer)
    await receiver.start()
    sub = await subscribe(api, receiver, headers, event_types=["ReferralCreated"])
    try:
        first = await api.create()
        both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
        await api.act(first["id"], "accept", both)  # not a kind this subscription takes

        async def paused() -> bool:
            found = (await api.http.get(f"/v1/subscriptions/{sub['id']}", headers=headers)).json()
            return found["status"] == "paused"

        await until(paused, "paused after repeated failure", explain=lambda: push_state(api, sub["id"]))
        state = (await api.http.get(f"/v1/subscriptions/{sub['id']}", headers=headers)).json()
        assert state["failures"] == 8 and "8 failed attempts" in state["paused_reason"]
        assert state["cursor"] == sub["cursor"]  # nothing acknowledged
        log = await deliveries(api, sub, headers)
        assert [d["attempt"] for d in log] == list(range(8, 0, -1)) and {d["status_code"] for d in log} == {503}

        async def counted_failing() -> bool:  # what the alert PmtctPushSubscriptionFailing reads
            text = (await api.http.get("/metrics")).text
            return any(
                line.startswith('pmtct_push_subscriptions{state="failing"}') and float(line.split()[-1]) >= 1
                for line in text.splitlines()
            )

        await until(counted_failing, "the failing subscription counted in /metrics")

        healthy = True
        second = await api.create()
        resumed = await api.http.post(f"/v1/subscriptions/{sub['id']}/resume", headers=headers)
        assert resumed.status_code == 200 and resumed.json()["status"] == "active"

        async def both_created() -> bool:
            return {e["referral_id"] for e in receiver.accepted} >= {first["id"], second["id"]}

        await until(both_created, "both ReferralCreated after resuming")
        assert [(e["referral_id"], e["type"].split(".")[-2]) for e in receiver.accepted] == [
            (first["id"], "ReferralCreated"),
            (second["id"], "ReferralCreated"),
        ]
        # re-send from the subscription's start: the same entries again, with the same webhook-id
        resent = await api.http.post(
            f"/v1/subscriptions/{sub['id']}/resend", json={"after": sub["cursor"]}, headers=headers
        )
        assert resent.status_code == 200 and resent.json()["cursor"] == sub["cursor"]

        async def twice() -> bool:
            return len(receiver.accepted) >= 4

        await until(twice, "the re-sent entries")
        assert [e["event_id"] for e in receiver.accepted[2:]] == [e["event_id"] for e in receiver.accepted[:2]]
    finally:
        await api.http.delete(f"/v1/subscriptions/{sub['id']}", headers=headers)
        await receiver.stop()


@pytest.mark.parametrize(
    "body, code",
    [
        ({"url": "ftp://example.org/hook"}, "invalid_webhook_url"),
        ({"url": "http://user:pw@example.org/hook"}, "invalid_webhook_url"),
        ({"url": "http://example.org/hook", "facility_ids": ["FAC-XX-999"]}, "unknown_facility"),
        ({"url": "http://example.org/hook", "facility_ids": [OTHER_FACILITY]}, "facility_forbidden"),
        ({"url": "http://example.org/hook", "event_types": ["ReferralLost"]}, "unknown_event_type"),
        ({"url": "http://example.org/hook", "after": "99999999999"}, "invalid_cursor"),
        ({"url": "http://example.org/hook", "colour": "red"}, "validation_failed"),
        ({"url": "http://example.org/ho\u0000ok"}, "validation_failed"),
    ],
)
async def test_a_bad_subscription_is_refused_with_its_code(api: Api, body: dict, code: str) -> None:
    response = await api.http.post("/v1/subscriptions", json=body, headers=api.auth("referrals:read", [FACILITY]))
    assert response.status_code in (403, 422) and response.json()["code"] == code


async def test_a_client_sees_and_changes_only_its_own_subscriptions(api: Api) -> None:
    mine = api.auth("referrals:read", [FACILITY], client="hie-1")
    theirs = api.auth("referrals:read", [FACILITY], client="hie-2")
    created = (await api.http.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x"}, headers=mine)).json()
    try:
        assert (await api.http.get(f"/v1/subscriptions/{created['id']}", headers=theirs)).status_code == 404
        assert (await api.http.post(f"/v1/subscriptions/{created['id']}/pause", headers=theirs)).status_code == 404
        assert created["id"] not in {
            s["id"] for s in (await api.http.get("/v1/subscriptions", headers=theirs)).json()["items"]
        }
        paused = await api.http.post(f"/v1/subscriptions/{created['id']}/pause", headers=mine)
        assert paused.json()["status"] == "paused"
    finally:
        assert (await api.http.delete(f"/v1/subscriptions/{created['id']}", headers=mine)).status_code == 204


@pytest.mark.parametrize(
    "url, code",
    [
        ("https://hie.example.org/referrals", None),
        ("https://203.0.113.7/hook", "webhook_url_not_public"),  # TEST-NET-3: documentation, not global
        ("http://hie.example.org/referrals", "invalid_webhook_url"),
        ("https://localhost/hook", "webhook_url_not_public"),
        ("https://127.0.0.1:8003/v1/referrals", "webhook_url_not_public"),
        ("https://10.0.0.5/hook", "webhook_url_not_public"),
        ("https://[fd00::1]/hook", "webhook_url_not_public"),
        ("https://169.254.169.254/latest/meta-data", "webhook_url_not_public"),
        ("https://db.internal/hook", "webhook_url_not_public"),
        ("https://gateway/hook", "webhook_url_not_public"),
        ("https://8.8.8.8/hook", None),
    ],
)
def test_outside_development_a_webhook_is_https_to_a_public_host(url: str, code: str | None) -> None:
    if code is None:
        check_url(url, allow_http=False)
    else:
        with pytest.raises(Problem) as refused:
            check_url(url, allow_http=False)
        assert refused.value.code == code


async def test_the_push_worker_waits_for_a_database_that_is_gone_without_a_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """At the end of `make run` the database went before referrals did and the push worker printed
    a traceback on every pass. A database that cannot be reached is now one warning line a pass,
    and the worker keeps going until it is stopped."""
    import logging

    from pmtct_tools.localinfra import free_port
    from referrals import push
    from servicekit import db
    from servicekit.app import Runtime
    from servicekit.facilities import FacilityRegistry

    gone = db.create_engine(f"postgresql://pmtct_referrals:x@127.0.0.1:{free_port()}/pmtct", "referrals", pool_size=1)
    settings = api.settings.model_copy(update={"push_poll_interval_s": 0.05})
    rt = Runtime(settings, gone, db.sessionmaker(gone), None, FacilityRegistry([]))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="referrals.push"):
        worker = asyncio.create_task(push.run(rt))
        await asyncio.sleep(1.0)
        assert not worker.done(), worker
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    await gone.dispose()
    mine = [r for r in caplog.records if r.name == "referrals.push"]
    assert mine and all("not reachable" in r.getMessage() for r in mine)
    assert not any(r.exc_info for r in mine)
