"""Polling: API calls per poll cycle with 200 pending batches spread over the last day, beside the naive
one-retrieve-per-batch; and with nothing pending. Calls are counted by the emulator (/_emulator/stats).

    python benchmarks/bench_polling.py [--batches 200] [--hours 23.5]

The batches are submitted with `tegbatchd submit requests` (in-process, one small job each) while the
emulator's clock is advanced between creations, so their created_at spread over --hours (the clock only
moves forward; 23.5 h keeps the first batch short of its 24 h expiry). They never end (--process-seconds
10^6). Targets: at most 3 calls per cycle with 200 pending, 0 with nothing pending.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os

from _common import (
    PY,
    REPO,
    check,
    emulator,
    in_child,
    measure,
    save,
    small_requests,
    table,
    tegbatchd,
    tool_env,
    verdict,
    workspace,
)


def calls(stats: dict) -> int:
    return sum(stats["calls"].values())


def submit_spread(root, url: str, emu, batches: int, hours: float) -> list[str]:
    """Submit `batches` one-request jobs through the CLI in-process, advancing the emulator's clock."""
    from tegbatchd.cli import main

    os.environ.update(tool_env(root, url))
    step = hours * 3600 / max(1, batches - 1)
    ids = []
    for j in range(batches):
        reqs = small_requests(root / f"p{j}.jsonl", 1, prefix=f"p{j}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["submit", "requests", str(reqs), "--output", "poll/{custom_id}.md", "--json"]) == 0
        ids += json.loads(out.getvalue())["batch_ids"]
        if j < batches - 1:
            emu.advance(step)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--hours", type=float, default=23.5)
    args = parser.parse_args()
    rows = []
    with workspace("polling") as root, emulator("--process-seconds", "1000000") as emu:
        ids = in_child(submit_spread, root, emu.url, emu, args.batches, args.hours)
        (root / "ids.txt").write_text("\n".join(ids) + "\n")
        env = tool_env(root, emu.url)

        emu.reset_stats()
        ours = check(measure("tegbatchd poll --once", tegbatchd("poll", "--once", "--json"), env=env))
        ours_stats = emu.stats()
        report = json.loads(ours.stdout)
        rows.append({"what": f"tegbatchd poll --once ({len(ids)} pending)", "emulator_calls": calls(ours_stats),
                     "by_endpoint": ours_stats["calls"], "reported_api_calls": report["api_calls"],
                     "still_pending": report["still_pending"], **ours.brief()})

        emu.reset_stats()
        naive = check(measure("naive", [PY, str(REPO / "benchmarks" / "baselines.py"), "poll-each",
                                        str(root / "ids.txt")], env=env))
        naive_stats = emu.stats()
        rows.append({"what": f"naive: one retrieve per batch ({len(ids)})", "emulator_calls": calls(naive_stats),
                     "by_endpoint": naive_stats["calls"], **naive.brief()})

        empty = root / "empty"
        (empty / "home").mkdir(parents=True)
        (empty / "data").mkdir()
        emu.reset_stats()
        idle = check(measure("nothing pending", tegbatchd("poll", "--once", "--json"), env=tool_env(empty, emu.url)))
        idle_stats = emu.stats()
        rows.append({"what": "tegbatchd poll --once (nothing pending)", "emulator_calls": calls(idle_stats),
                     "by_endpoint": idle_stats["calls"], "reported_api_calls": json.loads(idle.stdout)["api_calls"],
                     **idle.brief()})
    checks = {
        "calls_per_cycle_200_pending": {"value": rows[0]["emulator_calls"], "target": "<= 3",
                                        "ok": rows[0]["emulator_calls"] <= 3},
        "calls_nothing_pending": {"value": rows[2]["emulator_calls"], "target": "0", "ok": rows[2]["emulator_calls"] == 0},
    }
    print(f"{len(ids)} pending batches, created over {args.hours:g} h of emulated time")
    print(table(["run", "API calls (emulator)", "by endpoint", "wall s", "peak RSS MB"],
                [[r["what"], r["emulator_calls"], ", ".join(f"{k} {v}" for k, v in r["by_endpoint"].items() if v),
                  r["wall_s"], r["peak_rss_mb"]] for r in rows]))
    print()
    print(table(["check", "value", "target", "verdict"],
                [[k, v["value"], v["target"], verdict(v["ok"], v["target"])] for k, v in checks.items()]))
    print("results:", save("polling", {"batches": len(ids), "hours": args.hours, "runs": rows, "checks": checks}))


if __name__ == "__main__":
    main()
