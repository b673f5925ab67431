"""Encryption at rest of a client's personal data (names, phone number, national id).

AES-256-GCM with a random 96-bit nonce per value. The client id and the column name are the
associated data, so a ciphertext copied into another row or column fails to decrypt instead of
showing one woman's name on another's record.
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


def decode_key(encoded: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(encoded.strip().encode())
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the personal-data key must be urlsafe base64") from exc
    if len(key) != 32:
        raise ValueError(f"the personal-data key must be 32 bytes (AES-256), not {len(key)}")
    return key


class PersonalDataCipher:
    def __init__(self, encoded_key: str) -> None:
        self._aead = AESGCM(decode_key(encoded_key))

    def encrypt(self, client_id: UUID, column: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), _associated(client_id, column))

    def decrypt(self, client_id: UUID, column: str, blob: bytes | None) -> str | None:
        """Raises cryptography.exceptions.InvalidTag if the value was tampered with or moved."""
        if blob is None:
            return None
        blob = bytes(blob)
        plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(client_id, column))
        return plain.decode()


@lru_cache(maxsize=2)
def cipher_of(key: str) -> PersonalDataCipher:
    """The cipher of a key (`PMTCT_PII_KEY`), made once."""
    return PersonalDataCipher(key)


def _associated(client_id: UUID, column: str) -> bytes:
    return f"{client_id}\x1f{column}".encode()
