"""JSON Schema of every event and the AsyncAPI 3.0 document, generated from the models.

`python -m pmtct_events.schemagen DIR` (or `make schemas`) writes them; the committed copies
are the published contract, and `breaking_changes` says whether a model change may ship in v1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .base import Event
from .catalog import ALL_EVENTS, dlq_topic

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "format": "uuid", "description": "idempotency key"},
        "ce_type": {"type": "string", "description": "org.pmtct.<service>.<EventName>.v1"},
        "ce_source": {"type": "string", "description": "/services/<service>"},
        "ce_subject": {"type": "string", "description": "aggregate id, equal to the Kafka key"},
        "ce_time": {"type": "string", "format": "date-time"},
        "content-type": {"type": "string", "const": "application/json"},
        "ce_facilityid": {"type": "string"},
        "ce_correlationid": {"type": "string"},
        "ce_causationid": {"type": "string"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
    },
}


def schema_of(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"https://pmtct.org/schemas/{model.ce_type()}.json"
    schema["x-ce-type"] = model.ce_type()
    schema["x-topic"] = model.topic()
    schema["x-key"] = model.key_field
    return schema


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[type[Event]]] = {}
    for model in ALL_EVENTS:
        by_topic.setdefault(model.topic(), []).append(model)
    for topic, models in by_topic.items():
        service = models[0].service
        channel_id = topic.replace(".", "_")
        channels[channel_id] = {
            "address": topic,
            "description": f"Events of the {service} service, keyed by aggregate id; 6 partitions by default. "
            f"Poison messages go to {dlq_topic(topic)}.",
            "messages": {m.event_name: {"$ref": f"#/components/messages/{m.event_name}"} for m in models},
        }
        operations[f"publish_{service}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m.event_name}"} for m in models],
        }
        for m in models:
            messages[m.event_name] = {
                "name": m.event_name,
                "title": m.ce_type(),
                "summary": (m.__doc__ or m.event_name).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": HEADERS_SCHEMA,
                "payload": {"$ref": f"schemas/{m.ce_type()}.json"},
                "bindings": {
                    "kafka": {"key": {"type": "string", "format": "uuid", "description": f"the event's {m.key_field}"}}
                },
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "PMTCT event platform",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 in Kafka binary mode. Value = JSON data; attributes in ce_* headers. "
            "No names, phone numbers, national ids or EMR record numbers ever appear in a message.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """File name (relative to libs/events) -> content."""
    files = {
        f"schemas/{m.ce_type()}.json": json.dumps(schema_of(m), indent=2, sort_keys=True) + "\n" for m in ALL_EVENTS
    }
    files["asyncapi.json"] = json.dumps(asyncapi(), indent=2, sort_keys=True) + "\n"
    return files


def _props(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema.get("properties", {}), set(schema.get("required", []))


def _types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in prop:
        return _types(defs[prop["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in prop:
        return set().union(*(_types(p, defs) for p in prop["anyOf"]))
    if "enum" in prop:
        return {f"enum:{v}" for v in prop["enum"]}
    return {str(prop.get("type", "any"))}


def breaking_changes(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """What in `new` would break a consumer written against `old`: a removed field, a field that
    became required, a changed type, a removed enum value. Adding optional fields is fine."""
    problems: list[str] = []
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    old_props, old_req = _props(old, old_defs)
    new_props, new_req = _props(new, new_defs)
    for name, prop in old_props.items():
        where = f"{path}{name}"
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        lost = _types(prop, old_defs) - _types(new_props[name], new_defs)
        if lost:
            problems.append(f"{where}: no longer accepts {sorted(lost)}")
    for name in new_req - old_req:
        problems.append(f"{path}{name}: became required")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    for rel, content in render().items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    print(f"wrote {len(ALL_EVENTS)} event schemas and asyncapi.json under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
