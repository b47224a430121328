"""Train every quick and demo preset once and print the README's preset table rows.

    .venv/bin/python -m benchmarks.measure_presets [--seeds 0 1]

Each row: wall time, final loss (mean squared error over the last 5% of steps), mono neurons per
feature, neurons with r > 0.9 and dead neurons, as the dashboard shows them.
"""

from __future__ import annotations

import argparse
import time

from core.metrics import SfaSummary
from core.presets import QUICK_PRESETS
from core.train import Trainer


def measure(name: str, seed: int) -> str:
    config = QUICK_PRESETS[name].config.replace(seed=seed, device="cpu")
    started = time.perf_counter()
    trainer = Trainer([config])
    trainer.advance(config.steps)
    seconds = time.perf_counter() - started
    summary = SfaSummary.of(trainer.sfa()[0])
    return (f"| `{name}` | seed {seed} | {seconds:.0f} s | {trainer.final_loss(0):.3f} | {summary.mono_ratio:.3f} | "
            f"{summary.nearly_mono_neurons} | {summary.dead_neurons} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--presets", nargs="+", default=list(QUICK_PRESETS))
    args = parser.parse_args()
    print("| preset | seed | time | loss | mono | r > 0.9 | dead |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets:
        for seed in args.seeds:
            print(measure(name, seed), flush=True)


if __name__ == "__main__":
    main()
