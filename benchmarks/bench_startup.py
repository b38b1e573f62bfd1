"""CLI start-up: `tegbatchd list` over a store of 1,000 batches and 100,000 requests, beside
`python -c "import sqlite3, yaml, platformdirs"` in the same venv (target: at most 2x).

    python benchmarks/bench_startup.py [--jobs 500] [--repeat 9]

The store is built directly through tegbatchd.store.Store (no API): 500 jobs of two stages, one batch of
100 requests per stage, spread over the last 180 days (--days), all retrieved with usage but the newest
three, still running. `list` shows the active jobs and those finished in the last week (its default);
`list --all` shows all 500 (a stress figure, reported beside). The runs alternate and the medians are
compared. Modules are byte-compiled first, as an installed package is.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import PY, REPO, check, in_child, measure, save, table, tool_env, verdict, workspace

REQUESTS_PER_BATCH = 100


def build_store(root: Path, jobs: int, days: float) -> dict:
    """Record `jobs` jobs × 2 stages × 1 batch × 100 requests straight into the store, their times spread
    evenly over the last `days` days (the store's clock, now_iso, is set back for each job)."""
    os.environ["TEGBATCHD_HOME"] = str(root / "home")
    import tegbatchd.store as store_mod
    from tegbatchd.context import Context
    from tegbatchd.engine.states import BatchState, JobState, StageState
    from tegbatchd.store import PlannedIntent

    real_now_iso = store_mod.now_iso
    ctx = Context()
    store = ctx.store
    store.conn.execute("PRAGMA synchronous=OFF")  # building only: the CLI under test opens it normally
    data = root / "data"
    batches = requests = 0
    real_now = datetime.now(UTC)
    for j in range(jobs):
        job_id = f"job_bench_{j:04d}"
        running = j >= jobs - 3  # the newest few are still running
        at = (real_now - timedelta(days=days * (jobs - j) / jobs)).isoformat(timespec="microseconds")
        store_mod.now_iso = lambda at=at: at.replace("+00:00", "Z")
        store.create_job(job_id, "round-reports", f"Round reports, TEG {j}", {"teg": j, "pairs": [[j, k] for k in range(1, 5)]}, str(data),
                         ["story_notes", "narrative"])
        for stage in store.stages(job_id):
            rows = [(f"TEG{j}_R{k}_{stage['name']}", str(data / "commentary" / f"TEG{j}_R{k}_{stage['seq']}.md"),
                     "claude-sonnet-5-5", 4000) for k in range(REQUESTS_PER_BATCH)]
            intent = store.record_stage(stage["id"], [PlannedIntent(str(root / "archive.jsonl"), 800_000, rows)], [])[0]
            batch_id = f"msgbatch_bench{j:04d}s{stage['seq']}"
            ended = not (running and stage["seq"] == 1)
            counts = {"processing": 0 if ended else REQUESTS_PER_BATCH, "succeeded": REQUESTS_PER_BATCH if ended else 0,
                      "errored": 0, "canceled": 0, "expired": 0}
            store.attach_batch(intent, {"id": batch_id, "created_at": store_mod.now_iso(),
                                        "processing_status": "ended" if ended else "in_progress",
                                        "request_counts": counts})
            if ended:
                ids = [r["id"] for r in store.requests_of_intent(intent)]
                store.record_results([{"id": i, "outcome": "succeeded", "input_tokens": 2000, "output_tokens": 900,
                                       "cache_read_tokens": 1500, "stop_reason": "end_turn", "output_sha256": "0" * 64,
                                       "written_at": store_mod.now_iso()} for i in ids])
                store.move_batch(batch_id, BatchState.RETRIEVED)
                store.move_stage(stage["id"], StageState.DONE)
            batches += 1
            requests += REQUESTS_PER_BATCH
        if not running:
            store.move_job(job_id, JobState.DONE)
    store_mod.now_iso = real_now_iso
    shown = sum(1 for j in store.list_jobs(include_finished=False))
    ctx.close()
    return {"jobs": jobs, "batches": batches, "requests": requests, "days": days, "jobs_shown_by_list": shown}


def build_big_store(root: Path, n: int) -> dict:
    """One active job of n requests in two batches (what `submit requests` of n makes): the first batch
    retrieved with usage, the second still running."""
    os.environ["TEGBATCHD_HOME"] = str(root / "home")
    from tegbatchd.context import Context

    ctx = Context()
    store = ctx.store
    store.conn.execute("PRAGMA synchronous=OFF")
    data = root / "data"
    store.create_job("job_big", "requests", f"{n:,} requests", {"source": "r.jsonl", "output": "out/{custom_id}.md",
                                                               "label": "requests"}, str(data), ["requests"])
    stage = store.stages("job_big")[0]
    half = n // 2
    from tegbatchd.engine.states import BatchState
    from tegbatchd.store import PlannedIntent

    planned = [PlannedIntent(str(root / "archive.jsonl"), 800_000,
                             [(f"r{part}-{k:06d}", str(data / "out" / f"r{part}-{k:06d}.md"), "claude-sonnet-5-5", 400)
                              for k in range(half)]) for part in range(2)]
    for part, intent in enumerate(store.record_stage(stage["id"], planned, [])):
        ended = part == 0
        store.attach_batch(intent, {"id": f"msgbatch_big{part}", "created_at": "2026-12-01T00:00:00Z",
                                    "processing_status": "ended" if ended else "in_progress",
                                    "request_counts": {"processing": 0 if ended else half,
                                                       "succeeded": half if ended else 0,
                                                       "errored": 0, "canceled": 0, "expired": 0}})
        if ended:
            ids = [r[0] for r in store.conn.execute("SELECT id FROM requests WHERE intent_id=?", (intent,))]
            for start in range(0, len(ids), 500):
                store.record_results([{"id": i, "outcome": "succeeded" if i % 50 else "errored",
                                       "input_tokens": 200, "output_tokens": 90, "written_at": "2026-12-01T01:00:00Z"}
                                      for i in ids[start:start + 500]])
            store.move_batch(f"msgbatch_big{part}", BatchState.RETRIEVED)
    ctx.close()
    return {"jobs": 1, "batches": 2, "requests": 2 * half}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs of 2 batches each (default 500: 1,000 batches)")
    parser.add_argument("--days", type=float, default=180, help="history spread over this many days (default 180)")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--big", type=int, default=200_000, help="requests of the one-job store (0: skip)")
    args = parser.parse_args()
    compileall.compile_dir(str(REPO / "tegbatchd"), quiet=1)
    tool = str(Path(PY).parent / "tegbatchd")  # the installed console script, as a person runs it
    with workspace("startup") as root:
        built = in_child(build_store, root, args.jobs, args.days)
        env = tool_env(root)
        commands = {
            "baseline: python -c 'import sqlite3, yaml, platformdirs'": [PY, "-c", "import sqlite3, yaml, platformdirs"],
            "tegbatchd list": [tool, "list"],
            "tegbatchd list --all": [tool, "list", "--all"],
            "tegbatchd --version": [tool, "--version"],
        }
        big_env = None
        if args.big:
            (root / "big").mkdir()
            big = in_child(build_big_store, root / "big", args.big)
            big_env = tool_env(root / "big")
            commands[f"tegbatchd list (one job of {big['requests']:,} requests)"] = [tool, "list"]
        runs: dict[str, list] = {name: [] for name in commands}
        check(measure("warm-up", commands["tegbatchd list"], env=env))
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(check(measure(name, cmd, env=big_env if "one job" in name else env)))
        lines = runs["tegbatchd list"][0].stdout.count("\n")
    rows = []
    summary = {}
    for name, rs in runs.items():
        wall = statistics.median(r.wall_s for r in rs)
        summary[name] = {"median_wall_s": round(wall, 4), "min_wall_s": min(r.wall_s for r in rs),
                         "median_cpu_s": round(statistics.median(r.cpu_s for r in rs), 4),
                         "peak_rss_mb": max(r.peak_rss_mb for r in rs)}
    base = summary["baseline: python -c 'import sqlite3, yaml, platformdirs'"]["median_wall_s"]
    for name, s in summary.items():
        rows.append([name, s["median_wall_s"], s["min_wall_s"], s["median_cpu_s"], s["peak_rss_mb"],
                     round(s["median_wall_s"] / base, 2)])
    ratio = summary["tegbatchd list"]["median_wall_s"] / base
    ratio_all = summary["tegbatchd list --all"]["median_wall_s"] / base
    checks = {"list_vs_baseline": {"value": round(ratio, 2), "target": "<= 2.0", "ok": ratio <= 2.0},
              **{f"{name} vs baseline": {"value": round(s["median_wall_s"] / base, 2), "target": "<= 2.0",
                                         "ok": s["median_wall_s"] / base <= 2.0}
                 for name, s in summary.items() if "one job" in name},
              "list_all_vs_baseline (stress, no target)": {"value": round(ratio_all, 2), "target": "-", "ok": True}}
    print(f"store: {built['jobs']} jobs, {built['batches']:,} batches, {built['requests']:,} requests over "
          f"{args.days:g} days; `list` shows {built['jobs_shown_by_list']} job(s) ({lines:,} lines), "
          f"`list --all` all of them; medians of {args.repeat} alternating runs")
    print(table(["command", "median s", "min s", "cpu s", "peak RSS MB", "x baseline"], rows))
    print()
    print(table(["check", "value", "target", "verdict"],
                [[k, v["value"], v["target"], verdict(v["ok"], v["target"])] for k, v in checks.items()]))
    print("results:", save("startup", {"store": built, "repeat": args.repeat, "commands": summary, "checks": checks,
                                       "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
