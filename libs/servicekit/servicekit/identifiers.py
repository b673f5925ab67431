"""Keyed hashes of EMR record numbers and national ids.

An EMR's `client_ref` / `infant_ref` never travels on Kafka. Where a service other than enrolment
must resolve one (follow-up resolving a posted `infant_ref`), both compute the same HMAC-SHA256
with the platform's identifier key (`PMTCT_HMAC_KEY`); without the key the hash reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac


def ref_hash(key: str, facility_id: str, ref: str) -> str:
    """Hash of an EMR record number, scoped to the facility whose EMR issued it."""
    message = f"ref\x1f{facility_id}\x1f{ref.strip()}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def national_id_hash(key: str, national_id: str) -> str:
    """Hash of a national id: links the same woman across facilities without storing the id."""
    normalised = "".join(ch for ch in national_id.upper() if ch.isalnum())
    message = f"nid\x1f{normalised}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
