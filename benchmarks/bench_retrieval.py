"""Retrieval: N results of about 2 KB from the emulator into files — `tegbatchd retrieve ID` beside
the plain SDK loop, the streamed floor and the old collect-then-write workflow, all as subprocesses.

    python benchmarks/bench_retrieval.py [--n 100000] [--small 10000] [--also 30000] [--repeat 3] [--baselines stream-floor]

Targets: peak RSS of our retrieve (plus its write helper process's own pages) < 100 MB and flat in N (< 10 MB growth from --small to --n); wall
<= 1.0x the floor at each size (and <= 0.5x the SDK loop), every durability guarantee kept. The
durable floor (the floor with each file atomic and the disk synced per 500, nothing recorded) splits a
gap into the disk's part (durable floor / floor) and ours (ours / durable floor). Before each run the page cache is flushed (os.sync) so no run pays for another's
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
    proc_cpu_s,
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


def run_size(root, emu, n: int, baselines: list[str], repeat: int = 1) -> list[dict]:
    """Our retrieve and each baseline on the same batch, `repeat` times (a new batch each time), the runs
    alternating so a change in the machine's load falls on all of them alike; medians are reported."""
    env = tool_env(root, emu.url)
    runs: dict[str, list[dict]] = {"ours": [], **{b: [] for b in baselines}}
    for attempt in range(repeat):
        tag = f"{n}-{attempt}"
        reqs = small_requests(root / f"req-{tag}.jsonl", n, prefix=f"n{tag}")
        sub = check(measure(f"submit {n}", tegbatchd("submit", "requests", str(reqs), "--output",
                                                     f"ours-{tag}/{{custom_id}}.md", "--json"), env=env))
        batch_id = json.loads(sub.stdout)["batch_ids"][0]
        os.sync()
        before = proc_cpu_s(emu.proc.pid)
        ours = check(measure(f"tegbatchd retrieve ({n:,})", tegbatchd("retrieve", batch_id, "--json"), env=env))
        report = json.loads(ours.stdout)
        runs["ours"].append({"n": n, "what": "ours", **ours.brief(), "files": _count(root / "data" / f"ours-{tag}"),
                             "state": report["state"], "emulator_cpu_s": round(proc_cpu_s(emu.proc.pid) - before, 2)})
        for name in baselines:
            out = root / "data" / f"{name}-{tag}"
            out.mkdir()
            os.sync()
            before = proc_cpu_s(emu.proc.pid)
            run = check(measure(f"{name} ({n:,})", [PY, str(BASELINES), name, batch_id, str(out)], env=env))
            runs[name].append({"n": n, "what": name, **run.brief(), "files": _count(out),
                               "emulator_cpu_s": round(proc_cpu_s(emu.proc.pid) - before, 2)})
    rows = []
    for rs in runs.values():
        for row in rs:
            assert row["files"] == n, row
        row = dict(sorted(rs, key=lambda r: r["wall_s"])[len(rs) // 2])  # the median run by wall time
        row["runs_wall_s"] = [r["wall_s"] for r in rs]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--also", type=int, action="append", default=[], help="another size between them (repeatable)")
    parser.add_argument("--skip-baselines-small", action="store_true", help="only our retrieve at --small")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per size (medians reported)")
    parser.add_argument("--ours-only", action="store_true", help="no baselines (while working on the tool)")
    parser.add_argument("--baselines", default="stream-floor,durable-floor,sdk-loop,old-dict",
                        help="comma-separated baselines to run beside ours (default: all four)")
    args = parser.parse_args()
    all_baselines = [] if args.ours_only else [b for b in args.baselines.split(",") if b]
    rows: list[dict] = []
    with workspace("retrieval") as root, emulator("--process-seconds", "0", "--answer-bytes", ANSWER_BYTES) as emu:
        if args.small:
            rows += run_size(root, emu, args.small, [] if args.skip_baselines_small else all_baselines, args.repeat)
        for size in args.also:
            rows += run_size(root, emu, size, all_baselines, args.repeat)
        rows += run_size(root, emu, args.n, all_baselines, args.repeat)
    by = {(r["n"], r["what"]): r for r in rows}
    big = args.n
    if args.ours_only:
        print(table(["N", "wall s", "cpu s", "peak RSS MB"], [[r["n"], r["wall_s"], r["cpu_s"], r["peak_rss_mb"]]
                                                           for r in rows]))
        return
    ours = by[(big, "ours")]
    def peak_of(row: dict) -> float:  # the retrieving process's peak and what its write helper adds (its own
        return round(row["peak_rss_mb"] + row.get("helpers_private_mb", 0.0), 1)  # pages; the rest is shared)

    peak = peak_of(ours)
    checks = {"peak_rss_mb (+ the write helper's own)": {"value": peak, "target": "< 100", "ok": peak < 100},
              "the write helper's RSS (no target; shared pages in it)": {
                  "value": ours.get("helpers_peak_rss_mb", 0.0), "target": "-", "ok": True}}
    for n in sorted({r["n"] for r in rows}):
        if (n, "stream-floor") in by:
            value = round(by[(n, "ours")]["wall_s"] / by[(n, "stream-floor")]["wall_s"], 3)
            checks[f"vs_floor ({n:,})"] = {"value": value, "target": "<= 1.0", "ok": value <= 1.0}
            cpu = round(by[(n, "ours")]["cpu_s"] / by[(n, "stream-floor")]["cpu_s"], 3)
            checks[f"cpu vs floor ({n:,}, no target)"] = {"value": cpu, "target": "-", "ok": True}
        if (n, "durable-floor") in by and (n, "stream-floor") in by:  # the machine's part of the gap
            machine = round(by[(n, "durable-floor")]["wall_s"] / by[(n, "stream-floor")]["wall_s"], 3)
            checks[f"durable floor vs floor ({n:,}, the disk's part)"] = {"value": machine, "target": "-", "ok": True}
        if (n, "durable-floor") in by:
            ours_part = round(by[(n, "ours")]["wall_s"] / by[(n, "durable-floor")]["wall_s"], 3)
            checks[f"ours vs durable floor ({n:,}, ours)"] = {"value": ours_part, "target": "-", "ok": True}
    if (big, "sdk-loop") in by:
        value = round(ours["wall_s"] / by[(big, "sdk-loop")]["wall_s"], 3)
        checks["vs_sdk_loop"] = {"value": value, "target": "<= 0.5", "ok": value <= 0.5}
    if args.small:
        small = by[(args.small, "ours")]
        growth = peak - peak_of(small)
        checks["rss_growth_mb"] = {"value": round(growth, 1), "target": f"flat ({args.small:,} → {big:,}: < 10 MB)",
                                   "ok": growth < 10}
    print(table(["N", "run", "wall s", "cpu s", "user s", "sys s", "emulator cpu s", "peak RSS MB",
                 "helper RSS / own MB", "files", "x ours wall"],
                [[r["n"], r["what"], r["wall_s"], r["cpu_s"], r["user_s"], r["sys_s"], r["emulator_cpu_s"], r["peak_rss_mb"],
                  f"{r.get('helpers_peak_rss_mb', 0.0)} / {r.get('helpers_private_mb', 0.0)}", r["files"],
                  round(r["wall_s"] / by[(r["n"], "ours")]["wall_s"], 2)] for r in rows]))
    print()
    print(table(["check", "value", "target", "verdict"],
                [[k, v["value"], v["target"], verdict(v["ok"], v["target"])] for k, v in checks.items()]))
    print("results:", save("retrieval", {"n": big, "small": args.small, "answer_bytes": int(ANSWER_BYTES),
                                         "runs": rows, "checks": checks}))


if __name__ == "__main__":
    main()
