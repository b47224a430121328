"""Runs per minute with 1 and 2 Celery workers at quick scale, on this machine.

Starts a Redis and the workers on 127.0.0.1 (as the tests do), queues the same runs for each worker
count, and times them to the last one done.

    .venv/bin/python -m benchmarks.bench_celery [--runs 4] [--steps 2048]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from core.distributed import lab_for
from core.presets import PRESETS
from tests.servers import CeleryWorker, RedisServer


def measure(workers: int, runs: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        started_workers = [CeleryWorker(server.url, f"bench{i}", Path(directory) / f"w{i}.log")
                           for i in range(workers)]
        try:
            lab = lab_for(server.url)
            time.sleep(8)  # let the workers finish importing torch before the clock starts
            config = PRESETS["quick-negative-bias"].config.replace(steps=steps, snapshot_every=256, device="cpu")
            started = time.perf_counter()
            ids = [lab.submit(config.replace(seed=s)) for s in range(runs)]
            while not all(lab.get(r)["status"] == "done" for r in ids):
                time.sleep(0.2)
            return runs / ((time.perf_counter() - started) / 60)
        finally:
            for worker in started_workers:
                worker.stop()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2048)
    args = parser.parse_args()
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores); quick-negative-bias with "
          f"{args.steps} steps, {args.runs} runs, 1 torch thread per worker")
    rates = {n: measure(n, args.runs, args.steps) for n in (1, 2)}
    for n, rate in rates.items():
        print(f"{n} worker(s): {rate:.2f} runs/minute")
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
