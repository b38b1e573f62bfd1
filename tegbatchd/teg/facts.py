"""Facts computed from the scores table: pure functions returning JSON-ready dicts.

Conventions (the same in `teg summary`, the prompts' JSON and the assembled story notes):
- Positions use standard competition ranking: equal totals share a position shown as "T2" and the next
  player is 4th. `position` is that label (a string), `rank` the number.
- Winners (`trophy`, `green_jacket`, `wooden_spoon`, `leader`, round winners) are a plain name for a sole
  winner; a tie joins the names alphabetically with " & ". The detail under `competitions` always has the
  `winners` list and `tied`.
- Trophy = most Stableford points, Green Jacket = lowest total GrossVP, Wooden Spoon = fewest Stableford
  points. `margin` is the gap to the next different total (0 never occurs: ties are listed as winners).
- Eagles = gross two or more under par (albatrosses included); birdies = gross one under par.
- Streaks (three or more holes in a row within one round): "scoring" = 2+ Stableford points on each hole
  (net par or better), "par_or_better" = gross par or better, "zero_points" = no points.
- Lead changes: the leader(s) after every hole, cumulative over the tournament (earlier rounds count);
  an entry each time the set of leaders changes. The tournament's `lead_changes` counts the times a new
  sole leader replaced a different earlier sole leader.
- Projections: with N rounds remaining, a chaser `gap` points behind must outscore the leader by gap/N
  points per round to draw level.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from tegbatchd.teg.data import HoleScore, ScoreTable

STREAK_RULES: dict[str, Callable[[HoleScore], bool]] = {
    "scoring": lambda h: h.stableford >= 2,
    "par_or_better": lambda h: h.gross_vp <= 0,
    "zero_points": lambda h: h.stableford == 0,
}
MIN_STREAK = 3


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 2)


def joined(names: Iterable[str]) -> str:
    """One name, or tied names joined alphabetically with ' & '."""
    return " & ".join(sorted(names))


def rank(totals: dict[str, float], higher_is_better: bool = True) -> dict[str, tuple[int, str]]:
    """Given totals by player, return (rank, label) by player; ties share a rank and get a 'T' label."""
    ordered = sorted(totals.values(), reverse=higher_is_better)
    out = {}
    for name, value in totals.items():
        position = ordered.index(value) + 1
        out[name] = (position, f"T{position}" if ordered.count(value) > 1 else str(position))
    return out


def competition(totals: dict[str, float], higher_is_better: bool) -> dict:
    """Winner(s), their score, the next-placed player(s) and the margin between them."""
    pick = max if higher_is_better else min
    best = pick(totals.values())
    winners = sorted(n for n, v in totals.items() if v == best)
    rest = [v for v in totals.values() if v != best]
    nxt = pick(rest) if rest else None
    return {
        "winner": joined(winners), "winners": winners, "tied": len(winners) > 1, "score": _num(best),
        "next": joined(n for n, v in totals.items() if v == nxt) if rest else None,
        "next_score": _num(nxt) if nxt is not None else None,
        "margin": _num(abs(best - nxt)) if nxt is not None else None,
    }


def player_totals(rows: Iterable[HoleScore]) -> dict[str, dict]:
    """Stableford, GrossVP, strokes and holes played by player over the given rows."""
    totals: dict[str, dict] = {}
    for h in rows:
        t = totals.setdefault(h.player, {"initials": h.initials, "stableford": 0, "gross_vs_par": 0,
                                         "strokes": 0, "holes": 0})
        t["stableford"] += h.stableford
        t["gross_vs_par"] += h.gross_vp
        t["strokes"] += h.strokes
        t["holes"] += 1
    for t in totals.values():
        for key in ("stableford", "gross_vs_par", "strokes"):
            t[key] = _num(t[key])
    return totals


def streaks(holes: list[HoleScore], min_length: int = MIN_STREAK) -> list[dict]:
    """Runs of `min_length`+ consecutive holes (one player, one round) for each STREAK_RULES kind."""
    ordered = sorted(holes, key=lambda h: h.hole)
    found = []
    for kind, rule in STREAK_RULES.items():
        run: list[int] = []
        for h in ordered + [None]:
            if h is not None and rule(h) and (not run or h.hole == run[-1] + 1):
                run.append(h.hole)
                continue
            if len(run) >= min_length:
                found.append({"kind": kind, "from_hole": run[0], "to_hole": run[-1], "length": len(run)})
            run = [h.hole] if h is not None and rule(h) else []
    return sorted(found, key=lambda s: (s["from_hole"], s["kind"]))


def lead_history(rows: list[HoleScore], gross: bool = False) -> list[dict]:
    """Every change of the leader set, hole by hole, cumulative over the tournament rows given."""
    players = sorted({h.player for h in rows})
    running = dict.fromkeys(players, 0.0)
    previous = players
    events = []
    by_hole: dict[tuple[int, int], list[HoleScore]] = defaultdict(list)
    for h in rows:
        by_hole[(h.round, h.hole)].append(h)
    for (round_no, hole), scores in sorted(by_hole.items()):
        for h in scores:
            running[h.player] += h.gross_vp if gross else h.stableford
        best = (min if gross else max)(running.values())
        leaders = sorted(p for p, v in running.items() if v == best)
        if leaders != previous:
            events.append({"round": round_no, "hole": hole, "leaders": leaders, "previous": previous,
                           "score": _num(best), "shared": len(leaders) > 1})
            previous = leaders
    return events


def count_lead_changes(events: list[dict]) -> int:
    """Times a sole leader took over from a different earlier sole leader."""
    changes, last = 0, None
    for e in events:
        if not e["shared"]:
            if last is not None and e["leaders"][0] != last:
                changes += 1
            last = e["leaders"][0]
    return changes


def hole_difficulty(rows: list[HoleScore]) -> list[dict]:
    """Per hole of one round: par, average strokes over par and average points across the players."""
    by_hole: dict[int, list[HoleScore]] = defaultdict(list)
    for h in rows:
        by_hole[h.hole].append(h)
    return [{"hole": hole, "par": hs[0].par,
             "avg_vs_par": round(sum(h.gross_vp for h in hs) / len(hs), 2),
             "avg_points": round(sum(h.stableford for h in hs) / len(hs), 2)}
            for hole, hs in sorted(by_hole.items())]


def _venue(table: ScoreTable, teg: int) -> dict:
    infos = [i for i in (table.info(teg, r) for r in table.rounds(teg)) if i is not None]
    courses = list(dict.fromkeys(i.course for i in infos if i.course))
    dates = [i.date for i in infos if i.date]
    years = [i.year for i in infos if i.year]
    return {"courses": courses, "first_date": dates[0] if dates else None,
            "last_date": dates[-1] if dates else None, "year": years[0] if years else None}


def _round_scores(rows: list[HoleScore]) -> dict[int, dict[str, dict]]:
    by_round: dict[int, list[HoleScore]] = defaultdict(list)
    for h in rows:
        by_round[h.round].append(h)
    return {r: player_totals(hs) for r, hs in sorted(by_round.items())}


def _extreme_rounds(per_round: dict[int, dict[str, dict]], key: str, pick) -> list[dict]:
    entries = [(r, p, t[key]) for r, players in per_round.items() for p, t in players.items()]
    if not entries:
        return []
    value = pick(v for _, _, v in entries)
    return [{"player": p, "round": r, key: v} for r, p, v in entries if v == value]


def tournament_facts(table: ScoreTable, teg: int) -> dict:
    """Given the table and a TEG in it, return {"tournament": {...}, "players": [...]} for all its rounds.

    Raise InputError (from the table) when the TEG is not in the data.
    """
    table.require_teg(teg)
    rows = table.rows(teg)
    rounds = table.rounds(teg)
    totals = player_totals(rows)
    points = {p: t["stableford"] for p, t in totals.items()}
    gross = {p: t["gross_vs_par"] for p, t in totals.items()}
    positions, gross_positions = rank(points), rank(gross, higher_is_better=False)
    per_round = _round_scores(rows)
    leaders_after = []
    for r in rounds:
        upto = player_totals(h for h in rows if h.round <= r)
        pts = competition({p: t["stableford"] for p, t in upto.items()}, True)
        grs = competition({p: t["gross_vs_par"] for p, t in upto.items()}, False)
        leaders_after.append({"round": r, "leader": pts["winner"], "stableford": pts["score"],
                              "lead": pts["margin"], "gross_leader": grs["winner"], "gross_vs_par": grs["score"]})
    comps = {"trophy": competition(points, True), "green_jacket": competition(gross, False),
             "wooden_spoon": competition(points, False)}
    planned = table.planned_rounds(teg)
    tournament = {
        "teg": teg, "label": f"TEG {teg}", **_venue(table, teg),
        "rounds_played": len(rounds), "rounds_planned": planned, "complete": len(rounds) >= planned,
        "trophy": comps["trophy"]["winner"], "green_jacket": comps["green_jacket"]["winner"],
        "wooden_spoon": comps["wooden_spoon"]["winner"], "competitions": comps,
        "leader_after_round": leaders_after,
        "lead_changes": count_lead_changes(lead_history(rows)),
        "gross_lead_changes": count_lead_changes(lead_history(rows, gross=True)),
        "best_rounds": {"stableford": _extreme_rounds(per_round, "stableford", max),
                        "gross_vs_par": _extreme_rounds(per_round, "gross_vs_par", min)},
        "worst_rounds": {"stableford": _extreme_rounds(per_round, "stableford", min),
                         "gross_vs_par": _extreme_rounds(per_round, "gross_vs_par", max)},
    }
    players = [{
        "name": p, "initials": t["initials"], "stableford": t["stableford"], "gross_vs_par": t["gross_vs_par"],
        "strokes": t["strokes"], "position": positions[p][1], "rank": positions[p][0],
        "gross_position": gross_positions[p][1],
        "rounds": [{"round": r, "stableford": per_round[r][p]["stableford"],
                    "gross_vs_par": per_round[r][p]["gross_vs_par"]} for r in per_round if p in per_round[r]],
    } for p, t in totals.items()]
    players.sort(key=lambda x: (x["rank"], x["name"]))
    return {"tournament": tournament, "players": players}


def _player_round(holes: list[HoleScore]) -> dict:
    front = [h for h in holes if h.front]
    back = [h for h in holes if not h.front]
    by_hole = {h.hole: h for h in holes}
    last = max([18, *by_hole])
    return {
        "front_stableford": _num(sum(h.stableford for h in front)),
        "back_stableford": _num(sum(h.stableford for h in back)),
        "front_gross_vs_par": _num(sum(h.gross_vp for h in front)),
        "back_gross_vs_par": _num(sum(h.gross_vp for h in back)),
        "holes_played": len(holes),
        "eagles": [h.hole for h in holes if h.gross_vp <= -2],
        "birdies": [h.hole for h in holes if h.gross_vp == -1],
        "zero_point_holes": [h.hole for h in holes if h.stableford == 0],
        "streaks": streaks(holes),
        "strokes_by_hole": [by_hole[n].strokes if n in by_hole else None for n in range(1, last + 1)],
        "points_by_hole": [by_hole[n].stableford if n in by_hole else None for n in range(1, last + 1)],
    }


def _projection(after: dict[str, dict], remaining: int, rounds_done: int) -> dict:
    points = {p: t["stableford"] for p, t in after.items()}
    gross = {p: t["gross_vs_par"] for p, t in after.items()}
    lead = competition(points, True)
    gross_lead = competition(gross, False)
    leader_avg = lead["score"] / rounds_done if rounds_done else 0

    def per_round(gap):
        return round(gap / remaining, 1) if remaining else None

    chasers = []
    for p, v in sorted(points.items(), key=lambda kv: (-kv[1], kv[0])):
        if p in lead["winners"]:
            continue
        gap = _num(lead["score"] - v)
        chasers.append({"name": p, "gap": gap, "extra_points_per_round": per_round(gap),
                        "needs_per_round_at_leader_average": round(leader_avg + gap / remaining, 1)
                        if remaining else None})
    gross_chasers = [{"name": p, "gap": _num(v - gross_lead["score"]), "strokes_per_round": per_round(v - gross_lead["score"])}
                     for p, v in sorted(gross.items(), key=lambda kv: (kv[1], kv[0])) if p not in gross_lead["winners"]]
    spoon = competition(points, False)
    return {
        "rounds_remaining": remaining, "final": remaining == 0,
        "leader": lead["winner"], "leader_points": lead["score"], "leader_average_per_round": round(leader_avg, 1),
        "chasers": chasers,
        "gross": {"leader": gross_lead["winner"], "leader_gross_vs_par": gross_lead["score"], "chasers": gross_chasers},
        "spoon": {"last": spoon["winner"], "points": spoon["score"], "next": spoon["next"],
                  "gap_to_next": spoon["margin"]},
    }


def round_facts(table: ScoreTable, teg: int, round_no: int) -> dict:
    """Given the table, a TEG and one of its rounds, return what a round report is built from.

    Uses only rounds up to `round_no` (a report written after round 2 knows nothing of round 3).
    Returns {"round": {...}, "leader": name, "gross_leader": name, "projection": {...}, "players": [...]}.
    Raise InputError when the TEG or round is not in the data.
    """
    table.require_round(teg, round_no)
    rows = [h for h in table.rows(teg) if h.round <= round_no]
    this_round = [h for h in rows if h.round == round_no]
    before = player_totals(h for h in rows if h.round < round_no)
    after = player_totals(rows)
    now = player_totals(this_round)
    played_before = [r for r in table.rounds(teg) if r < round_no]
    pos_after = rank({p: t["stableford"] for p, t in after.items()})
    gpos_after = rank({p: t["gross_vs_par"] for p, t in after.items()}, higher_is_better=False)
    pos_before = rank({p: t["stableford"] for p, t in before.items()}) if before else {}
    gpos_before = rank({p: t["gross_vs_par"] for p, t in before.items()}, higher_is_better=False) if before else {}
    round_pos = rank({p: t["stableford"] for p, t in now.items()})
    lead = competition({p: t["stableford"] for p, t in after.items()}, True)
    gross_lead = competition({p: t["gross_vs_par"] for p, t in after.items()}, False)

    players = []
    for p, t in after.items():
        r = now.get(p, {"stableford": 0, "gross_vs_par": 0, "strokes": 0})
        moved = pos_before[p][0] - pos_after[p][0] if p in pos_before else None
        players.append({
            "name": p, "initials": t["initials"],
            "round_stableford": r["stableford"], "round_gross_vs_par": r["gross_vs_par"], "round_strokes": r["strokes"],
            "round_position": round_pos[p][1] if p in round_pos else None,
            "cumulative_stableford": t["stableford"], "cumulative_gross_vs_par": t["gross_vs_par"],
            "position": pos_after[p][1], "rank": pos_after[p][0],
            "position_before": pos_before[p][1] if p in pos_before else None, "places_gained": moved,
            "gross_position": gpos_after[p][1],
            "gross_position_before": gpos_before[p][1] if p in gpos_before else None,
            "gap_to_leader": _num(lead["score"] - t["stableford"]),
            "gross_gap_to_leader": _num(t["gross_vs_par"] - gross_lead["score"]),
            **_player_round([h for h in this_round if h.player == p]),
        })
    players.sort(key=lambda x: (x["rank"], x["name"]))

    difficulty = hole_difficulty(this_round)
    hardest = max(difficulty, key=lambda d: (d["avg_vs_par"], -d["hole"]))
    easiest = min(difficulty, key=lambda d: (d["avg_vs_par"], d["hole"]))
    info = table.info(teg, round_no)
    planned = table.planned_rounds(teg)
    round_best = competition({p: t["stableford"] for p, t in now.items()}, True)
    round_gross = competition({p: t["gross_vs_par"] for p, t in now.items()}, False)
    summary = {
        "teg": teg, "round": round_no, "of": planned, "rounds_remaining": max(planned - round_no, 0),
        "course": info.course if info else None, "date": info.date if info else None,
        "year": info.year if info else None,
        "round_winner": round_best["winner"], "round_winner_points": round_best["score"],
        "best_gross": round_gross["winner"], "best_gross_vs_par": round_gross["score"],
        "leader_before": competition({p: t["stableford"] for p, t in before.items()}, True)["winner"]
        if before else None,
        "hardest_hole": hardest, "easiest_hole": easiest, "holes": difficulty,
        "lead_changes": [e for e in lead_history(rows) if e["round"] == round_no],
        "gross_lead_changes": [e for e in lead_history(rows, gross=True) if e["round"] == round_no],
    }
    return {
        "round": summary, "leader": lead["winner"], "lead": lead["margin"], "gross_leader": gross_lead["winner"],
        "projection": _projection(after, summary["rounds_remaining"], len(played_before) + 1),
        "players": players,
    }
