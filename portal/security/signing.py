"""Ed25519 signatures: the key from configuration, signing and verifying.

``CERTIFICATE_SIGNING_KEY`` holds the private key as the standard base64 encoding of its raw
32 bytes (the Ed25519 seed). ``generate_key()`` makes one (``flask certificates new-key``
prints one). The key id is the first 16 hex characters of the SHA-256 of the raw 32-byte
public key: short, stable, and published beside the public key so a verifier can tell which
key signed what.

Signatures travel as standard base64 of the 64 signature bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


class SigningKeyError(RuntimeError):
    """The configured key is missing or malformed (a deployment mistake, not a user's)."""


def generate_key() -> str:
    """A new private key, encoded as ``CERTIFICATE_SIGNING_KEY`` expects."""
    seed = Ed25519PrivateKey.generate().private_bytes(_RAW, serialization.PrivateFormat.Raw,
                                                      serialization.NoEncryption())
    return base64.b64encode(seed).decode("ascii")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key.public_bytes(_RAW, _RAW_PUBLIC)).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """A private key and what is published about it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    @property
    def public_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private_key.sign(message)).decode("ascii")

    def verify(self, message: bytes, signature: str) -> bool:
        return verify(self.public_key, message, signature)


def verify(public_key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is ``public_key``'s signature of ``message``. A malformed
    signature is simply not valid."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        public_key.verify(raw, message)
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


@functools.lru_cache(maxsize=8)
def load_signer(value: str | None) -> Signer:
    """The signer for a ``CERTIFICATE_SIGNING_KEY`` value (cached: the same value, the same key)."""
    if not value:
        raise SigningKeyError("CERTIFICATE_SIGNING_KEY is not set: certificates cannot be signed or verified.")
    try:
        seed = base64.b64decode(value.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SigningKeyError("CERTIFICATE_SIGNING_KEY is not valid base64.") from exc
    if len(seed) != 32:
        raise SigningKeyError(f"CERTIFICATE_SIGNING_KEY must encode 32 bytes (an Ed25519 seed), not {len(seed)}.")
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))
