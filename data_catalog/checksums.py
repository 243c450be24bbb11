"""Content checksums, written as sha2-256 multihashes (hex) like the STAC file extension's ``file:checksum``."""

from __future__ import annotations

import hashlib
from pathlib import Path

_SHA256_MULTIHASH_PREFIX = "1220"  # multihash code 0x12 (sha2-256), digest length 0x20
_CHUNK = 1 << 20


def bytes_checksum(data: bytes) -> str:
    """Multihash of ``data``."""
    return _SHA256_MULTIHASH_PREFIX + hashlib.sha256(data).hexdigest()


def file_checksum(path: Path) -> str:
    """Multihash of the bytes of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return _SHA256_MULTIHASH_PREFIX + digest.hexdigest()
