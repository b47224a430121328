"""Wall time of a 6-value learning-rate sweep trained batched (one job on the runs axis) vs one run
after another, at quick scale and at paper shapes for a fixed number of steps.

    .venv/bin/python -m benchmarks.bench_sweep [--steps 512] [--paper-steps 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from core.presets import LR_VALUES, PAPER_BATCHES
from core.sweep import Sweep
from core.train import Trainer


def timed(configs: list, steps: int) -> float:
    trainer = Trainer(configs)
    trainer.advance(2)  # warm-up: allocations, first LAMB step
    started = time.perf_counter()
    trainer.advance(steps)
    return time.perf_counter() - started


def compare(name: str, sweep: Sweep, steps: int, rounds: int) -> None:
    configs = sweep.configs()
    # Interleaved rounds, medians: this VM's speed drifts by tens of percent over minutes.
    batched, sequential = [], []
    for _ in range(rounds):
        batched.append(timed(configs, steps))
        sequential.append(sum(timed([c], steps) for c in configs))
    b, s = statistics.median(batched), statistics.median(sequential)
    print(f"{name}: {len(configs)} runs x {steps} steps: batched {b:.2f} s, sequential {s:.2f} s, "
          f"batched is {s / b:.2f}x faster  [medians of {rounds} interleaved rounds]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=512, help="steps per run at quick scale")
    parser.add_argument("--paper-steps", type=int, default=8, help="steps per run at paper shapes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    quick = PAPER_BATCHES["LR3"].quick()
    compare("quick (N=128, m=16, k=256, batch 512)", Sweep(quick.base.replace(device=device), "lr", LR_VALUES),
            args.steps, args.rounds)
    for batch_size in (1024, 8192):
        paper = PAPER_BATCHES["LR3"].base.replace(batch_size=batch_size, device=device)
        compare(f"paper shapes (N=512, m=64, k=1024, batch {batch_size})", Sweep(paper, "lr", LR_VALUES),
                args.paper_steps, args.rounds)


if __name__ == "__main__":
    main()
