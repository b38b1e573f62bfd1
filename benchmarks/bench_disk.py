"""The machine's part of retrieval: N files of about 2 KB created on this disk with nothing else (no
network, no JSON), the floor's way and ours, in one process, the variants alternating.

    python benchmarks/bench_disk.py [--n 30000] [--repeat 3]

  plain        open(path, "w").write(text)                      (what the streamed floor does per file)
  atomic       temp file (O_EXCL|O_NOFOLLOW via the folder fd) + rename, one os.sync per 500
  anonymous    O_TMPFILE file + link into place, one syncfs per 500 (the durable floor's way)
  ours         tegbatchd.writer.Writer: put() per file, a sync per 500 waited for by its sync thread (as retrieve)

No target: it shows how much of a retrieve's wall time is file creation and syncing on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, save, table

sys.path.insert(0, str(REPO))
TEXT = "x" * 2000


def plain(folder: Path, n: int) -> None:
    for i in range(n):
        with open(f"{folder}/f{i:06d}.md", "w") as fh:
            fh.write(TEXT)


def anonymous(folder: Path, n: int) -> None:
    import ctypes

    syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    data = TEXT.encode()
    for i in range(n):
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=dfd)
        os.write(fd, data)
        os.link(f"/proc/self/fd/{fd}", f"f{i:06d}.md", dst_dir_fd=dfd, follow_symlinks=True)
        os.close(fd)
        if i % 500 == 499:
            syncfs(dfd)
    syncfs(dfd)
    os.close(dfd)


def atomic(folder: Path, n: int) -> None:
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    data = TEXT.encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    for i in range(n):
        name = f"f{i:06d}.md"
        tmp = f".{name}.tmp-{os.getpid()}"
        fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
        os.write(fd, data)
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        if i % 500 == 499:
            os.sync()
    os.sync()
    os.close(dfd)


def ours(folder: Path, n: int) -> None:
    """As retrieve does it: each file put() by this thread, every 500 a sync by a helper thread (the one
    before it waited for first)."""
    from concurrent.futures import ThreadPoolExecutor

    from tegbatchd.writer import Writer

    with Writer(folder) as writer, ThreadPoolExecutor(1) as syncer:
        flying = None
        for i in range(n):
            writer.put(f"{folder}/f{i:06d}.md", TEXT, i)
            if (i + 1) % 500 == 0 or i + 1 == n:
                writer.collect(500)
                if flying is not None:
                    flying.result()
                flying = syncer.submit(writer.sync)
        if flying is not None:
            flying.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    variants = {"plain": plain, "atomic": atomic, "anonymous": anonymous, "ours": ours}
    times: dict[str, list[float]] = {k: [] for k in variants}
    base = Path(tempfile.mkdtemp(prefix="tegbench-disk-"))
    try:
        for attempt in range(args.repeat):
            for name, fn in variants.items():
                folder = base / f"{name}-{attempt}"
                folder.mkdir()
                os.sync()
                start = time.perf_counter()
                fn(folder, args.n)
                times[name].append(round(time.perf_counter() - start, 3))
                # (kept until the end: deleting 30,000 files keeps this filesystem busy for seconds after,
                # which fell on the next variant's run)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.n:,} files of 2 KB, medians of {args.repeat} alternating runs; load {os.getloadavg()}")
    print(table(["variant", "median s", "runs", "x plain"],
                [[k, med[k], times[k], round(med[k] / med["plain"], 2)] for k in variants]))
    print("results:", save("disk", {"n": args.n, "runs": times, "medians": med}))


if __name__ == "__main__":
    main()
