"""Number ranges as people type them: `17`, `10-17`, `10–17`, `1,3-4`, and `--range 3 17`."""

from __future__ import annotations

import re

from tegbatchd.errors import InputError

_PART = re.compile(r"^\s*([0-9]+)\s*(?:[-–]\s*([0-9]+)\s*)?$")
# The largest number that could exist of each kind: checked before a range is expanded, so
# `--teg 1-100000000` is refused at once instead of filling memory.
LIMITS = {"TEG": 1000, "round": 10}
DEFAULT_LIMIT = 1000
MAX_TEXT = 200


def _number(digits: str, text: str, what: str, limit: int) -> int:
    if len(digits.lstrip("0")) > len(str(limit)) or int(digits) > limit:
        shown = digits if len(digits) <= 12 else f"{digits[:12]}... ({len(digits)} digits)"
        raise InputError(f"{what} {shown} is above {limit}, the highest {what} number there can be",
                         next_step=f"give {what} numbers from 1 to {limit}")
    return int(digits)


def parse_numbers(text: str | int, what: str = "TEG") -> list[int]:
    """Given `17`, `10-17` (or an en dash) or comma-separated parts, return the sorted numbers.

    Raise InputError for anything else, a backwards range such as `17-10`, or a number above the
    highest one of its kind (LIMITS), checked before the range is expanded.
    """
    text = str(text)
    limit = LIMITS.get(what, DEFAULT_LIMIT)
    if len(text) > MAX_TEXT:
        raise InputError(f"{what} value is {len(text):,} characters long", next_step="write it like 17 or 10-17")
    numbers: set[int] = set()
    for part in text.split(","):
        match = _PART.match(part)
        if not match:
            raise InputError(f"{what} {text!r} is not a number or a range",
                             next_step=f"write it like 17 or 10-17 (got {part.strip()!r})")
        low = _number(match.group(1), text, what, limit)
        high = _number(match.group(2), text, what, limit) if match.group(2) else low
        if high < low:
            raise InputError(f"{what} range {part.strip()} is backwards", next_step=f"write it as {high}-{low}")
        numbers.update(range(low, high + 1))
    return sorted(numbers)


def range_from_pair(first: str | int, last: str | int, what: str = "TEG") -> list[int]:
    """Given the two values of `--range A B`, return A..B. Raise InputError when backwards or not numbers."""
    return parse_numbers(f"{first}-{last}", what)


def describe(numbers: list[int] | set[int], sep: str = "–") -> str:
    """Compress numbers for people: [2, 3, 4, 7] → '2–4, 7'."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    start: int | None = None
    prev: int | None = None
    for n in [*ordered, None]:
        if start is not None and prev is not None and (n is None or n != prev + 1):
            parts.append(str(start) if start == prev else f"{start}{sep}{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(parts)
