"""Retrieval: N results of about 2 KB from the emulator into files — `tegbatchd retrieve ID` beside
the plain SDK loop, the streamed floor and the old collect-then-write workflow, all as subprocesses.

    python benchmarks/bench_retrieval.py [--n 100000] [--small 10000] [--skip-baselines-small]

Targets: peak RSS of our retrieve <= 150 MB and flat in N (--small beside --n); wall <= 0.5x the SDK loop
and <= 1.5x the floor. Before each run the page cache is flushed (os.sync) so no run pays for another's
dirty pages.
"""

from __future__ import annotations

import argparse
import json
import os

from _common import (
    PY,
    REPO,
    check,
    emulator,
    measure,
    save,
    small_requests,
    table,
    tegbatchd,
    tool_env,
    verdict,
    workspace,
)

BASELINES = REPO / "benchmarks" / "baselines.py"
ANSWER_BYTES = "2000"


def _count(folder) -> int:
    return sum(1 for e in os.scandir(folder) if e.name.endswith(".md")) if folder.exists() else 0


def run_size(root, emu, n: int, baselines: list[str]) -> list[dict]:
    env = tool_env(root, emu.url)
    reqs = small_requests(root / f"req-{n}.jsonl", n, prefix=f"n{n}")
    sub = check(measure(f"submit {n}", tegbatchd("submit", "requests", str(reqs), "--output",
                                                 f"ours-{n}/{{custom_id}}.md", "--json"), env=env))
    batch_id = json.loads(sub.stdout)["batch_ids"][0]
    rows = []
    os.sync()
    ours = check(measure(f"tegbatchd retrieve ({n:,})", tegbatchd("retrieve", batch_id, "--json"), env=env))
    report = json.loads(ours.stdout)
    rows.append({"n": n, "what": "ours", **ours.brief(), "files": _count(root / "data" / f"ours-{n}"),
                 "state": report["state"]})
    for name in baselines:
        out = root / "data" / f"{name}-{n}"
        out.mkdir()
        os.sync()
        run = check(measure(f"{name} ({n:,})", [PY, str(BASELINES), name, batch_id, str(out)], env=env))
        rows.append({"n": n, "what": name, **run.brief(), "files": _count(out)})
    for row in rows:
        assert row["files"] == n, row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--skip-baselines-small", action="store_true", help="only our retrieve at --small")
    parser.add_argument("--ours-only", action="store_true", help="no baselines (while working on the tool)")
    args = parser.parse_args()
    all_baselines = [] if args.ours_only else ["stream-floor", "sdk-loop", "old-dict"]
    rows: list[dict] = []
    with workspace("retrieval") as root, emulator("--process-seconds", "0", "--answer-bytes", ANSWER_BYTES) as emu:
        if args.small:
            rows += run_size(root, emu, args.small, [] if args.skip_baselines_small else all_baselines)
        rows += run_size(root, emu, args.n, all_baselines)
    by = {(r["n"], r["what"]): r for r in rows}
    big = args.n
    if args.ours_only:
        print(table(["N", "wall s", "cpu s", "peak RSS MB"], [[r["n"], r["wall_s"], r["cpu_s"], r["peak_rss_mb"]]
                                                           for r in rows]))
        return
    ours = by[(big, "ours")]
    checks = {
        "peak_rss_mb": {"value": ours["peak_rss_mb"], "target": "<= 150", "ok": ours["peak_rss_mb"] <= 150},
        "vs_sdk_loop": {"value": round(ours["wall_s"] / by[(big, "sdk-loop")]["wall_s"], 3), "target": "<= 0.5"},
        "vs_floor": {"value": round(ours["wall_s"] / by[(big, "stream-floor")]["wall_s"], 3), "target": "<= 1.5"},
    }
    checks["vs_sdk_loop"]["ok"] = checks["vs_sdk_loop"]["value"] <= 0.5
    checks["vs_floor"]["ok"] = checks["vs_floor"]["value"] <= 1.5
    if args.small:
        small = by[(args.small, "ours")]
        growth = ours["peak_rss_mb"] - small["peak_rss_mb"]
        checks["rss_growth_mb"] = {"value": round(growth, 1), "target": f"flat ({args.small:,} → {big:,}: < 20 MB)",
                                   "ok": growth < 20}
    print(table(["N", "run", "wall s", "cpu s", "peak RSS MB", "files", "x ours wall"],
                [[r["n"], r["what"], r["wall_s"], r["cpu_s"], r["peak_rss_mb"], r["files"],
                  round(r["wall_s"] / by[(r["n"], "ours")]["wall_s"], 2)] for r in rows]))
    print()
    print(table(["check", "value", "target", "verdict"],
                [[k, v["value"], v["target"], verdict(v["ok"], v["target"])] for k, v in checks.items()]))
    print("results:", save("retrieval", {"n": big, "small": args.small, "answer_bytes": int(ANSWER_BYTES),
                                         "runs": rows, "checks": checks}))


if __name__ == "__main__":
    main()
