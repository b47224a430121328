"""Train quick-zero-bias, then continue it with a bias push and/or bias decay, and print the README's rows.

    .venv/bin/python -m benchmarks.measure_basin_moves [--seeds 0 1] [--steps 8192]

Can a model trained into the polysemantic basin (zero bias) be moved into the monosemantic one by what makes a
fresh run choose it, a negative bias with bias decay? Each continued run starts from the parent's final weights
(core.continuation; a change of init_bias pushes the trained biases by the difference) with a fresh schedule and
optimiser, as the dashboard's Continue does. The continued runs of a seed train stacked (the same numbers as one
by one). Each cell: final loss / mono per feature / neurons with r > 0.9 / dead neurons.
"""

from __future__ import annotations

import argparse

from core.config import RunConfig
from core.continuation import bias_push, pushed
from core.metrics import SfaSummary
from core.model import RunWeights
from core.presets import QUICK_PRESETS
from core.train import Trainer

NEGATIVE = QUICK_PRESETS["quick-negative-bias"].config
MOVES = {  # row name: what the continued run changes
    "continued, nothing changed": {},
    f"continued, bias decay {NEGATIVE.bias_decay:g}": {"bias_decay": NEGATIVE.bias_decay},
    f"continued, biases pushed by {NEGATIVE.init_bias:g}": {"init_bias": NEGATIVE.init_bias},
    f"continued, pushed by {NEGATIVE.init_bias:g} and decay {NEGATIVE.bias_decay:g}":
        {"init_bias": NEGATIVE.init_bias, "bias_decay": NEGATIVE.bias_decay},
}


def cell(trainer: Trainer, run: int) -> str:
    summary = SfaSummary.of(trainer.sfa()[run])
    return (f"{trainer.final_loss(run):.3f} / {summary.mono_ratio:.3f} / {summary.nearly_mono_neurons} / "
            f"{summary.dead_neurons}")


def trained(configs: list[RunConfig], starts: list[RunWeights] | None = None) -> Trainer:
    trainer = Trainer(configs, starts=starts)
    trainer.advance(configs[0].steps)
    return trainer


def measure(seed: int, steps: int) -> dict[str, str]:
    parent_config = QUICK_PRESETS["quick-zero-bias"].config.replace(seed=seed, device="cpu")
    parent = trained([parent_config])
    final = RunWeights(*(t.detach().clone() for t in parent.weights[0].tensors()))
    configs = [parent_config.replace(steps=steps, **changes) for changes in MOVES.values()]
    continued = trained(configs, [pushed(final, bias_push(parent_config, c)) for c in configs])
    fresh = trained([NEGATIVE.replace(seed=seed, device="cpu")])
    return {"parent, `quick-zero-bias`": cell(parent, 0),
            **{name: cell(continued, i) for i, name in enumerate(MOVES)},
            "fresh run, `quick-negative-bias` (not continued)": cell(fresh, 0)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=QUICK_PRESETS["quick-zero-bias"].config.steps,
                        help="steps of each continued run")
    args = parser.parse_args()
    columns = [measure(seed, args.steps) for seed in args.seeds]
    print("| run | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for row in columns[0]:
        print(f"| {row} | " + " | ".join(column[row] for column in columns) + " |")


if __name__ == "__main__":
    main()
