"""`teg summary`: the facts of a tournament (or one round of it) as JSON or a table a person can check."""

from __future__ import annotations

from tegbatchd.teg.data import ScoreTable
from tegbatchd.teg.facts import round_facts, tournament_facts
from tegbatchd.teg.render import competition_line, rounds_list, text_table, venue_line, vp

STREAK_WORDS = {"scoring": "2+ pts", "par_or_better": "par or better", "zero_points": "no points"}


def build_summary(table: ScoreTable, teg: int, round_no: int | None = None) -> dict:
    """Given the table, a TEG and optionally a round, return the summary payload.

    Always: `tournament` (winners as plain names, ties joined by " & ", details under `competitions`) and
    `players[]` with tournament totals (`stableford`, `gross_vs_par`, `position`). With a round, `round`,
    `leader`, `gross_leader`, `projection` are added and `players[]` carries the round's figures, the
    cumulative totals and `position` after that round (the final position is then `final_position`).
    Raise InputError when the TEG or round is not in the data.
    """
    facts = tournament_facts(table, teg)
    payload = {"teg": teg, "scores_file": str(table.source),
               "rounds_file": str(table.rounds_source) if table.rounds_source else None,
               "tournament": facts["tournament"], "players": facts["players"]}
    if round_no is None:
        return payload
    rf = round_facts(table, teg, round_no)
    totals = {p["name"]: p for p in facts["players"]}
    players = []
    for p in rf["players"]:
        t = totals[p["name"]]
        players.append({**p, "stableford": t["stableford"], "gross_vs_par": t["gross_vs_par"],
                        "final_position": t["position"]})
    payload.update(round=rf["round"], leader=rf["leader"], lead=rf["lead"], gross_leader=rf["gross_leader"],
                   projection=rf["projection"], players=players)
    return payload


def _tournament_text(payload: dict) -> list[str]:
    t = payload["tournament"]
    rounds = [x["round"] for x in t["leader_after_round"]]
    rows = []
    for p in payload["players"]:
        by_round = {r["round"]: r["stableford"] for r in p["rounds"]}
        rows.append([p["position"], p["name"], *[by_round.get(r) for r in rounds], p["stableford"],
                     vp(p["gross_vs_par"]), p["gross_position"]])
    headers = ["Pos", "Player", *[f"R{r}" for r in rounds], "Points", "Gross", "Gross pos"]
    comps = t["competitions"]
    lines = [text_table(headers, rows, right=set(range(2, len(headers) - 1))), "",
             competition_line("TEG Trophy", comps["trophy"], "points"),
             competition_line("Green Jacket", comps["green_jacket"], "gross"),
             competition_line("Wooden Spoon", comps["wooden_spoon"], "points", spoon=True)]
    if not t["complete"]:
        lines.append(f"(only {t['rounds_played']} of {t['rounds_planned']} rounds played: standings so far)")
    lines += ["", "Leader after each round:"]
    for x in t["leader_after_round"]:
        lead = f", lead {x['lead']}" if x["lead"] is not None else ""
        lines.append(f"  R{x['round']}  {x['leader']} {x['stableford']} pts{lead}  ·  "
                     f"Green Jacket: {x['gross_leader']} {vp(x['gross_vs_par'])}")
    best, worst = t["best_rounds"], t["worst_rounds"]
    lines += ["", f"Best round: {rounds_list(best['stableford'], 'stableford')} · "
                  f"best gross: {rounds_list(best['gross_vs_par'], 'gross_vs_par')}",
              f"Worst round: {rounds_list(worst['stableford'], 'stableford')} · "
              f"worst gross: {rounds_list(worst['gross_vs_par'], 'gross_vs_par')}",
              f"Lead changes: {t['lead_changes']} (Trophy), {t['gross_lead_changes']} (Green Jacket)"]
    return lines


def _holes(players: list[dict], key: str) -> str:
    parts = [f"{p['initials'] or p['name']} H{', H'.join(map(str, p[key]))}" for p in players if p[key]]
    return "; ".join(parts) or "none"


def _round_text(payload: dict) -> list[str]:
    r, proj = payload["round"], payload["projection"]
    extra = {c["name"]: c["extra_points_per_round"] for c in proj["chasers"]}
    rows = [[p["position"], p["position_before"], p["name"], p["round_stableford"], vp(p["round_gross_vs_par"]),
             p["front_stableford"], p["back_stableford"], p["cumulative_stableford"],
             vp(p["cumulative_gross_vs_par"]), p["gap_to_leader"] or None,
             f"+{extra[p['name']]}" if extra.get(p["name"]) is not None else None]
            for p in payload["players"]]
    headers = ["Pos", "Before", "Player", "Round", "Gross", "Out", "In", "Total", "Total gross", "Gap", "Extra/rd"]
    lines = [text_table(headers, rows, right=set(range(3, len(headers)))), "",
             f"Round winner: {r['round_winner']} {r['round_winner_points']} pts · "
             f"best gross: {r['best_gross']} {vp(r['best_gross_vs_par'])}",
             f"Leader after round {r['round']}: {payload['leader']}"
             + (f" by {payload['lead']}" if payload["lead"] is not None else "")
             + (f" (before: {r['leader_before']})" if r["leader_before"] else "")
             + f" · Green Jacket: {payload['gross_leader']} {vp(proj['gross']['leader_gross_vs_par'])}",
             f"Wooden Spoon position: {proj['spoon']['last']} {proj['spoon']['points']} pts"
             + (f", {proj['spoon']['gap_to_next']} behind {proj['spoon']['next']}" if proj["spoon"]["next"] else "")]
    changes = [f"H{e['hole']} {' & '.join(e['leaders'])}{' level' if e['shared'] else ''} ({e['score']} pts)"
               for e in r["lead_changes"]]
    lines.append("Lead changes this round: " + ("; ".join(changes) or "none"))
    h, e = r["hardest_hole"], r["easiest_hole"]
    lines += [f"Hardest hole: H{h['hole']} (par {h['par']}, {vp(h['avg_vs_par'])} avg) · "
              f"easiest: H{e['hole']} (par {e['par']}, {vp(e['avg_vs_par'])} avg)",
              f"Eagles: {_holes(payload['players'], 'eagles')}",
              f"Birdies: {_holes(payload['players'], 'birdies')}",
              f"Zero-point holes: {_holes(payload['players'], 'zero_point_holes')}"]
    streak_parts = [f"{p['initials'] or p['name']} {STREAK_WORDS[s['kind']]} H{s['from_hole']}–{s['to_hole']}"
                    for p in payload["players"] for s in p["streaks"]]
    lines.append("Streaks (3+ holes): " + ("; ".join(streak_parts) or "none"))
    if proj["final"]:
        lines.append("Final round: nothing left to play.")
    else:
        lines.append(f"Rounds remaining: {proj['rounds_remaining']} · Extra/rd = points per round a chaser must "
                     "outscore the leader by to draw level")
    return lines


def render_summary(payload: dict) -> str:
    """The payload as text: a heading, then the round table (with a round) or the tournament table."""
    t = payload["tournament"]
    if "round" in payload:
        r = payload["round"]
        where = " · ".join(x for x in (r.get("course"), r.get("date")) if x)
        head = f"TEG {t['teg']} round {r['round']} of {r['of']}" + (f" · {where}" if where else "")
        body = _round_text(payload)
    else:
        head = f"TEG {t['teg']} · {venue_line(t)}"
        body = _tournament_text(payload)
    return "\n".join([head, f"scores: {payload['scores_file']}", "", *body])
