"""What publishing a live snapshot costs a training worker, against the training it interrupts.

A worker publishes every `snapshot_every` steps and at most once a second in between: the SFA matrix
and metrics (`Trainer.snapshot`), then the store writes (loss chunk, float32 latest SFA, float16 frames, metadata).
This times the worker's own `JobRunner._publish` on a diskcache store, after one more training step each.

    .venv/bin/python -m benchmarks.bench_snapshot
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import threading
import time

import torch

from core.config import RunConfig
from core.jobs import Lab, WorkerId
from core.store import DiskStore
from core.worker import JobRunner

SHAPES = {
    "quick (N=128, m=16, k=256, batch 512)": RunConfig(n_features=128, embed_dim=16, n_neurons=256, batch_size=512,
                                                       steps=8192, snapshot_every=256),
    "paper (N=512, m=64, k=1024, batch 8192)": RunConfig(n_features=512, embed_dim=64, n_neurons=1024,
                                                         batch_size=8192, steps=1 << 17, snapshot_every=1024),
}


def main() -> None:
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device cpu")
    for name, config in SHAPES.items():
        config = config.replace(init_bias=-1.0, bias_decay=0.12, device="cpu")
        with tempfile.TemporaryDirectory() as directory:
            lab = Lab(DiskStore(directory))
            run_id = lab.submit(config)
            job_id, _ = lab.claim(WorkerId.here())
            runner = JobRunner(lab, job_id, [run_id], threading.Event())
            steps, publishes = [], []
            for _ in range(8):
                started = time.perf_counter()
                runner.trainer.advance(1)
                steps.append(time.perf_counter() - started)
                started = time.perf_counter()
                runner._publish()
                publishes.append(time.perf_counter() - started)
        step, publish = statistics.median(steps), statistics.median(publishes)
        # the worker publishes every snapshot_every steps, and at least once a second
        interval = min(1.0, config.snapshot_every * step)
        print(f"{name}: a step {1000 * step:.1f} ms, a published snapshot {1000 * publish:.1f} ms: "
              f"{100 * publish / (interval + publish):.1f}% of the worker's time at one per "
              f"{'second' if interval == 1.0 else f'{config.snapshot_every} steps'}")


if __name__ == "__main__":
    main()
