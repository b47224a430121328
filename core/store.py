"""Persistent run store. Embedded default: diskcache (SQLite + files, process-safe, survives restarts).

Layout of keys (values are plain dicts, numpy arrays and bytes):
    index                 list of run ids, oldest first
    queue                 list of job ids waiting for a worker, oldest first
    meta/<run>            config, status (queued, running, paused, done, failed, stopped, interrupted),
                          progress, latest metrics, error
    job/<job>             run ids trained together, control flag, worker, heartbeat
    chunk/<run>/<n>       per-step losses and one metrics point per snapshot, in order
    sfa/<run>             the latest SFA matrix (float32; replay frames are float16) and biases
    frame/<run>/<step>    SFA and biases at stored checkpoint steps (for the replay slider)
    ckpt/<job>            the trainer state to resume from (bytes)
    file/<run>            the finished run file (bytes)
    start/<run>           a continued run's starting weights (bytes; core.continuation)
Every multi-key update happens inside one transaction, so a killed process leaves no half-written record.
"""

from __future__ import annotations

import shutil
import threading
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


class _Pending:
    """One transaction's files: removed after its commit, or, rolled back, the new ones removed instead."""

    def __init__(self) -> None:
        self.named: list[str] = []  # files given to new values (written whole, in part, or not at all)
        self.removed: list[str] = []  # files of values replaced or deleted


class TransactionalDisk(diskcache.Disk):
    """diskcache's Disk, whose file removals wait for the transaction to commit.

    diskcache removes a replaced value's file as soon as a write inside a transaction succeeds, before the
    transaction commits: a later write that fails (a full disk) rolls the rows back to values whose files are gone,
    and a checkpoint, a run file or the run index reads back as missing. Here the removals happen after the commit,
    and a rolled-back transaction's new files (and a failed write's partial one) are removed instead."""

    def __init__(self, directory: str, **settings: Any):
        super().__init__(directory, **settings)
        self._local = threading.local()

    def _pending(self) -> _Pending | None:
        return getattr(self._local, "pending", None)

    def in_transaction(self) -> bool:
        return self._pending() is not None

    def begin(self) -> None:
        """Start deferring this thread's file removals (an outermost transaction begins)."""
        self._local.pending = _Pending()

    def end(self, committed: bool) -> None:
        """Remove the files the transaction replaced (committed) or the ones it wrote (rolled back)."""
        pending, self._local.pending = self._pending(), None
        if pending is not None:
            for name in pending.removed if committed else pending.named:
                super().remove(name)

    def filename(self, key: Any = diskcache.core.UNKNOWN, value: Any = diskcache.core.UNKNOWN) -> tuple[str, str]:
        name, full_path = super().filename(key, value)
        pending = self._pending()
        if pending is not None:
            pending.named.append(name)
        return name, full_path

    def remove(self, file_path: str) -> None:
        pending = self._pending()
        if pending is None:
            super().remove(file_path)
        else:
            pending.removed.append(file_path)


class DiskStore:
    """Key-value operations the jobs layer needs, on a diskcache directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()  # "~/..." from a script or env var: the home, not a "~" folder
        self.directory.mkdir(parents=True, exist_ok=True)
        # A generous timeout: workers and the web server write concurrently.
        self.cache = diskcache.Cache(str(self.directory), timeout=60, size_limit=2**40, eviction_policy="none",
                                     disk=TransactionalDisk)

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
        disk = self.cache.disk
        if disk.in_transaction():  # nested: the outermost transaction commits or rolls back
            yield
            return
        disk.begin()
        committed = False
        try:
            with self.cache.transact():
                yield
            committed = True
        finally:
            disk.end(committed)

    def volume_bytes(self) -> int:
        return int(self.cache.volume())

    def clock(self) -> float:
        """Seconds by the clock every process of this lab shares (here one machine's): heartbeats are stamped and
        judged by it."""
        return time.time()

    def free_bytes(self) -> int:
        """Space left on the disk that holds the store."""
        return shutil.disk_usage(self.directory).free

    def close(self) -> None:
        self.cache.close()


def now() -> float:
    return time.time()


LOW_SPACE_BYTES = 512 * 2**20  # a paper-scale checkpoint is tens of MB, a log2-heavy run file hundreds
# kept free beyond what the runs asked for need: SQLite's write-ahead log (up to ~4 MB) and the file system's slack
DISK_SPARE_BYTES = 64 * 2**20


def low_space_message(store: Any) -> str | None:
    """What to tell the user when the store's disk is nearly full, else None (and None for a store on Redis)."""
    free = getattr(store, "free_bytes", None)
    if free is None or free() >= LOW_SPACE_BYTES:
        return None
    return (f"The disk holding the run store ({store.directory}) has under {LOW_SPACE_BYTES // 2**20} MiB free. "
            "Runs that would need more than is left are refused when asked for; one that runs out all the same "
            "(others filled the disk meanwhile) fails saying so, and Retry trains it on from its last checkpoint "
            "once space is freed. Delete runs you no longer need, or free space on that disk.")


def size_text(size: float) -> str:
    """Bytes as a message gives them: GiB to two decimals, or MiB under one GiB."""
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
