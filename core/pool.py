"""The embedded worker pool: starts, supervises and cleanly stops the worker processes (core.worker) of an app.

Workers are started with the `spawn` method: a process that ran torch's threaded code and then forks can deadlock,
and CUDA cannot be re-initialised in a forked child.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path
from typing import Any

from core.jobs import Lab, WorkerId, process_exists
from core.store import DiskStore
from core.worker import CHECKPOINT_EVERY_SECONDS, saver_main, worker_main

log = logging.getLogger(__name__)

SAVER_AFTER = 2.0  # seconds a stop waits for a free worker before a saver is started (idle workers poll at 0.2 s)


def default_threads(workers: int) -> int:
    """Leave one core to the web server on a CPU machine."""
    cores = os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, workers))


class WorkerPool:
    """Starts, supervises and cleanly stops the embedded worker processes."""

    def __init__(self, data_dir: str | Path, workers: int = 1, threads: int | None = None,
                 checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS):
        self.checkpoint_seconds = checkpoint_seconds
        self.data_dir = str(data_dir)
        self.n_workers = max(1, workers)
        self.threads = threads or default_threads(self.n_workers)
        self.context = mp.get_context("spawn")
        self.processes: list[Any] = []
        self.savers: list[Any] = []  # at most one: a saver saves every waiting stop before it exits
        self._stops_seen: dict[str, float] = {}  # job waiting to be saved -> when the supervisor first saw it
        self.lab = Lab(DiskStore(self.data_dir))
        self._supervisor: threading.Thread | None = None
        self._closing = threading.Event()

    def _spawn(self) -> Any:
        args = (self.data_dir, self.threads, self.checkpoint_seconds)
        process = self.context.Process(target=worker_main, args=args, name="lab-worker", daemon=False)
        process.start()
        return process

    def alive_pids(self) -> set[int]:
        return {p.pid for p in self.processes + self.savers if p.is_alive()}

    def _is_alive(self, worker: dict[str, Any]) -> bool:
        if worker.get("host") != WorkerId.here().host:
            return True  # another machine's worker: judged by its heartbeat
        own = {p.pid: p for p in self.processes + self.savers}
        if worker.get("pid") in own:
            return own[worker["pid"]].is_alive()
        # another app's worker on this data dir, or one left running by an app killed hard: each pool took the
        # other's jobs every second. A reused pid passes, and the heartbeat's age then decides.
        return process_exists(worker.get("pid"))

    def start(self) -> WorkerPool:
        self.lab.recover(is_alive=self._is_alive)
        self.processes = [self._spawn() for _ in range(self.n_workers)]
        self._supervisor = threading.Thread(target=self._supervise, name="lab-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._closing.wait(1.0):
            for i, process in enumerate(self.processes):
                if not process.is_alive() and not self._closing.is_set():
                    log.warning("worker %s exited (code %s); starting another", process.pid, process.exitcode)
                    self.processes[i] = self._spawn()
            try:
                self.lab.recover(is_alive=self._is_alive)
                self._save_waiting_stops()
            except Exception:  # never let supervision die on a transient store error
                log.exception("recovery check failed")

    def _save_waiting_stops(self) -> None:
        """Stop on a paused run needs a process to write its run files from its checkpoint: when that has waited
        SAVER_AFTER seconds (every worker busy training), a saver does it, instead of the user waiting for a
        training run to end."""
        self.savers = [p for p in self.savers if p.is_alive()]
        clock = time.monotonic()
        waiting = self.lab.waiting_to_be_saved()
        self._stops_seen = {job_id: self._stops_seen.get(job_id, clock) for job_id in waiting}
        overdue = any(clock - seen >= SAVER_AFTER for seen in self._stops_seen.values())
        if self.savers or self._closing.is_set() or not overdue or not self._all_busy():
            return
        args = (self.data_dir, self.threads, self.checkpoint_seconds)
        saver = self.context.Process(target=saver_main, args=args, name="lab-saver", daemon=False)
        saver.start()
        self.savers.append(saver)
        log.info("saver %s started for %d stopped job(s) while the workers are busy", saver.pid, len(waiting))

    def _all_busy(self) -> bool:
        """Every worker of the pool is training a run (one starting up, or between jobs, takes the stop itself)."""
        here = WorkerId.here().host
        training = {m["trained_by"]["pid"] for m in self.lab.list()
                    if m["status"] == "running" and (m.get("trained_by") or {}).get("host") == here}
        return all(p.pid in training for p in self.processes)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask workers to checkpoint and exit (SIGTERM); kill any that have not within the timeout."""
        self._closing.set()
        if self._supervisor is not None:  # so that it starts no worker while they are being stopped
            self._supervisor.join(timeout=10)
        processes = self.processes + self.savers
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                log.warning("worker %s did not stop in %.0f s; killing it", process.pid, timeout)
                process.kill()
                process.join(5)
        self.processes, self.savers = [], []
