"""Local assembly of combined files: round report files and tournament story notes with computed facts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tegbatchd.writer import Written

from tegbatchd.teg.render import competition_line, markdown_table, rounds_list, venue_line, vp


def write_atomic(path: Path, text: str, *, root: Path | None = None, write: Callable[[str, str], Written] | None = None
                 ) -> Written:
    """Write text to path atomically through `write` (the engine's writer: a hand-edited file is kept and the
    text goes beside it) or else the one writer (mode 0644; below root no symlink is followed)."""
    if write is not None:
        return write(str(path), text)
    from tegbatchd.writer import write_file

    return write_file(path, text, root=root)


def combined_round_report(facts: dict, notes: str, report: str) -> str:
    """The combined round file: a title, the story notes, then the narrative report."""
    r = facts["round"]
    where = " · ".join(x for x in (r.get("course"), r.get("date")) if x)
    lines = [f"# TEG {r['teg']} – Round {r['round']} report", ""]
    if where:
        lines += [f"*{where} · round {r['round']} of {r['of']}*", ""]
    lines += ["## Story notes", "", notes.strip(), "", "---", "", "## Report", "", report.strip(), ""]
    return "\n".join(lines)


def _round_cell(player: dict, round_no: int) -> str:
    for r in player["rounds"]:
        if r["round"] == round_no:
            return str(r["stableford"])
    return "-"


def tournament_facts_markdown(facts: dict, round_info: dict[int, tuple[str | None, str | None]] | None = None) -> str:
    """The factual sections of the story notes, computed locally: winners, standings, leaders, records."""
    t = facts["tournament"]
    comps = t["competitions"]
    rounds = [x["round"] for x in t["leader_after_round"]]
    lines = ["## Facts (computed from the scores)", "", f"*{venue_line(t)}*", "",
             f"- {competition_line('**TEG Trophy**', comps['trophy'], 'points')}",
             f"- {competition_line('**Green Jacket**', comps['green_jacket'], 'gross')}",
             f"- {competition_line('**Wooden Spoon**', comps['wooden_spoon'], 'points', spoon=True)}", ""]
    if not t["complete"]:
        lines += [f"*Only {t['rounds_played']} of {t['rounds_planned']} rounds are in the data: "
                  "these are standings so far, not final results.*", ""]
    lines += ["### Final standings", "", markdown_table(
        ["Pos", "Player", *[f"R{r}" for r in rounds], "Points", "Gross", "Gross pos"],
        [[p["position"], p["name"], *[_round_cell(p, r) for r in rounds], p["stableford"], vp(p["gross_vs_par"]),
          p["gross_position"]] for p in facts["players"]]), ""]
    info = round_info or {}
    lines += ["### Leader after each round", "", markdown_table(
        ["Round", "Course", "Date", "Trophy leader", "Points", "Lead", "Green Jacket leader", "Gross"],
        [[x["round"], *info.get(x["round"], (None, None)), x["leader"], x["stableford"], x["lead"],
          x["gross_leader"], vp(x["gross_vs_par"])] for x in t["leader_after_round"]]), ""]
    lines += ["### Records", "",
              f"- Best Stableford round: {rounds_list(t['best_rounds']['stableford'], 'stableford')}",
              f"- Worst Stableford round: {rounds_list(t['worst_rounds']['stableford'], 'stableford')}",
              f"- Best gross round: {rounds_list(t['best_rounds']['gross_vs_par'], 'gross_vs_par')}",
              f"- Worst gross round: {rounds_list(t['worst_rounds']['gross_vs_par'], 'gross_vs_par')}",
              f"- Trophy lead changes: {t['lead_changes']}; Green Jacket lead changes: {t['gross_lead_changes']}",
              ""]
    return "\n".join(lines)


def assembled_story_notes(facts: dict, synthesis: str, round_info: dict[int, tuple[str | None, str | None]] | None = None) -> str:
    """The tournament story notes file: title, computed facts, then the synthesis text."""
    t = facts["tournament"]
    return "\n".join([f"# TEG {t['teg']} story notes", "", tournament_facts_markdown(facts, round_info),
                      "## Story", "", synthesis.strip(), ""])
