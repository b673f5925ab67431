"""`POST /fhir`: a FHIR R4 transaction or batch Bundle, as an OpenMRS-style EMR sends it, recorded
as the platform's own events through the one front door (`frontdoor.submit`), so a bundle has the
effects the same events posted as JSON have. The translation is `fhir_translate.py` (pure); this
module reads the request, runs it, and answers in FHIR (docs/fhir-intake.md).

- **A transaction is all or nothing**: its events are first submitted as a dry run; if any entry
  is refused (by the translation or by the platform's rules), the answer is a 4xx OperationOutcome
  with one issue per refused entry (`expression`: `Bundle.entry[i]`) and nothing is recorded.
  Otherwise they are submitted for real and the answer is a `transaction-response` Bundle.
- **A batch** is taken entry by entry: a `batch-response` Bundle, each entry with its own status
  and, where refused, an OperationOutcome.
- `?dry_run=true`: the same answer, recording nothing.

Entry statuses: `201 Created` (its events recorded), `202 Accepted` (held until what it waits for
is posted: an OperationOutcome of severity information says what), `200 OK` (already recorded: a
duplicate; or an entry with no event of its own, read with the others), `4xx` with an
OperationOutcome (refused). A resource posted again under a new `meta.versionId` with the same
content is a duplicate; with other content it is a correction: its event replaces (`replaces`,
servicekit.corrections) the one that stands now for the resource, with an event_id of its content
(`replacement_id`), so the same correction posted again is a duplicate too. A changed resource
whose earlier event is only held, not recorded, is refused `correction_required` (409).

**No personal value in an answer**: every diagnostics text is cleared of the personal values of the
bundle's Patients and RelatedPersons (names, phone numbers, identifiers, birth and death dates,
addresses: `personal_values`), whatever rule or parser wrote it, and the door logs none.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from servicekit.fhir import issue, outcome
from servicekit.problems import Problem

from .fhir_translate import EVENT_NAMESPACE, BundleRefused, Planned, Refused, Setup, Translation, translate

#: the reason phrases of the statuses an entry can answer
REASONS = {
    200: "200 OK",
    201: "201 Created",
    202: "202 Accepted",
    400: "400 Bad Request",
    409: "409 Conflict",
    422: "422 Unprocessable Entity",
    503: "503 Service Unavailable",
}
MEDIA_TYPES = ("application/fhir+json", "application/json")
#: platform codes that mean "a conflict with what is recorded" rather than "this entry is wrong"
CONFLICT_CODES = frozenset(
    {
        "conflict",
        "already_enrolled",
        "identity_conflict",
        "delivery_too_soon",
        "already_voided",
        "void_dependents_first",
    }
)
RESEND_CODES = frozenset({"service_unavailable"})

#: what stands in an answer for a personal value of the bundle
WITHHELD = "[withheld]"
#: a changed resource under a new version: the platform's `conflict` as the FHIR door says it
CORRECTION_REQUIRED = "correction_required"
#: the order of the successful statuses (an entry shows the last of its events')
SUCCESS_RANK = {200: 0, 201: 1, 202: 2}

#: submits platform events through the front door: (events, dry_run, counted) -> one result per
#: event, in order (`counted=False`: the door's own dry run, kept out of the dry-run metric)
Submit = Callable[[list[dict[str, Any]], bool, bool], Awaitable[Sequence[Any]]]


def read_body(content_type: str, body: bytes, max_entries: int) -> Any:
    """The posted JSON, checked for what the whole request must be (media type, JSON, size)."""
    media = content_type.split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise Problem(
            415,
            "unsupported_media_type",
            f"Send the Bundle as Content-Type: application/fhir+json (got {media or 'none'!r}).",
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "malformed_json", "The request body is not valid JSON.") from None
    entries = parsed.get("entry") if isinstance(parsed, dict) else None
    if isinstance(entries, list) and len(entries) > max_entries:
        raise Problem(
            413, "batch_too_large", f"A Bundle holds at most {max_entries} entries; this one has {len(entries)}."
        )
    return parsed


def _result(r: Any) -> dict[str, Any]:
    return r.model_dump(mode="json") if hasattr(r, "model_dump") else dict(r)


def _event_status(result: dict[str, Any]) -> int:
    status = result.get("status")
    if status == "accepted":
        return 201
    if status == "pending":
        return 202
    if status == "duplicate":
        return 200
    code = result.get("code") or ""
    if code in RESEND_CODES:
        return 503
    return 409 if code in CONFLICT_CODES else 422


def _issues_of(t: Translation, results: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Every entry's refusals: by the translation, and by the platform for each event it is part of."""
    out: dict[int, list[dict[str, Any]]] = {}
    for index, refused in t.refused.items():
        out.setdefault(index, []).append(
            issue(refused.code, refused.detail, issue_type=refused.issue_type, expression=[refused.expression])
        )
    for planned, result in zip(t.events, results, strict=True):
        if _event_status(result) < 400:
            continue
        code = str(result.get("code"))
        detail = f"{planned.event['type']}: {result.get('reason') or result.get('code')}"
        if code == "conflict":
            code, detail = CORRECTION_REQUIRED, _correction_detail(planned)
        for index in t.entries_of(planned):
            out.setdefault(index, []).append(
                issue(
                    code,
                    detail,
                    issue_type="business-rule"
                    if _event_status(result) == 422
                    else ("conflict" if _event_status(result) == 409 else "transient"),
                    expression=[f"Bundle.entry[{index}]"],
                )
            )
    return out


def _entry_statuses(t: Translation, results: Sequence[dict[str, Any]]) -> dict[int, int]:
    statuses: dict[int, int] = {i: r.status for i, r in t.refused.items()}
    for planned, result in zip(t.events, results, strict=True):
        s = _event_status(result)
        for index in t.entries_of(planned):
            if index in t.refused:
                continue
            now = statuses.get(index)
            # the worst of its events; between successes, Accepted (held) over Created over OK
            if now is None or (s >= 400 and s > now) or (now < 400 and s < 400 and SUCCESS_RANK[s] > SUCCESS_RANK[now]):
                statuses[index] = s
    for index in t.context:
        statuses.setdefault(index, 200)
    return statuses


def refusal(t: Translation, results: Sequence[dict[str, Any]], dry_run: bool) -> Problem:
    """The 4xx of a transaction some entry of which is refused: nothing was recorded."""
    issues = _issues_of(t, results)
    statuses = _entry_statuses(t, results)
    status = 400 if any(statuses.get(i) == 400 for i in issues) else 422
    named = ", ".join(f"Bundle.entry[{i}]" for i in sorted(issues))
    found = outcome([i for index in sorted(issues) for i in issues[index]])
    return Problem(
        status,
        "transaction_refused",
        f"The transaction was not recorded ({'dry run; ' if dry_run else ''}all or nothing): refused {named}.",
        outcome=found,
    )


def _note(t: Translation, planned: Planned, result: dict[str, Any]) -> str:
    """What an entry's informational issue says of one of its events: its type, id, status and the
    platform ids it was given (her client_id, a delivery's infant ids, an infant's id)."""
    note = f"{planned.event['type']} {planned.event['event_id']}: {result.get('status')}"
    given = [f"client_id {result['client_id']}"] if result.get("client_id") else []
    given += [
        f"{t.infant_patients.get(i['infant_ref'], 'infant')} infant_id {i['infant_id']}"
        for i in result.get("infants") or ()
    ]
    if result.get("infant_id") and not result.get("infants"):
        given.append(f"infant_id {result['infant_id']}")
    return note + (f" ({', '.join(given)})" if given else "")


def _correction_detail(planned: Planned) -> str:
    event = planned.event
    return (
        f"{event['type']} {event['event_id']}: an earlier version of this resource with other clinical content is"
        " held, not recorded yet, so there is nothing to replace: post the changed resource again once the held"
        f" event is decided (GET /v1/events/{event['event_id']})."
    )


def _held_issues(t: Translation, results: Sequence[dict[str, Any]], dry_run: bool) -> dict[int, list[dict[str, Any]]]:
    """Each held (pending) entry's information: what it waits for, and where to ask what became of it."""
    out: dict[int, list[dict[str, Any]]] = {}
    for planned, result in zip(t.events, results, strict=True):
        if result.get("status") != "pending":
            continue
        detail = (
            f"{planned.event['type']} {planned.event['event_id']}: {'would be ' if dry_run else ''}held, not"
            f" recorded yet ({result.get('code')}): {result.get('reason') or 'it waits for an earlier event'}"
            f" GET /v1/events/{planned.event['event_id']} says what became of it."
        )
        for index in t.entries_of(planned):
            out.setdefault(index, []).append(
                issue(
                    str(result.get("code") or "pending"),
                    detail,
                    issue_type="informational",
                    severity="information",
                    expression=[f"Bundle.entry[{index}]"],
                )
            )
    return out


def response_bundle(t: Translation, results: Sequence[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    """The transaction-response or batch-response Bundle: one entry per posted entry, in order."""
    issues = _issues_of(t, results)
    held = _held_issues(t, results, dry_run)
    statuses = _entry_statuses(t, results)
    ids: dict[int, list[str]] = {}
    for planned, result in zip(t.events, results, strict=True):
        for index in t.entries_of(planned):
            ids.setdefault(index, []).append(_note(t, planned, result))
    entries = []
    for index in range(t.entries):
        status = statuses.get(index, 200)
        response: dict[str, Any] = {"status": REASONS.get(status, str(status))}
        if index in issues:
            response["outcome"] = outcome(issues[index])
        elif status == 202 and index in held:
            response["outcome"] = outcome(held[index])
        elif index in ids or index in t.context:
            note = "; ".join(ids.get(index, ())) or t.context.get(index, "")
            response["outcome"] = outcome(
                [
                    issue(
                        "dry_run" if dry_run else "recorded",
                        note,
                        issue_type="informational",
                        severity="information",
                        expression=[f"Bundle.entry[{index}]"],
                    )
                ]
            )
        entries.append({"response": response})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": f"{t.bundle_type}-response", "entry": entries}
    if dry_run:
        bundle["meta"] = {
            "tag": [
                {
                    "system": "https://pmtct.org/fhir/CodeSystem/intake",
                    "code": "dry-run",
                    "display": "Dry run: nothing was recorded",
                }
            ]
        }
    return bundle


# --- no personal value in an answer ----------------------------------------------------------------

#: the elements of a Patient or RelatedPerson that hold personal values (R4 Patient / RelatedPerson)
_PERSONAL = ("name", "telecom", "identifier", "birthDate", "deceasedDateTime", "address", "contact", "text")


def personal_values(body: Any) -> frozenset[str]:
    """Every personal value of the posted bundle's Patients and RelatedPersons: the text of their
    names, phone numbers, identifiers, birth and death dates, addresses and contacts."""
    found: set[str] = set()
    entries = body.get("entry") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") not in ("Patient", "RelatedPerson"):
            continue
        for element in _PERSONAL:
            _strings(resource.get(element), found, element)
    return frozenset(v for v in found if len(v) >= 2)


def _strings(value: Any, into: set[str], element: str) -> None:
    if isinstance(value, str):
        into.update({value, value.strip()})
        if element == "birthDate" or element == "deceasedDateTime":
            into.add(value[:10])  # the day, as a rule's reason would name it
    elif isinstance(value, int | float) and not isinstance(value, bool) and element in ("identifier", "telecom"):
        into.add(str(value))
    elif isinstance(value, list):
        for v in value:
            _strings(v, into, element)
    elif isinstance(value, dict):
        for key, v in value.items():
            # codes and systems say what a value is, not whose (`system`, `use`, `type`, `url`)
            if key not in ("system", "use", "type", "url", "status", "period", "id", "extension", "relationship"):
                _strings(v, into, element)


def withhold(answer: Any, values: frozenset[str]) -> Any:
    """`answer` (JSON) with every personal value in its text replaced by `WITHHELD`."""
    if not values:
        return answer
    ordered = sorted(values, key=len, reverse=True)
    # as whole words: a short name is not cut out of a longer word
    pattern = re.compile("(?<![0-9A-Za-z])(?:" + "|".join(re.escape(v) for v in ordered) + ")(?![0-9A-Za-z])")

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(WITHHELD, v)
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return clean(answer)


def _withheld(problem: Problem, values: frozenset[str]) -> Problem:
    extra = {k: withhold(v, values) for k, v in problem.extra.items()}
    cleaned = Problem(problem.status, problem.code, withhold(problem.detail, values), problem.title, **extra)
    cleaned.headers = dict(problem.headers)
    return cleaned


async def record(body: Any, setup: Setup, submit: Submit, dry_run: bool, chain: Chain | None = None) -> dict[str, Any]:
    """Translate a posted Bundle, submit its events, and answer (see the module docstring), with no
    personal value of the bundle in the answer (`withhold`). `chain`: how to find what stands now
    for a recorded event (None: a changed resource is refused `correction_required`)."""
    values = personal_values(body)
    try:
        return withhold(await _record(body, setup, submit, dry_run, chain), values)
    except Problem as problem:
        raise _withheld(problem, values) from None
    except BundleRefused as refused:
        raise BundleRefused(refused.code, withhold(refused.detail, values), refused.status) from None


async def _record(body: Any, setup: Setup, submit: Submit, dry_run: bool, chain: Chain | None) -> dict[str, Any]:
    t = translate(body, setup)
    if chain is not None:
        await _voids_what_stands(t, chain)
    events = [p.event for p in t.events]
    if t.bundle_type == "transaction":
        if t.refused:
            raise refusal(t, [{"status": "accepted"}] * len(events), dry_run)
        # the all-or-nothing check: a dry run of the door's own, counted only when the caller asked one
        rehearsed = [_result(r) for r in await submit(events, True, dry_run)] if events else []
        if chain is not None and await _as_replacements(t, rehearsed, chain):
            rehearsed = [_result(r) for r in await submit([p.event for p in t.events], True, False)]
        if any(_event_status(r) >= 400 for r in rehearsed):
            raise refusal(t, rehearsed, dry_run)
        if dry_run:
            return response_bundle(t, rehearsed, dry_run)
        events = [p.event for p in t.events]
    results = [_result(r) for r in await submit(events, dry_run, True)] if events else []
    if t.bundle_type == "batch" and chain is not None:
        before = [p.event["event_id"] for p in t.events]
        if await _as_replacements(t, results, chain):
            again = [i for i, p in enumerate(t.events) if p.event["event_id"] != before[i]]
            answered = await submit([t.events[i].event for i in again], dry_run, not dry_run)
            for i, r in zip(again, answered, strict=True):
                results[i] = {**_result(r), "index": i}
    return response_bundle(t, results, dry_run)


# --- a resource changed under a new version: a replacement ------------------------------------------

#: what stands now for a recorded event: its event_id and those that replaced it, oldest first
#: (the `voided_by` of each, as `GET /v1/events/{event_id}` says); empty when it is not recorded
Chain = Callable[[str], Awaitable[list[str]]]


def replacement_id(event: Mapping[str, Any]) -> str:
    """The event_id of a replacement: its first event_id and its content, so the same corrected
    content posted again (under any version) is the same replacement, a duplicate."""
    content = {k: v for k, v in event.items() if k not in ("event_id", "replaces")}
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{event['event_id']}|{digest}"))


async def _voids_what_stands(t: Translation, chain: Chain) -> None:
    """A resource re-posted entered-in-error voids what stands now for it: the replacement of its
    event, if a changed version replaced it (the void itself, posted again, stays a duplicate)."""
    for planned in t.events:
        event = planned.event
        if event["type"] != "EventVoided":
            continue
        named = event["data"]["voided_event_id"]
        standing = [i for i in await chain(named) if i != event["event_id"]]
        if standing and standing[-1] != named:
            planned.event = {**event, "data": {**event["data"], "voided_event_id": standing[-1]}}


async def _as_replacements(t: Translation, results: Sequence[dict[str, Any]], chain: Chain) -> bool:
    """Each event the platform answered `conflict` (its resource recorded before with other content)
    becomes the replacement (`replaces`) of the event that stands now for that resource. True when
    any did."""
    changed = False
    for planned, result in zip(t.events, results, strict=True):
        if result.get("code") != "conflict" or "replaces" in planned.event:
            continue
        recorded = await chain(planned.event["event_id"])
        if not recorded:
            continue  # held, not recorded: answered correction_required
        new_id = replacement_id(planned.event)
        # posted before as this same replacement: post it as it was (a duplicate)
        replaces = recorded[recorded.index(new_id) - 1] if new_id in recorded[1:] else recorded[-1]
        planned.event = {**planned.event, "event_id": new_id, "replaces": replaces}
        changed = True
    return changed


__all__ = [
    "Planned",
    "Refused",
    "Setup",
    "personal_values",
    "read_body",
    "record",
    "refusal",
    "response_bundle",
    "withhold",
]
