"""Whole runs with and without leaving dead ReLU neurons out of the large matmuls (CPU).

With a negative initial bias no neuron fires until the bias has decayed, and some stay dead after;
the engine then skips them (core.step.live_neurons). This trains each preset twice, alternating
chunks of steps between the two trainers so that this VM's drifting speed hits both alike, and
prints the time of each and the share of live neurons over the run.

    .venv/bin/python -m benchmarks.bench_dead_neurons [--configs quick-negative-bias ...] [--chunk 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from core.config import RunConfig
from core.presets import PAPER_BATCHES, PRESETS, QUICK_STEPS
from core.train import Trainer

# LR3 at paper shapes, shortened like the quick presets (8192 steps, decay x16 so the bias decays alike).
PAPER_SHAPES_SHORT = "LR3 at paper shapes, 8192 steps, batch 1024"
CONFIGS: dict[str, RunConfig] = {
    **{name: preset.config for name, preset in PRESETS.items() if name.startswith("quick")},
    PAPER_SHAPES_SHORT: PAPER_BATCHES["LR3"].base.replace(steps=QUICK_STEPS, batch_size=1024, snapshot_every=256,
                                                          bias_decay=PAPER_BATCHES["LR3"].base.bias_decay * 16),
}
DEFAULT_CONFIGS = ("quick-negative-bias", "quick-power-law", "quick-abs-negative-bias", "quick-zero-bias",
                   PAPER_SHAPES_SHORT)


def live_share(trainer: Trainer) -> float:
    """Share of neurons some sample of the last batch activated."""
    return (trainer.workspace.pre > 0).any(dim=1).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--chunk", type=int, default=256, help="steps per alternation")
    args = parser.parse_args()
    print(f"cpu, {torch.get_num_threads()} threads")
    for name in args.configs:
        config = CONFIGS[name].replace(device="cpu")
        skipping, dense = Trainer([config]), Trainer([config])
        dense.skip_dead_neurons = False
        seconds = {"skipping": 0.0, "dense": 0.0}
        shares = []
        while skipping.step < config.steps:
            for key, trainer in (("skipping", skipping), ("dense", dense)):
                started = time.perf_counter()
                trainer.advance(args.chunk)
                seconds[key] += time.perf_counter() - started
            shares.append(live_share(skipping))
        by_eighth = np.array_split(np.array(shares), 8)
        print(f"{name}: {seconds['skipping']:.1f} s skipping dead neurons vs {seconds['dense']:.1f} s dense "
              f"({seconds['dense'] / seconds['skipping']:.2f}x); live neurons by eighth of the run: "
              + " ".join(f"{100 * part.mean():.0f}%" for part in by_eighth))


if __name__ == "__main__":
    main()
