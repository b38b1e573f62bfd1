"""Print the Markdown tables of BENCHMARKS.md from benchmarks/results/*.json (the latest run of each)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ("retrieval", "submission", "polling", "startup", "daemon_idle", "latency")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def main() -> None:
    results = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}
    some = next(iter(results.values()), None)
    if some:
        m = some["machine"]
        print(f"Machine: {m['cpu']}, {m['nproc']} cores, {m['memory_gb']} GB, Python {m['python']}, "
              f"anthropic {m['anthropic']}, Linux {m['kernel']}\n")
    print("| benchmark | check | measured | target | verdict | run at |")
    print("|---|---|---|---|---|---|")
    for name in ORDER:
        r = results.get(name)
        if not r:
            print(f"| {name} | (not run) | | | | |")
            continue
        for check, c in r.get("checks", {}).items():
            verdict = "(info)" if c["target"] == "-" else "pass" if c["ok"] else "**MISS**"
            print(f"| {name} | {check} | {_fmt(c['value'])} | {c['target']} | {verdict} | {r['at']} |")
    if "retrieval" in results:
        print("\nRetrieval runs (each a subprocess; peak RSS = its VmHWM):\n")
        print("| N | run | wall s | CPU s | peak RSS MB | files |")
        print("|---|---|---|---|---|---|")
        for run in results["retrieval"]["runs"]:
            print(f"| {run['n']:,} | {run['what']} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                  f"{run['peak_rss_mb']:.0f} | {run['files']:,} |")
    if "submission" in results:
        print("\nSubmission runs (command to recorded batch ids):\n")
        print("| case | run | batches | wall s | CPU s | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for run in results["submission"]["runs"]:
            print(f"| {run['case']} | {run['what']} | {run['batches']} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                  f"{run['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
