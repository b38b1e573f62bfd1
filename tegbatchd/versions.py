"""The newest tegbatchd on the package index: asked once, with a short timeout, never required.

TEGBATCHD_VERSION_URL names another JSON index page (tests use a local server); "off" skips the check.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request

INDEX_URL = "https://pypi.org/pypi/tegbatchd/json"
URL_ENV = "TEGBATCHD_VERSION_URL"
TIMEOUT = 3.0


def index_url() -> str | None:
    """The page to ask, or None when the check is off."""
    value = os.environ.get(URL_ENV, INDEX_URL).strip()
    return None if value.lower() in ("", "off", "0", "no") else value


def _ask(url: str, timeout: float, out: dict) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - an https/http URL we chose
            out["version"] = str(json.loads(response.read(1_000_000))["info"]["version"])
    except urllib.error.HTTPError as exc:
        out["why"] = "tegbatchd is not published there" if exc.code == 404 else f"it answered {exc.code}"
    except Exception as exc:  # noqa: BLE001 - offline, a proxy page: all mean "not known"
        out["why"] = f"{type(exc).__name__}: {exc}"[:160]


def newest_version(url: str, timeout: float = TIMEOUT) -> tuple[str | None, str | None]:
    """(the newest version the index lists, None), or (None, why not). Returns within about `timeout`
    seconds whatever the network does (a name lookup that hangs included)."""
    out: dict = {}
    worker = threading.Thread(target=_ask, args=(url, timeout, out), daemon=True, name="tegbatchd-version")
    worker.start()
    worker.join(timeout + 0.5)
    if "version" in out:
        return out["version"], None
    return None, out.get("why") or f"no answer within {timeout:g} s"


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:4])


def is_newer(candidate: str, current: str) -> bool:
    """True when candidate is a later release than current (numeric parts compared)."""
    return _key(candidate) > _key(current)
