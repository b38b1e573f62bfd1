"""Run every benchmark in turn (about 25 minutes with the defaults), then print the summary table.

    python benchmarks/run_all.py [--idle-minutes 10] [--only retrieval,startup,...]

Each benchmark also runs alone (see its --help) and writes benchmarks/results/<name>.json;
benchmarks/report.py turns those files into the table of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-minutes", default="10")
    parser.add_argument("--only", help="comma-separated names, e.g. startup,polling")
    args = parser.parse_args()
    plan = {
        "startup": ["bench_startup.py"],
        "polling": ["bench_polling.py"],
        "latency": ["bench_latency.py"],
        "submission": ["bench_submission.py"],
        "retrieval": ["bench_retrieval.py"],
        "daemon_idle": ["bench_daemon_idle.py", "--minutes", args.idle_minutes],
    }
    chosen = args.only.split(",") if args.only else list(plan)
    for name in chosen:
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        code = subprocess.call([sys.executable, str(HERE / plan[name][0]), *plan[name][1:]], cwd=HERE)
        print(f"=== {name}: exit {code}, {time.monotonic() - started:.0f} s", flush=True)
        if code:
            raise SystemExit(code)
    subprocess.call([sys.executable, str(HERE / "report.py")], cwd=HERE)


if __name__ == "__main__":
    main()
