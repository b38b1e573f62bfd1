"""What the reliability tests look at: file trees, the state database, outputs, and the kill harness."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from tests.conftest import Cli, assert_own_answer, request_params
from tests.support.forkserver import Forked, spawn

HARNESS = Path(__file__).with_name("harness.py")
TEMPLATE = "commentary/misc/{custom_id}.md"


def tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every entry under root (except the top-level names in skip): relative path → 'dir' or size:sha256."""
    out = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        if path.is_dir() and not path.is_symlink():
            out[str(rel)] = "dir"
        elif path.is_file():
            data = path.read_bytes()
            out[str(rel)] = f"{len(data)}:{hashlib.sha256(data).hexdigest()}"
        else:
            out[str(rel)] = "other"
    return out


def db_dump(db: Path) -> list[str]:
    """Every row of every table of the state database, read-only (the SQL of a dump)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def query(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def recorded(db: Path) -> int:
    """Requests with an outcome recorded."""
    return query(db, "SELECT count(*) FROM requests WHERE outcome IS NOT NULL")[0][0]


def assert_counts_exact(db: Path) -> None:
    """The counts `list` reads (intent_counts) equal a count of every request row, whatever was killed when."""
    from tegbatchd.store import _COUNTED, _SUMS

    kept = query(db, f"SELECT intent_id, model, requests, {', '.join(_COUNTED)} FROM intent_counts ORDER BY 1, 2")
    counted = query(db, f"SELECT intent_id, coalesce(model, ''), count(*), {_SUMS} FROM requests GROUP BY 1, 2 "
                        "ORDER BY 1, 2")
    assert kept == counted


def notices(db: Path, kind: str | None = None) -> list[tuple]:
    rows = query(db, "SELECT key, kind FROM notices ORDER BY key")
    return [r for r in rows if kind is None or r[1] == kind]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name or p.name.endswith(".tmp")]


def outputs(folder: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in folder.glob("*.md")} if folder.exists() else {}


def assert_each_own(folder: Path, params: dict[str, dict], *, complete: bool = True) -> None:
    """Each output present holds exactly its own request's answer; with complete, every request has one."""
    written = outputs(folder)
    assert set(written) <= set(params), sorted(set(written) - set(params))[:5]
    if complete:
        assert set(written) == set(params), f"{len(set(params) - set(written))} output(s) missing"
    for cid, text in written.items():
        assert_own_answer(text, cid, params[cid])


def assert_delivered(folder: Path, reqs: Path, data_root: Path) -> None:
    """Every output exists once with its own content, and no temp file is left in the data root."""
    assert_each_own(folder, request_params(reqs))
    assert temp_files(data_root) == []


def harness(cli: Cli, *args: str, **streams) -> Forked:
    """Start tests/reliability/harness.py with the CLI's environment (see its docstring for args), as a real
    process forked from the warm fork server (tests/support/forkserver.py); streams as Popen takes them."""
    return spawn(list(args), env=cli.env, cwd=cli.cwd, harness=True, **streams)
