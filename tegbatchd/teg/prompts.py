"""Prompt templates (system prompts, one file per stage) and the user messages built from the facts.

The shipped templates live in tegbatchd/teg/prompts/<stage>.md. Config `prompts_dir` may name a folder of
edited copies with the same file names (a relative path is taken from the data root); a stage whose file
is not there falls back to the shipped one. Templates have no placeholders: the system prompt is the same
for every request of a stage, so it can be cached, and the per-request data goes in the user message.
"""

from __future__ import annotations

import json
from pathlib import Path

from tegbatchd.config import STAGE_NAMES
from tegbatchd.errors import ConfigError
from tegbatchd.resources import package_file

SHIPPED_DIR = package_file("teg", "prompts")
MAX_PROMPT_BYTES = 1_000_000  # ~250k tokens: more than any model's context, so never a real prompt


def prompts_dir(config, data_root: Path) -> Path | None:
    """The folder of edited templates from config `prompts_dir`, or None. Raise ConfigError if it is missing."""
    configured = config["prompts_dir"] if config is not None else None
    if not configured:
        return None
    folder = Path(data_root) / Path(configured).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"prompts_dir {folder} is not a folder",
                          next_step="fix prompts_dir in the config, or set it to null for the shipped prompts")
    return folder


def load_prompt(stage: str, config=None, data_root: Path | None = None) -> str:
    """Given a stage name, return its system prompt text (edited copy first, else the shipped file).

    Raise ConfigError for an unknown stage or an empty template.
    """
    if stage not in STAGE_NAMES:
        raise ConfigError(f"no prompt template for stage {stage!r}", next_step=f"stages: {', '.join(STAGE_NAMES)}")
    folder = prompts_dir(config, data_root or Path.cwd())
    path = folder / f"{stage}.md" if folder and (folder / f"{stage}.md").is_file() else SHIPPED_DIR / f"{stage}.md"
    text = read_template(path).strip()
    if not text:
        raise ConfigError(f"prompt template {path} is empty", next_step="write the prompt or remove the file")
    return text


def read_template(path: Path) -> str:
    """Given a template file, return its text. Raise ConfigError when it cannot be read, is over
    MAX_PROMPT_BYTES, is not UTF-8 text, or holds NUL bytes (a binary file)."""
    fix = "fix or remove the file (the shipped prompt is used when it is not there)"
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PROMPT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read prompt template {path}: {exc.strerror}", next_step=fix) from None
    if len(raw) > MAX_PROMPT_BYTES:
        raise ConfigError(f"prompt template {path} is over {MAX_PROMPT_BYTES:,} bytes", next_step=fix)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"prompt template {path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                          next_step="save it as UTF-8") from None
    if "\x00" in text:
        raise ConfigError(f"prompt template {path} holds NUL bytes (a binary file?)", next_step=fix)
    return text


def compact_json(data) -> str:
    """JSON with no spaces and real Unicode characters: fewer tokens, same content."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def request_params(stage: str, config, system_text: str, user_text: str) -> dict:
    """A full Messages API body: the stage's model and max_tokens from config, cached system prompt."""
    settings = config.stage(stage)
    return {
        "model": settings["model"],
        "max_tokens": settings["max_tokens"],
        "system": [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": user_text}],
    }


def _round_heading(facts: dict) -> str:
    r = facts["round"]
    where = ", ".join(x for x in (r.get("course"), r.get("date")) if x)
    return f"TEG {r['teg']}, round {r['round']} of {r['of']}" + (f" ({where})" if where else "")


def story_notes_message(facts: dict) -> str:
    """User message for round story notes: the round's facts as JSON."""
    return f"{_round_heading(facts)}.\n\nRound facts (JSON):\n{compact_json(facts)}\n\nWrite the story notes for this round."


def round_story_message(facts: dict) -> str:
    """User message for a tournament round story: the round's facts as JSON."""
    return f"{_round_heading(facts)}.\n\nRound facts (JSON):\n{compact_json(facts)}\n\nWrite the story of this round."


def narrative_context(facts: dict) -> dict:
    """The slice of round facts a live narrative needs beside the notes: standings and projections."""
    standings = [{k: p[k] for k in ("name", "initials", "round_stableford", "round_gross_vs_par", "round_position",
                                    "cumulative_stableford", "cumulative_gross_vs_par", "position_before",
                                    "position", "places_gained", "gross_position_before", "gross_position",
                                    "gap_to_leader", "gross_gap_to_leader")}
                 for p in facts["players"]]
    r = facts["round"]
    return {"teg": r["teg"], "round": r["round"], "of": r["of"], "course": r.get("course"), "date": r.get("date"),
            "leader_before": r.get("leader_before"), "leader": facts["leader"], "lead": facts["lead"],
            "gross_leader": facts["gross_leader"], "standings": standings, "projection": facts["projection"]}


def narrative_message(facts: dict, notes_text: str) -> str:
    """User message for a round narrative: the story notes, then standings and projections as JSON."""
    return (f"{_round_heading(facts)}.\n\nStory notes for this round:\n\n{notes_text.strip()}\n\n"
            f"Standings and projections (JSON):\n{compact_json(narrative_context(facts))}\n\n"
            "Write the round report.")


def synthesis_message(tournament: dict, stories: dict[int, str]) -> str:
    """User message for a tournament synthesis: the tournament facts as JSON and every round story."""
    t = tournament["tournament"]
    parts = [f"TEG {t['teg']} ({t.get('year') or 'year unknown'}).", "",
             f"Tournament facts (JSON):\n{compact_json(tournament)}", ""]
    for round_no, text in sorted(stories.items()):
        parts += [f"--- Round {round_no} story ---", text.strip(), ""]
    parts.append("Write the tournament story notes.")
    return "\n".join(parts)


def report_message(teg: int, kind: str, story_notes: str) -> str:
    """User message for a tournament report (main_report, brief_summary, satire) from its story notes."""
    label = kind.replace("_", " ")
    return f"TEG {teg} story notes:\n\n{story_notes.strip()}\n\nWrite the {label} for TEG {teg}."
