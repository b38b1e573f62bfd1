"""Naive baselines, each run as its own process by the benchmarks (so each gets its own peak RSS).

    python benchmarks/baselines.py sdk-loop     BATCH_ID OUT_DIR   # for r in client.messages.batches.results(id)
    python benchmarks/baselines.py stream-floor BATCH_ID OUT_DIR   # with_streaming_response, lines, json.loads
    python benchmarks/baselines.py old-dict     BATCH_ID OUT_DIR   # the old scripts: collect all, then write
    python benchmarks/baselines.py durable-floor BATCH_ID OUT_DIR  # the floor, each file atomic, synced per 500
    python benchmarks/baselines.py sdk-create   REQUESTS.jsonl [MAX_PER_BATCH]  # create(requests=list)
    python benchmarks/baselines.py poll-each    IDS_FILE           # one retrieve per batch

The client comes from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL (the emulator). Each prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

import anthropic


def _client() -> anthropic.Anthropic:
    return anthropic.Anthropic(max_retries=2, timeout=600)


def _text(message) -> str:
    return "\n\n".join(b.text for b in message.content if b.type == "text")


def sdk_loop(batch_id: str, out_dir: str) -> dict:
    """The SDK's default results() iterator, each text written with open().write()."""
    n = 0
    client = _client()  # keep a reference: a collected client closes the stream mid-iteration
    for r in client.messages.batches.results(batch_id):
        if r.result.type == "succeeded":
            with open(f"{out_dir}/{r.custom_id}.md", "w") as fh:
                fh.write(_text(r.result.message))
            n += 1
    return {"written": n}


def _streamed_texts(batch_id: str):
    """(custom_id, text) of each succeeded result: streamed lines, json.loads (the floors' shared part)."""
    client = _client()  # (held by this generator while it streams)
    with client.messages.batches.with_streaming_response.results(batch_id) as response:
        for line in response.iter_lines():
            if not line:
                continue
            obj = json.loads(line)
            result = obj["result"]
            if result["type"] == "succeeded":
                yield obj["custom_id"], "\n\n".join(b["text"] for b in result["message"]["content"]
                                                     if b["type"] == "text")


def stream_floor(batch_id: str, out_dir: str) -> dict:
    """The floor: streamed lines, json.loads, open().write() (no atomicity, no records)."""
    n = 0
    for custom_id, text in _streamed_texts(batch_id):
        with open(f"{out_dir}/{custom_id}.md", "w") as fh:
            fh.write(text)
        n += 1
    return {"written": n}


def durable_floor(batch_id: str, out_dir: str) -> dict:
    """The floor with the durability a retrieval owes and nothing else (no records, no hand-edit checks):
    each file written whole under its name (an anonymous file linked into place, as tegbatchd does on
    Linux), the disk synced (syncfs) after every 500 files. What the guarantees cost on this machine."""
    import ctypes
    import os

    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    folder = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    n = 0
    for custom_id, text in _streamed_texts(batch_id):
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=folder)
        os.write(fd, text.encode())
        os.link(f"/proc/self/fd/{fd}", f"{custom_id}.md", dst_dir_fd=folder, follow_symlinks=True)
        os.close(fd)
        n += 1
        if n % 500 == 0:
            syncfs(folder)
    syncfs(folder)
    os.close(folder)
    return {"written": n}


def old_dict(batch_id: str, out_dir: str) -> dict:
    """The old workflow: every result collected in a dict (custom_id → result), then written."""
    results = {}
    client = _client()
    for r in client.messages.batches.results(batch_id):
        results[r.custom_id] = r
    n = 0
    for custom_id, r in results.items():
        if r.result.type == "succeeded":
            with open(f"{out_dir}/{custom_id}.md", "w") as fh:
                fh.write(_text(r.result.message))
            n += 1
    return {"written": n}


def sdk_create(requests_file: str, max_per_batch: str = "100000") -> dict:
    """Load the whole list, then client.messages.batches.create(requests=list), split at the API limit."""
    with open(requests_file) as fh:
        requests = [json.loads(line) for line in fh if line.strip()]
    limit = int(max_per_batch)
    client = _client()
    ids = []
    for start in range(0, len(requests), limit):
        ids.append(client.messages.batches.create(requests=requests[start:start + limit]).id)
    return {"batch_ids": ids, "requests": len(requests)}


def poll_each(ids_file: str) -> dict:
    """The naive poll: one retrieve per pending batch."""
    with open(ids_file) as fh:
        ids = [line.strip() for line in fh if line.strip()]
    client = _client()
    statuses = [client.messages.batches.retrieve(i).processing_status for i in ids]
    return {"batches": len(ids), "api_calls": len(ids), "in_progress": statuses.count("in_progress")}


COMMANDS = {"sdk-loop": sdk_loop, "stream-floor": stream_floor, "durable-floor": durable_floor, "old-dict": old_dict,
            "sdk-create": sdk_create, "poll-each": poll_each}

if __name__ == "__main__":
    start = time.perf_counter()
    out = COMMANDS[sys.argv[1]](*sys.argv[2:])
    out["seconds"] = round(time.perf_counter() - start, 3)
    print(json.dumps(out))
