"""Advisory file locks (flock): released by the OS when a process dies, even by kill -9."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tegbatchd.paths import FILE_MODE, ensure_dir


@contextmanager
def file_lock(path: Path, *, wait: float | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on path. Yields True if acquired.

    wait=None blocks until acquired; wait=0 tries once; wait=S gives up after S seconds (yields False).
    """
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    acquired = False
    try:
        if wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            acquired = True
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    acquired = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
        if acquired:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        yield acquired
    finally:
        if acquired:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock on path now (a shared probe, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
