"""Cache priming: the cost of the narrative stage with the real request shapes, with and without priming,
on each of the emulator's cache models.

    python benchmarks/bench_priming.py [--answer-bytes 14000]

The 60 real narrative requests (tests/fixtures/anthropic/requests-narrative-60.jsonl: one cached system
block, a user message of story notes and standings each) on claude-sonnet-5-5 (the fixture's
claude-sonnet-4-5 is retired). Each run: a fresh state dir and emulator (`--process-seconds 0`),
`submit requests`, `poll --once` until the job is done, then `tegbatchd costs --json` (the receipt:
recorded usage priced with the shipped table, batch discount applied) beside the dry run's estimates.
Cache models: realistic (the default: an entry exists once the request that wrote it has finished; a
batch's requests never read each other's writes) and optimistic (the first request of a batch writes,
the rest read at once: the best case of best-effort batch caching).
"""

from __future__ import annotations

import argparse
import json

from _common import (
    FIXTURE_60,
    check,
    emulator,
    measure,
    save,
    table,
    tegbatchd,
    tool_env,
    workspace,
    write_config,
)


def _requests(path) -> None:
    out = []
    for line in FIXTURE_60.read_text().splitlines():
        obj = json.loads(line)
        obj["params"]["model"] = "claude-sonnet-5-5"
        out.append(json.dumps(obj))
    path.write_text("\n".join(out) + "\n")


def run(cache_model: str, priming: str, answer_bytes: int) -> dict:
    with workspace("priming") as root, emulator("--process-seconds", "0", "--cache-model", cache_model,
                                                "--answer-bytes", str(answer_bytes)) as emu:
        write_config(root, f"cache_priming: {'auto' if priming == 'on' else 'off'}\n")
        reqs = root / "narrative.jsonl"
        _requests(reqs)
        env = tool_env(root, emu.url)
        out = "commentary/round_reports/{custom_id}.md"
        dry = json.loads(check(measure("dry", tegbatchd("submit", "requests", str(reqs), "--output", out,
                                                        "--dry-run", "--json"), env=env)).stdout)
        sub = json.loads(check(measure("submit", tegbatchd("submit", "requests", str(reqs), "--output", out,
                                                           "--json"), env=env)).stdout)
        for _ in range(4):
            check(measure("poll", tegbatchd("poll", "--once"), env=env))
        status = json.loads(check(measure("status", tegbatchd("status", sub["job_id"], "--json"), env=env)).stdout)
        costs = json.loads(check(measure("costs", tegbatchd("costs", "--json"), env=env)).stdout)["total"]
        return {"cache_model": cache_model, "priming": priming, "state": status["state"],
                "written": status["written"], "batches": len(status["batches"]),
                "estimate_usd": dry["estimated_cost_usd"], "estimate_primed_usd": dry["primed_cost_usd"],
                "cost_usd": costs["cost_usd"], "standard_usd": costs["standard_cost_usd"],
                "hit_rate": costs["cache_hit_rate"], "cache_write_5m": costs["cache_write_5m_tokens"],
                "cache_write_1h": costs["cache_write_1h_tokens"], "cache_read": costs["cache_read_tokens"],
                "input": costs["input_tokens"], "output": costs["output_tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answer-bytes", type=int, default=14000,
                        help="emulated answer size (14,000 bytes ~ 3,500 tokens, like the real reports)")
    args = parser.parse_args()
    runs = [run(model, priming, args.answer_bytes) for model in ("realistic", "optimistic") for priming in ("off", "on")]
    print(table(["cache model", "priming", "batches", "cache w5m", "cache w1h", "cache read", "hit rate",
                 "receipt $", "standard $", "estimate $ (primed)"],
                [[r["cache_model"], r["priming"], r["batches"], r["cache_write_5m"], r["cache_write_1h"],
                  r["cache_read"], f"{r['hit_rate']:.1%}", f"{r['cost_usd']:.4f}", f"{r['standard_usd']:.4f}",
                  f"{r['estimate_usd']:.4f} ({r['estimate_primed_usd']:.4f})"] for r in runs]))
    print(save("priming", {"answer_bytes": args.answer_bytes, "runs": runs}))


if __name__ == "__main__":
    main()
