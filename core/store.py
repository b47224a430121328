"""Persistent run store. Embedded default: diskcache (SQLite + files, process-safe, survives restarts).

Layout of keys (values are plain dicts, numpy arrays and bytes):
    index                 list of run ids, oldest first
    queue                 list of job ids waiting for a worker, oldest first
    meta/<run>            config, status (queued, running, paused, done, failed, stopped, interrupted),
                          progress, latest metrics, error
    job/<job>             run ids trained together, control flag, worker, heartbeat
    chunk/<run>/<n>       per-step losses and one metrics point per snapshot, in order
    sfa/<run>             the latest SFA matrix (float32; replay frames are float16)
    frame/<run>/<step>    SFA at stored checkpoint steps (for the replay slider)
    ckpt/<job>            the trainer state to resume from (bytes)
    file/<run>            the finished run file (bytes)
    start/<run>           a continued run's starting weights (bytes; core.continuation)
Every multi-key update happens inside one transaction, so a killed process leaves no half-written record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import diskcache


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def valid_id(run_id: str) -> bool:
    """Ids are 12 lowercase hex characters: nothing path-like ever reaches a key."""
    return isinstance(run_id, str) and len(run_id) == 12 and all(c in "0123456789abcdef" for c in run_id)


_MISSING = object()


class DiskStore:
    """Key-value operations the jobs layer needs, on a diskcache directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()  # "~/..." from a script or env var: the home, not a "~" folder
        self.directory.mkdir(parents=True, exist_ok=True)
        # A generous timeout: workers and the web server write concurrently.
        self.cache = diskcache.Cache(str(self.directory), timeout=60, size_limit=2**40, eviction_policy="none")

    def get(self, key: str, default: Any = None) -> Any:
        # diskcache keeps large values in files, and answers `default` when a writer replaces the file between
        # its lookup and its read: a key that exists is read again (a live snapshot flickered out otherwise).
        for _ in range(5):
            value = self.cache.get(key, _MISSING)
            if value is not _MISSING:
                return value
            if key not in self.cache:
                return default
        return default

    def set(self, key: str, value: Any) -> None:
        self.cache.set(key, value)

    def delete(self, key: str) -> None:
        self.cache.delete(key)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.cache.transact():
            yield

    def volume_bytes(self) -> int:
        return int(self.cache.volume())

    def close(self) -> None:
        self.cache.close()


def now() -> float:
    return time.time()
