"""Encryption at rest for uploaded files: AES-256-GCM with keys from configuration.

``FILE_ENCRYPTION_KEYS`` is a comma-separated list of ``keyid:base64key`` (32-byte keys); the
first encrypts, all of them decrypt, so a key rotates by putting a new one first and keeping the
old ones until nothing is encrypted under them any more.

A stored blob is ``keyid`` ``:`` 12-byte nonce, then the ciphertext with its 16-byte tag::

    b"k2026:" + nonce + AESGCM(key).encrypt(nonce, data, associated_data)

The key id in front says which key to decrypt with. ``associated_data`` binds a blob to its row
(for submissions: the assignment and the student), so a blob copied into another row does not
decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NONCE_BYTES = 12


class CryptoError(Exception):
    """A configuration or data problem: a bad key list, an unknown key id, a tampered blob."""


def generate_key_entry(key_id: str | None = None) -> str:
    """A fresh ``keyid:base64key`` entry for ``FILE_ENCRYPTION_KEYS``."""
    key_id = key_id or "k" + secrets.token_hex(4)
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def parse_keys(spec: str, setting: str = "FILE_ENCRYPTION_KEYS") -> list[tuple[str, bytes]]:
    """``"id1:b64,id2:b64"`` -> ``[("id1", key), ("id2", key)]``, checked; ``setting`` names the
    configuration variable in the messages (card data has keys of its own, ``CARD_DATA_KEYS``)."""
    keys: list[tuple[str, bytes]] = []
    for entry in (part.strip() for part in (spec or "").split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise CryptoError(f"{setting} entries are keyid:base64key; key ids are letters, "
                              "digits, - and _ (at most 32).")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError(f"{setting}: key {key_id} is not valid base64.") from exc
        if len(key) != 32:
            raise CryptoError(f"{setting}: key {key_id} must be 32 bytes (AES-256).")
        if any(existing == key_id for existing, _ in keys):
            raise CryptoError(f"{setting}: key id {key_id} appears twice.")
        keys.append((key_id, key))
    if not keys:
        raise CryptoError(f"{setting} is empty: nothing can be encrypted under it.")
    return keys


class FileCipher:
    """Encrypts with the first key, decrypts with whichever key a blob names."""

    def __init__(self, spec: str, setting: str = "FILE_ENCRYPTION_KEYS"):
        keys = parse_keys(spec, setting)
        self.current_key_id = keys[0][0]
        self._keys = dict(keys)

    def encrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self.current_key_id]).encrypt(nonce, data, associated_data)
        return self.current_key_id.encode() + b":" + nonce + sealed

    def decrypt(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        key_id, sep, rest = bytes(blob).partition(b":")
        key = self._keys.get(key_id.decode("ascii", "replace")) if sep else None
        if key is None:
            raise CryptoError("The file was encrypted with a key that is not configured.")
        if len(rest) < _NONCE_BYTES + 16:
            raise CryptoError("The encrypted file is truncated.")
        try:
            return AESGCM(key).decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], associated_data)
        except InvalidTag as exc:
            raise CryptoError("The encrypted file does not authenticate (tampered or moved).") from exc

    def key_id_of(self, blob: bytes) -> str:
        return bytes(blob).partition(b":")[0].decode("ascii", "replace")


_cache: dict[str, FileCipher] = {}


def file_cipher(config) -> FileCipher:
    """The cipher for the app's ``FILE_ENCRYPTION_KEYS`` (built once per distinct setting)."""
    spec = config.get("FILE_ENCRYPTION_KEYS") or ""
    cipher = _cache.get(spec)
    if cipher is None:
        cipher = _cache[spec] = FileCipher(spec)
    return cipher
