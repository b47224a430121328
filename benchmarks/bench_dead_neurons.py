"""Whole runs with and without leaving dead ReLU neurons out of the large matmuls (CPU).

With a negative initial bias no neuron fires until the bias has decayed, and some stay dead after;
the engine then skips them (core.step.live_neurons). This trains each preset twice, alternating
chunks of steps between the two trainers so that this VM's drifting speed hits both alike, and
prints the time of each and the share of live neurons over the run. `--by-share` instead times one
forward-backward pass with a given share of live neurons, skipping and dense, at quick and paper
shapes: where skipping breaks even (core.step.MAX_LIVE_SHARE_TO_COMPACT).

    .venv/bin/python -m benchmarks.bench_dead_neurons [--configs quick-negative-bias ...] [--chunk 256]
    .venv/bin/python -m benchmarks.bench_dead_neurons --by-share
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from core.config import RunConfig
from core.presets import PAPER_BATCHES, PRESETS, QUICK_STEPS
from core.step import Gradients, Workspace, squared_error_and_gradients
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


def pass_times_by_live_share(batch: int, n_features: int, embed_dim: int, n_neurons: int, rounds: int = 3) -> None:
    """Milliseconds of one forward-backward pass, skipping vs dense, for shares of live neurons."""
    g = torch.Generator().manual_seed(0)
    ws = Workspace.allocate(1, batch, embed_dim, n_neurons, n_features, torch.device("cpu"))
    ws.x.copy_(torch.randn(1, batch, embed_dim, generator=g) * 0.2)
    target = torch.rand(1, batch, n_features, generator=g)  # copied in before each pass: the step overwrites it
    w1 = torch.randn(1, n_neurons, embed_dim, generator=g) * 0.1
    w2 = torch.randn(1, n_features, n_neurons, generator=g) * 0.1
    grads = Gradients.like(w1, torch.zeros(1, n_neurons), w2)
    for share in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):
        b1 = torch.zeros(1, n_neurons)
        b1[0, int(share * n_neurons):] = -100.0  # these never fire
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for skip in (False, True):
                def one_pass(skip: bool = skip, b1: torch.Tensor = b1) -> None:
                    ws.target.copy_(target)
                    squared_error_and_gradients(ws, w1, b1, w2, "relu", None, grads, skip_dead_neurons=skip,
                                                max_live_share=1.0)

                one_pass()
                count, started = 0, time.perf_counter()
                while time.perf_counter() - started < 0.4:
                    one_pass()
                    count += 1
                times[skip].append(1e3 * (time.perf_counter() - started) / count)
        dense, skipping = statistics.median(times[False]), statistics.median(times[True])
        print(f"  {100 * share:.0f}% live: dense {dense:.2f} ms, skipping {skipping:.2f} ms ({skipping / dense:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), choices=sorted(CONFIGS))
    parser.add_argument("--chunk", type=int, default=256, help="steps per alternation")
    parser.add_argument("--by-share", action="store_true", help="time one pass by share of live neurons instead")
    args = parser.parse_args()
    print(f"cpu, {torch.get_num_threads()} threads")
    if args.by_share:
        for name, shapes in (("quick shapes (N=128, m=16, k=256, batch 512)", (512, 128, 16, 256)),
                             ("paper shapes (N=512, m=64, k=1024, batch 1024)", (1024, 512, 64, 1024))):
            print(name)
            pass_times_by_live_share(*shapes)
        return
    for name in args.configs:
        config = CONFIGS[name].replace(device="cpu")
        skipping, dense = Trainer([config]), Trainer([config])
        skipping.skip_dead_neurons, dense.skip_dead_neurons = True, False  # both ways, whatever the engine picks
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
