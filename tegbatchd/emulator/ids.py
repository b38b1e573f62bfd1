"""Identifiers in Anthropic's shapes, random or derived deterministically, and seeded fractions."""

from __future__ import annotations

import hashlib
import secrets

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_TAIL = 22  # "01" + 22 base62 characters, as in msgbatch_01EmuAbCdEfGhIjKlMnOpQrS


def _digest(parts: tuple[object, ...]) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()


_TO_BASE62 = bytes(ord(BASE62[i % 62]) for i in range(256))


def _base62(data: bytes, length: int) -> str:
    return data[:length].translate(_TO_BASE62).decode("ascii")


def random_id(prefix: str) -> str:
    """Return e.g. `msgbatch_01...` (24 characters after the prefix), unpredictable."""
    return f"{prefix}01{_base62(secrets.token_bytes(24), ID_TAIL)}"


def derived_id(prefix: str, *parts: object) -> str:
    """Return an id like `random_id` but fixed by `parts` (same inputs, same id)."""
    return f"{prefix}01{_base62(_digest(parts), ID_TAIL)}"


def fraction(*parts: object) -> float:
    """Return a number in [0, 1) fixed by `parts`: the emulator's only source of injected chance."""
    return int.from_bytes(_digest(parts)[:8], "big") / 2**64


def hex_digest(*parts: object) -> str:
    return _digest(parts).hex()
