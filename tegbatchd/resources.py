"""Files shipped beside the package: config/, systemd/, launchd/ (top-level in the repo, inside the wheel)."""

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def shipped(kind: str, name: str) -> Path:
    """Given a top-level folder name (config, systemd, launchd) and a file name, return its path.

    Inside an installed wheel the folders live at tegbatchd/_shipped/<kind>; in a checkout
    (editable install, tests) at the repository's top level. Raise FileNotFoundError if neither has it.
    """
    for base in (_PKG / "_shipped" / kind, _PKG.parent / kind):
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"shipped file {kind}/{name} is missing from this installation")


def package_file(*parts: str) -> Path:
    """Return a file inside the package itself (e.g. teg/prompts/*.md)."""
    return _PKG.joinpath(*parts)
