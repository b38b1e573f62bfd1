"""Number ranges as people type them: `17`, `10-17`, `10–17`, `1,3-4`, and `--range 3 17`."""

from __future__ import annotations

import re

from tegbatchd.errors import InputError

_PART = re.compile(r"^\s*(\d+)\s*(?:[-–]\s*(\d+)\s*)?$")


def parse_numbers(text: str | int, what: str = "TEG") -> list[int]:
    """Given `17`, `10-17` (or an en dash) or comma-separated parts, return the sorted numbers.

    Raise InputError for anything else, or a backwards range such as `17-10`.
    """
    numbers: set[int] = set()
    for part in str(text).split(","):
        match = _PART.match(part)
        if not match:
            raise InputError(f"{what} {text!r} is not a number or a range",
                             next_step=f"write it like 17 or 10-17 (got {part.strip()!r})")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
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
    start = prev = None
    for n in ordered + [None]:
        if start is not None and (n is None or n != prev + 1):
            parts.append(str(start) if start == prev else f"{start}{sep}{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(parts)
