"""The operator's and the integrator's documents, checked against what the platform does: the
runbook called Kafka "a 30-day transport" beside "kept forever" (event topics are kept forever by
default); the referrals README's consumer example used the compose network's hostname (`kafka:9092`,
unreachable from a partner's machine) and a top-level `await` (not Python outside a notebook)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from servicekit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("services/*/README.md"))]


def test_no_document_calls_kafka_a_30_day_transport_and_the_runbook_says_topics_are_kept_forever() -> None:
    assert ServiceSettings().kafka_retention_ms == -1
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        assert not re.search(r"30[- ]day (transport|buffer|log)", text, re.IGNORECASE), doc
    runbook = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert "`PMTCT_KAFKA_RETENTION_MS` | `-1` (forever)" in runbook
    assert "event topics forever" in runbook


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def test_every_kafka_consumer_example_is_a_script_that_runs_outside_the_compose_network() -> None:
    examples = [(doc, block) for doc in DOCS for block in python_blocks(doc) if "AIOKafkaConsumer(" in block]
    assert len(examples) >= 2, "the referrals README and the ministry guide each show a consumer"
    for doc, block in examples:
        # compiles as a plain script: a top-level await is a SyntaxError here
        tree = ast.parse(block)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
        assert any(c.func.attr == "run" and getattr(c.func.value, "id", "") == "asyncio" for c in calls), doc
        servers = re.findall(r'bootstrap_servers="([^"]+)"', block)
        assert servers and all(not s.startswith("kafka:") for s in servers), (doc, servers)


def test_every_code_block_of_every_document_is_closed_on_a_line_of_its_own() -> None:
    # indicators.md had "``` Authentication: ..." as a closing fence: Markdown read it as no fence at
    # all, and the rest of the page rendered as code
    for doc in DOCS:
        fences = [
            (number, line.strip())
            for number, line in enumerate(doc.read_text().splitlines(), 1)
            if line.lstrip().startswith("```")
        ]
        assert len(fences) % 2 == 0, f"{doc.name}: a code block is never closed"
        closing = [(number, line) for number, line in fences[1::2] if line != "```"]
        assert not closing, f"{doc.name}: a closing fence with text after it: {closing}"
