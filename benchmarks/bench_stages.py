"""Retrieval's work split into its stages, each run alone in this process, beside the floor's two stages:
where the per-result CPU goes (no target; it explains bench_retrieval's ratios).

    python benchmarks/bench_stages.py [--n 30000] [--disk]

Files go to /dev/shm (tmpfs: the kernel's part small and steady) unless --disk. The emulator runs in its
own process, as in bench_retrieval. Stages: the floor's read + iter_lines + json.loads and its
open().write(); ours: reading the lines (api.result_lines), parsing them, looking them up in the store,
settling each into its record, handing each file to the write helper (and, apart, writing it in this
process), and recording the groups.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from _common import check, emulator, measure, save, small_requests, table, tegbatchd, tool_env, workspace


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--disk", action="store_true", help="files on the workspace's disk, not /dev/shm")
    args = parser.parse_args()
    n = args.n
    stages: dict[str, tuple[float, float]] = {}

    def timed(name: str, start: tuple[float, float]) -> None:
        end = _clock()
        stages[name] = (round(end[0] - start[0], 3), round(end[1] - start[1], 3))

    with workspace("stages") as root, emulator("--process-seconds", "0", "--answer-bytes", "2000") as emu:
        files = root / "data" if args.disk or not os.path.isdir("/dev/shm") else None
        data_root = str(files) if files else tempfile.mkdtemp(prefix="tegbench-stages-", dir="/dev/shm")
        try:
            env = tool_env(root, emu.url, TEGBATCHD_DATA_DIR=data_root)
            reqs = small_requests(root / "req.jsonl", n, prefix="s")
            sub = check(measure("submit", tegbatchd("submit", "requests", str(reqs), "--output",
                                                    "o/{custom_id}.md", "--json"), env=env))
            batch_id = json.loads(sub.stdout)["batch_ids"][0]
            os.environ.update(env)
            import anthropic

            from tegbatchd import polling, retrieval
            from tegbatchd.context import Context
            from tegbatchd.outputs import message_text
            from tegbatchd.writer import Writer

            sdk = anthropic.Anthropic()
            start = _clock()
            with sdk.messages.batches.with_streaming_response.results(batch_id) as response:
                floor_lines = [json.loads(line) for line in response.iter_lines() if line]
            timed("floor: read, iter_lines, json.loads", start)
            os.makedirs(f"{data_root}/floor")
            start = _clock()
            for obj in floor_lines:
                with open(f"{data_root}/floor/{obj['custom_id']}.md", "w") as fh:
                    fh.write("\n\n".join(b["text"] for b in obj["result"]["message"]["content"] if b["type"] == "text"))
            timed("floor: open().write()", start)
            del floor_lines

            ctx = Context()
            client = polling.make_client(ctx)
            store = ctx.store
            intent_id = store.get_batch(batch_id)["intent_id"]
            start = _clock()
            raw = list(client.result_lines(batch_id))
            timed("ours: read the lines (result_lines)", start)
            start = _clock()
            parsed = [retrieval._parse(line) for line in raw]
            timed("ours: parse (_parse)", start)
            del raw
            start = _clock()
            rows = {}
            for i in range(0, len(parsed), retrieval.LOOKUP):
                rows.update(store.retrieval_lookup(intent_id, [p[0] for p in parsed[i:i + retrieval.LOOKUP] if p]))
            timed("ours: look up (retrieval_lookup)", start)
            start = _clock()
            items = []
            at = retrieval.now_iso()
            for cid, result in (p for p in parsed if p):
                message = result["message"]
                items.append((retrieval.succeeded_record(rows[cid].id, message, at), rows[cid].output_path,
                              message_text(message)))
            timed("ours: settle into records (tokens, text)", start)
            del parsed
            for helper, name in ((True, "ours: hand each file to the write helper"),
                                 (False, "ours: write each file in this process")):
                writer = Writer(data_root, helper=helper)
                start = _clock()
                for k, (record, path, text) in enumerate(items, start=1):
                    writer.put(path.replace("/o/", f"/o-{helper}/"), text, record["id"])
                    if k % retrieval.GROUP == 0:
                        writer.mark()
                        if k > retrieval.GROUP:
                            writer.collect(retrieval.GROUP)
                writer.done()
                writer.close()
                timed(name, start)
            start = _clock()
            with store.synced_by_caller():
                for i in range(0, len(items), retrieval.GROUP):
                    store.record_results([r for r, _, _ in items[i:i + retrieval.GROUP]])
            timed("ours: record the groups (record_results)", start)
        finally:
            if not files:
                shutil.rmtree(data_root, ignore_errors=True)
    print(f"{n:,} results of about 2 KB, files on {'disk' if files else 'tmpfs'}; each stage alone in this process")
    print(table(["stage", "wall s", "cpu s", "cpu µs per result"],
                [[k, w, c, round(c / n * 1e6, 1)] for k, (w, c) in stages.items()]))
    print("results:", save("stages", {"n": n, "files": "disk" if files else "tmpfs",
                                      "stages": {k: {"wall_s": w, "cpu_s": c} for k, (w, c) in stages.items()}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
