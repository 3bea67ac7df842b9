"""What a student tells about themselves for identity verification, below the services that
take it in and the reads that show it: the country list the forms offer, and the personal data of
a verification, sealed (AES-GCM, bound to the row's id and owner) and unsealed.

AML screening reads the sealed data and the country list too, from here, so it does not import
the KYC services (which call screening at each submission).
"""

from __future__ import annotations

import json
import uuid
from functools import cache

from flask import current_app

from portal.compliance.kyc.models import KycVerification
from portal.errors import DomainError
from portal.security.crypto import CryptoError, file_cipher


@cache
def countries() -> tuple[tuple[str, str], ...]:
    """ISO 3166-1 alpha-2 codes with their English names, sorted by name (the region data of
    ``phonenumbers``, a dependency already)."""
    from phonenumbers.geodata.locale import LOCALE_DATA

    pairs = [(code, names["en"] if not names.get("en", "*").startswith("*") else names["aa"])
             for code, names in LOCALE_DATA.items() if len(code) == 2 and code.isalpha() and code.isupper()]
    return tuple(sorted(pairs, key=lambda pair: pair[1]))


@cache
def _country_names() -> dict[str, str]:
    return dict(countries())


def country_name(code: str | None) -> str:
    return _country_names().get(code or "", code or "")


def _data_aad(verification_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    return f"kyc-verification:{verification_id}:{user_id}".encode()


def seal(verification_id: uuid.UUID, user_id: uuid.UUID, data: dict) -> bytes:
    payload = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    try:
        return file_cipher(current_app.config).encrypt(payload, _data_aad(verification_id, user_id))
    except CryptoError as exc:
        raise DomainError("Identity verification is not configured on this portal. Please try again later.") from exc


def unseal(verification: KycVerification) -> dict:
    """The verification's personal data; ``{"error": ...}`` when it cannot be decrypted (a
    missing key or a tampered row), so a review page still opens and says so."""
    try:
        raw = file_cipher(current_app.config).decrypt(verification.data_encrypted,
                                                      _data_aad(verification.id, verification.user_id))
    except CryptoError as exc:
        return {"error": str(exc)}
    return json.loads(raw)
