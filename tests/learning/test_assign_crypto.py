"""AES-GCM encryption of uploaded files: round trip, tampering, key rotation, configuration."""

from __future__ import annotations

import base64

import pytest

from portal.config import load_config
from portal.security.crypto import CryptoError, FileCipher, generate_key_entry, parse_keys


def test_round_trip_and_key_id_in_front():
    entry = generate_key_entry("k1")
    cipher = FileCipher(entry)
    blob = cipher.encrypt(b"secret essay", b"row-1")
    assert blob.startswith(b"k1:") and b"secret essay" not in blob
    assert cipher.decrypt(blob, b"row-1") == b"secret essay"
    assert cipher.encrypt(b"secret essay", b"row-1") != blob  # a fresh nonce each time


def test_tampering_or_moving_a_blob_is_detected():
    cipher = FileCipher(generate_key_entry("k1"))
    blob = bytearray(cipher.encrypt(b"data", b"row-1"))
    with pytest.raises(CryptoError):
        cipher.decrypt(bytes(blob), b"row-2")  # bound to its row
    blob[-1] ^= 1
    with pytest.raises(CryptoError):
        cipher.decrypt(bytes(blob), b"row-1")
    with pytest.raises(CryptoError):
        cipher.decrypt(b"k1:short", b"row-1")


def test_key_rotation():
    old, new = generate_key_entry("old"), generate_key_entry("new")
    before = FileCipher(old).encrypt(b"written under the old key")
    rotated = FileCipher(f"{new},{old}")
    assert rotated.current_key_id == "new"
    assert rotated.decrypt(before) == b"written under the old key"
    after = rotated.encrypt(b"fresh")
    assert rotated.key_id_of(after) == "new"
    with pytest.raises(CryptoError) as caught:
        FileCipher(old).decrypt(after)  # the old configuration does not know the new key
    assert "not configured" in str(caught.value)


@pytest.mark.parametrize("spec", [
    "", "nokey", "bad id:" + base64.b64encode(b"x" * 32).decode(), "k1:not-base64!!",
    "k1:" + base64.b64encode(b"short").decode(),
    "dup:" + base64.b64encode(b"k" * 32).decode() + ",dup:" + base64.b64encode(b"l" * 32).decode(),
])
def test_bad_key_lists_are_refused(spec):
    with pytest.raises(CryptoError):
        parse_keys(spec)


def test_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("AZORA_INSTANCE_DIR", str(tmp_path))
    import portal.config as config

    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    monkeypatch.delenv("FILE_ENCRYPTION_KEYS", raising=False)
    first = load_config({"AZORA_ENV": "test"})["FILE_ENCRYPTION_KEYS"]
    assert (tmp_path / "file_key").read_text().strip() == first
    assert oct((tmp_path / "file_key").stat().st_mode & 0o777) == "0o600"
    assert load_config({"AZORA_ENV": "test"})["FILE_ENCRYPTION_KEYS"] == first  # kept, not remade
    assert parse_keys(first)[0][0] == "dev"
    monkeypatch.setenv("FILE_ENCRYPTION_KEYS", "prod:" + base64.b64encode(b"k" * 32).decode())
    production = {"AZORA_ENV": "production", "SECRET_KEY": "x", "DATABASE_URL": "postgresql://a@db.invalid/b"}
    assert load_config(production)["FILE_ENCRYPTION_KEYS"].startswith("prod:")
    monkeypatch.delenv("FILE_ENCRYPTION_KEYS")
    assert load_config(production)["FILE_ENCRYPTION_KEYS"] == ""
