"""KYC document uploads: checks, server-made names and encryption at rest.

A file is accepted only when its content is really what its name (and the browser) say:

- JPEG: starts with SOI (``FF D8 FF``); the marker segments are walked up to the start of scan,
  and a frame header (SOF) must come before it; the file ends with EOI (``FF D9``).
- PNG: the 8-byte signature, an ``IHDR`` chunk first with a non-zero size, every chunk's CRC
  correct, and ``IEND`` last.
- PDF: starts with ``%PDF-1.x`` or ``%PDF-2.0``, and its tail holds ``startxref`` and ``%%EOF``.

Anything else (an HTML page named ``.jpg``, a PNG named ``.pdf``, an empty or oversized file) is
refused with a message that says what was found. The size limit is ``KYC_MAX_UPLOAD_BYTES``.

The original name is kept only for display; the stored name is made here. The bytes are
encrypted with AES-GCM (``portal.security.crypto``) with the document's id and owner as
associated data, so a blob moved to another row or another student does not decrypt.
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import quote

from flask import current_app

from portal.compliance.kyc.models import KycDocument, KycDocumentKind
from portal.errors import DomainError, Forbidden
from portal.security.crypto import CryptoError, file_cipher

JPEG, PNG, PDF = "image/jpeg", "image/png", "application/pdf"
EXTENSIONS = {"jpg": JPEG, "jpeg": JPEG, "png": PNG, "pdf": PDF}
LABELS = {JPEG: "a JPEG image", PNG: "a PNG image", PDF: "a PDF document"}
#: What each kind of document may be: photos of a document or a proof of address may be scans
#: (PDF); a selfie is a photo.
ACCEPTED: dict[KycDocumentKind, tuple[str, ...]] = {
    KycDocumentKind.ID_FRONT: (JPEG, PNG, PDF),
    KycDocumentKind.ID_BACK: (JPEG, PNG, PDF),
    KycDocumentKind.PROOF_OF_ADDRESS: (JPEG, PNG, PDF),
    KycDocumentKind.SELFIE: (JPEG, PNG),
}
#: How each kind is named on pages, in the order pages show them.
KIND_LABELS = {KycDocumentKind.ID_FRONT.value: "Front of the document", KycDocumentKind.ID_BACK.value: "Back of the document",
               KycDocumentKind.PROOF_OF_ADDRESS.value: "Proof of address", KycDocumentKind.SELFIE.value: "Selfie"}
_HTML_HINTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<svg", b"<?xml", b"<iframe")
_PDF_HEADER = re.compile(rb"^%PDF-(1\.[0-7]|2\.0)")


class UploadRefused(DomainError):
    status_code = 422


@dataclass(frozen=True)
class Upload:
    """A file as the request carried it: the browser's name and type, and the bytes (read up to
    one byte past the limit, enough to refuse an oversized file)."""

    filename: str
    data: bytes
    content_type: str = ""


@dataclass(frozen=True)
class CheckedFile:
    original_name: str
    content_type: str
    data: bytes
    sha256: str


def human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB".replace(".0 ", " ")
    if size >= 1024:
        return f"{size / 1024:.0f} kB"
    return f"{size} bytes"


def display_name(filename: str) -> str:
    """The uploaded name made safe to show: no directories or control characters, at most 200
    characters. Never used as a path."""
    name = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?').strip(" .")
    return (name or "upload")[-200:]


# ---------------------------------------------------------------------------------- content


def _is_jpeg(data: bytes) -> bool:
    if not data.startswith(b"\xff\xd8\xff") or not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return False
    pos, frame = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            return frame
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2:
            return False
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = True
        pos += 2 + length
    return False


def _is_png(data: bytes) -> bool:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    pos, first = 8, True
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunk_type = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return False
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:end])
        if zlib.crc32(chunk_type + body) != crc:
            return False
        if first:
            if chunk_type != b"IHDR" or length != 13:
                return False
            width, height = struct.unpack(">II", body[:8])
            if not width or not height:
                return False
            first = False
        if chunk_type == b"IEND":
            return end == len(data) or not data[end:].strip(b"\x00")
        pos = end
    return False


def _is_pdf(data: bytes) -> bool:
    if not _PDF_HEADER.match(data):
        return False
    tail = data[-2048:]
    return b"%%EOF" in tail and b"startxref" in tail


def detect(data: bytes) -> str | None:
    """The content type the bytes really are (JPEG, PNG or PDF), or None."""
    if _is_jpeg(data):
        return JPEG
    if _is_png(data):
        return PNG
    if _is_pdf(data):
        return PDF
    return None


def _looks_like(data: bytes) -> str:
    """What an unacceptable file seems to be, for the message."""
    head = data[:1024].lstrip().lower()
    if any(head.startswith(hint) for hint in _HTML_HINTS) or b"<script" in head or b"<html" in head:
        return "a web page"
    if data.startswith((b"MZ", b"\x7fELF", b"\xca\xfe\xba\xbe", b"#!")):
        return "a program"
    if data.startswith((b"\xff\xd8\xff", b"\x89PNG", b"%PDF")):
        return "a damaged or incomplete file"
    return "not an image or a PDF"


def check(upload: Upload | None, kind: KycDocumentKind, field: str, *, required: bool = True) -> CheckedFile | None:
    """The upload, checked for ``kind``; raises ``UploadRefused`` with ``field`` set."""
    if upload is None or (not upload.filename and not upload.data):
        if required:
            raise UploadRefused("Choose a file to upload.", field=field)
        return None
    accepted = ACCEPTED[kind]
    listed = ", ".join(sorted({ext.upper() for ext, t in EXTENSIONS.items() if t in accepted and ext != "jpeg"}))
    name = display_name(upload.filename)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    named = EXTENSIONS.get(extension)
    if named is None or named not in accepted:
        raise UploadRefused(f"Files of type .{extension or '(none)'} are not accepted here. Upload {listed}.",
                            field=field)
    limit = current_app.config["KYC_MAX_UPLOAD_BYTES"]
    if not upload.data:
        raise UploadRefused("The file is empty.", field=field)
    if len(upload.data) > limit:
        raise UploadRefused(f"The file is larger than the limit of {human_size(limit)}.", field=field)
    found = detect(upload.data)
    if found is None:
        raise UploadRefused(f"“{name}” is named .{extension} but its content is {_looks_like(upload.data)}: "
                            f"it cannot be accepted.", field=field)
    if found != named:
        raise UploadRefused(f"“{name}” is named .{extension} but its content is {LABELS[found]}. Rename it or "
                            "upload the right file.", field=field)
    claimed = (upload.content_type or "").split(";")[0].strip().lower()
    if claimed in (JPEG, PNG, PDF, "image/jpg") and claimed.replace("image/jpg", JPEG) != found:
        raise UploadRefused(f"“{name}” was sent as {claimed} but its content is {LABELS[found]}.", field=field)
    return CheckedFile(name, found, upload.data, hashlib.sha256(upload.data).hexdigest())


# ---------------------------------------------------------------------------------- storage


def _aad(document_id: uuid.UUID, user_id: uuid.UUID) -> bytes:
    return f"kyc-document:{document_id}:{user_id}".encode()


def stored_name(content_type: str) -> str:
    extension = {JPEG: "jpg", PNG: "png", PDF: "pdf"}[content_type]
    return f"kyc-{uuid.uuid4().hex}.{extension}"


def make_document(checked: CheckedFile, kind: KycDocumentKind, verification_id: uuid.UUID,
                  user_id: uuid.UUID) -> KycDocument:
    """A new (not yet added) document row with the file encrypted under its own id and owner."""
    document_id = uuid.uuid4()
    try:
        blob = file_cipher(current_app.config).encrypt(checked.data, _aad(document_id, user_id))
    except CryptoError as exc:
        raise UploadRefused("Document uploads are not configured on this portal. Please try again later.") from exc
    return KycDocument(id=document_id, verification_id=verification_id, user_id=user_id, kind=kind,
                       stored_name=stored_name(checked.content_type), original_name=checked.original_name,
                       content_type=checked.content_type, size_bytes=len(checked.data), sha256=checked.sha256,
                       content_encrypted=blob)


def response_headers(original_name: str) -> dict[str, str]:
    """Headers for sending a decrypted document: shown inline under its display name, with the
    type found at upload (never sniffed by the browser), never cached, and sandboxed."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", original_name)[:100] or "document"
    return {"Content-Disposition": f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(original_name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox"}


def decrypt(document_id: uuid.UUID, user_id: uuid.UUID, blob: bytes) -> bytes:
    try:
        return file_cipher(current_app.config).decrypt(blob, _aad(document_id, user_id))
    except CryptoError as exc:
        raise Forbidden(f"The document cannot be opened: {exc}") from exc
