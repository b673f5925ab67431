"""Write deploy/.env from deploy/.env.example with a fresh random value for every empty entry.

    python3 deploy/new_env.py [--output deploy/.env]

Passwords and client secrets become hex (safe inside connection URLs), `*_KEY` entries the urlsafe
base64 of 32 random bytes, KAFKA_CLUSTER_ID a KRaft cluster id. Values already set in the example
are kept. Refuses to overwrite an existing file: rotating a key is a procedure, not a re-run
(docs/operations.md, "Rotate keys"). Standard library only: runs on the Docker host as it is.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fresh_value(name: str) -> str:
    if name == "KAFKA_CLUSTER_ID":
        return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if name.endswith("_KEY"):
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_hex(24)


def render(example: str) -> str:
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and not value.strip():
            line = f"{name}={fresh_value(name.strip())}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=HERE / ".env.example")
    parser.add_argument("--output", type=Path, default=HERE / ".env")
    args = parser.parse_args(argv)
    if args.output.exists():
        print(f"{args.output} exists; not overwriting it (move it away first if you mean it)", file=sys.stderr)
        return 1
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(render(args.example.read_text()))
    print(f"wrote {args.output} (mode 600); review its non-secret values, then `make up`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
