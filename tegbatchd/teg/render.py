"""Small text helpers shared by `teg summary` and the assembled markdown files."""

from __future__ import annotations


def vp(value) -> str:
    """Gross versus par as golfers write it: +14, -2, E."""
    if value is None:
        return "-"
    return "E" if value == 0 else f"{value:+g}"


def text_table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """A plain aligned table; columns listed in `right` are right-aligned."""
    right = right or set()
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def competition_line(label: str, comp: dict, unit: str, spoon: bool = False) -> str:
    """'TEG Trophy: Jon BAKER, 166 pts, by 18 from David MULLIN (148 pts)'; ties say 'tied'."""
    score = vp(comp["score"]) if unit == "gross" else f"{comp['score']} pts"
    line = f"{label}: {comp['winner']}, {score}"
    if comp["tied"]:
        line += " (tied)"
    if comp["next"] is not None:
        nxt = vp(comp["next_score"]) if unit == "gross" else f"{comp['next_score']} pts"
        gap = f"{comp['margin']} behind" if spoon else f"by {comp['margin']} from"
        line += f", {gap} {comp['next']} ({nxt})"
    return line


def venue_line(t: dict) -> str:
    """'2024 · Praia D'El Rey, West Cliffs · 05/10/2024–08/10/2024 · 4 rounds' (unknown parts left out)."""
    dates = None
    if t.get("first_date"):
        dates = t["first_date"] if t["first_date"] == t["last_date"] else f"{t['first_date']}–{t['last_date']}"
    rounds = f"{t['rounds_played']} round{'s' if t['rounds_played'] != 1 else ''}"
    if not t["complete"]:
        rounds += f" of {t['rounds_planned']} played"
    parts = [str(t["year"]) if t.get("year") else None, ", ".join(t.get("courses") or []) or None, dates, rounds]
    return " · ".join(p for p in parts if p)


def rounds_list(entries: list[dict], key: str) -> str:
    """'David MULLIN 47 pts (R2); ...' for best/worst round entries (key: stableford or gross_vs_par)."""
    fmt = vp if key == "gross_vs_par" else (lambda v: f"{v} pts")
    return "; ".join(f"{e['player']} {fmt(e[key])} (R{e['round']})" for e in entries) or "-"
