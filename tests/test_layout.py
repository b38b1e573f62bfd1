"""The layers hold: the CLI parses and prints and nothing below imports it; actions never print; only
api.py imports the SDK and only store.py holds SQL (the emulator, a separate server, aside)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tegbatchd"


def _modules(exclude: tuple[str, ...] = ()):
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in exclude or rel.name in exclude:
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_below_the_cli_imports_it():
    offenders = [str(rel) for rel, tree in _modules(("cli", "__main__.py"))
                 if any(n == "tegbatchd.cli" or n.startswith("tegbatchd.cli.") for n in _imports(tree))]
    assert offenders == []


def test_actions_and_the_engine_never_print():
    offenders = []
    for rel, tree in _modules():
        if rel.parts[0] not in ("actions", "engine") and rel.name not in ("polling.py", "retrieval.py",
                                                                        "submission.py", "immediate.py"):
            continue
        offenders += [f"{rel}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert offenders == []


def test_only_api_imports_the_sdk():
    offenders = [str(rel) for rel, tree in _modules(("emulator",))
                 if rel.name != "api.py" and any(n.split(".")[0] == "anthropic" for n in _imports(tree))]
    assert offenders == []


def test_only_the_store_holds_sql():
    offenders = [str(rel) for rel, tree in _modules(("emulator",))
                 if rel.name != "store.py" and "sqlite3" in {n.split(".")[0] for n in _imports(tree)}
                 and rel.parts[0] != "cli"]   # the CLI maps sqlite3.DatabaseError to one line
    assert offenders == []
