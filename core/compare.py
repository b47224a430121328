"""Comparing runs: what differs in their configs, neuron alignment by SFA, and the loss along the
straight line between two trained models (is there a barrier between their basins?)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from core.config import FIELDS, RunConfig, shown_value
from core.data import sample_task_batch, task_sampler
from core.metrics import single_feature_activations
from core.model import forward

IGNORED_IN_LABELS = ("device", "snapshot_every")


def differing_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose values are not all equal, in the field table's order."""
    return [name for name in FIELDS if name not in IGNORED_IN_LABELS and len({repr(c[name]) for c in configs}) > 1]


# Fields whose values say what they are ("gelu", "abs", "tf32"): a short label gives the value alone
SELF_NAMED = ("task", "nonlinearity", "precision")
# Which differing fields a short label names first: what a comparison is usually about before what came with it
LABEL_PRIORITY = ("task", "nonlinearity", "init_bias", "bias_decay", "l1_reg", "lr", "n_neurons", "n_features",
                  "embed_dim", "eps", "sample_kind", "init_variant", "precision", "batch_size", "steps", "seed")


def telling_fields(configs: list[dict[str, Any]], fields: list[str]) -> list[str]:
    """Few of `fields` that tell apart every two configs that all of them tell apart, taken in LABEL_PRIORITY's
    order, each where it tells apart a pair the earlier ones left alike; in `fields`' order."""
    def values(i: int, names: list[str]) -> tuple[str, ...]:
        return tuple(repr(configs[i][name]) for name in names)

    pairs = {(i, j) for i in range(len(configs)) for j in range(i + 1, len(configs))
             if values(i, fields) != values(j, fields)}
    chosen = []
    for name in sorted(fields, key=label_rank):
        told = {(i, j) for i, j in pairs if values(i, [name]) != values(j, [name])}
        if told:
            chosen.append(name)
            pairs -= told
    return [name for name in fields if name in chosen]


def label_rank(name: str) -> int:
    return LABEL_PRIORITY.index(name) if name in LABEL_PRIORITY else len(LABEL_PRIORITY)


def run_labels(metas: list[dict[str, Any]], unique: bool = True, width: int | None = None) -> list[str]:
    """Legend entries for runs compared together, e.g. "init_bias=-1, lr=0.01": their differing config fields,
    then where they started, if that differs: "continued" beside runs trained from a fresh init, "from step S"
    among runs continued from other steps. Each run's own label (else id) where none of that tells it apart; with
    `unique`, a run whose entry another shares gets its id added.

    `width` (characters): labels as short as that where they can be. Where naming every differing field would pass
    it, they name the fields that tell the runs apart (`telling_fields`) and the next in LABEL_PRIORITY while they
    fit, then "…" (the Compare table lists them all); a self-named field (SELF_NAMED) gives its value alone. Those
    that tell the runs apart are never left out, so a label may still pass the width."""
    configs = [m["config"] for m in metas]
    every = differing_fields(configs)
    starts = [m.get("start") for m in metas]
    beside_fresh = None in starts and any(starts)
    tell_steps = len({s["step"] for s in starts if s}) > 1

    def named(name: str, value: Any) -> str:
        return shown_value(value) if width is not None and name in SELF_NAMED else f"{name}={shown_value(value)}"

    def compose(fields: list[str]) -> list[str]:
        more = ["…"] if len(fields) < len(every) else []
        labels = []
        for meta, start in zip(metas, starts):
            parts = [named(name, meta["config"][name]) for name in fields] + more
            if start and (beside_fresh or tell_steps):
                step = f"from step {start['step']:,}" if tell_steps else ""
                # short of room, "from step S" says it was continued
                continued = "continued" if beside_fresh and not (step and width is not None) else ""
                parts.append(" ".join(filter(None, (continued, step))))
            labels.append(", ".join(parts) or meta.get("label") or meta["id"])
        if unique:
            labels = [f"{label} ({meta['id']})" if labels.count(label) > 1 else label
                      for label, meta in zip(labels, metas)]
        return labels

    def fits(labels: list[str]) -> bool:
        return width is None or all(len(label) <= width for label in labels)

    labels = compose(every)
    if fits(labels):
        return labels
    fields = telling_fields(configs, every)
    for name in sorted(set(every) - set(fields), key=label_rank):  # the next most telling, while they fit
        if not fits(compose([f for f in every if f in fields or f == name])):
            break
        fields.append(name)
    return compose([f for f in every if f in fields])


class IncompatibleRuns(ValueError):
    """Two runs whose weights cannot be meaningfully interpolated."""


def align_neurons(sfa_a: np.ndarray, sfa_b: np.ndarray) -> np.ndarray:
    """Permutation `perm` of b's neurons that best matches a's: b[perm] ~ a (SFA rows, least squares)."""
    if sfa_a.shape != sfa_b.shape:
        raise IncompatibleRuns(f"SFA shapes differ: {sfa_a.shape} vs {sfa_b.shape}")
    a, b = np.asarray(sfa_a, dtype=np.float64), np.asarray(sfa_b, dtype=np.float64)
    cost = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


@dataclass(frozen=True)
class Model:
    """One run's trained weights and its fixed world, as read from a run file."""

    config: RunConfig
    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    embedder: torch.Tensor
    output_embedder: torch.Tensor | None

    @staticmethod
    def from_record(record: dict[str, Any]) -> Model:
        model, setup = record["final_model"], record["setup"]
        return Model(RunConfig(**record["config"]), model["0.weight"].float(), model["0.bias"].float(),
                     model["2.weight"].float(), setup["fixed_embedder"].float(),
                     setup.get("output_embedder"))

    def sfa(self) -> np.ndarray:
        return single_feature_activations(self.w1[None], self.b1[None], self.embedder[None],
                                          self.config.nonlinearity)[0].numpy()

    def permuted(self, perm: np.ndarray) -> Model:
        index = torch.as_tensor(perm)
        return Model(self.config, self.w1[index], self.b1[index], self.w2[:, index], self.embedder,
                     self.output_embedder)


def check_interpolable(a: Model, b: Model) -> None:
    """Raise IncompatibleRuns unless both runs solve the same problem with the same shapes."""
    problems = []
    # eps and sample_kind set the data: a loss along the line is measured on one distribution, which only one
    # end was trained on (its other end would read far better than that run's own loss)
    for name in ("task", "nonlinearity", "n_features", "embed_dim", "n_neurons", "eps", "sample_kind"):
        if getattr(a.config, name) != getattr(b.config, name):
            problems.append(f"{name} differs ({getattr(a.config, name)} vs {getattr(b.config, name)})")
    if not problems and not torch.equal(a.embedder, b.embedder):
        problems.append("their embedders differ (different seeds draw different worlds); interpolating "
                        "between models of different worlds measures nothing. For two starts in one world, keep the "
                        "seed and vary Init variant")
    if not problems and a.output_embedder is not None and not torch.equal(a.output_embedder, b.output_embedder):
        problems.append("their output embedders differ")
    if problems:
        raise IncompatibleRuns("these runs cannot be interpolated: " + "; ".join(problems))


def evaluation_batch(config: RunConfig, embedder: torch.Tensor, output_embedder: torch.Tensor | None,
                     samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sampler = task_sampler(config.task, config.n_features, config.eps, config.sample_kind)
    return sample_task_batch(config.task, samples, sampler, generator, embedder, output_embedder)


def model_loss(model: Model, x: torch.Tensor, target: torch.Tensor) -> float:
    """The training loss's squared-error term on a fixed batch."""
    with torch.no_grad():
        out, _ = forward(x[None], model.w1[None], model.b1[None], model.w2[None], model.config.nonlinearity)
        return float((out[0] - target).square().sum() / x.shape[0])


@dataclass(frozen=True)
class Interpolation:
    alphas: np.ndarray  # 0 = run a, 1 = run b
    losses: np.ndarray
    aligned: bool

    @property
    def barrier(self) -> float:
        """Highest loss along the line above the worse of the two ends."""
        return float(self.losses.max() - max(self.losses[0], self.losses[-1]))


def interpolate(a: Model, b: Model, points: int = 21, align: bool = True, samples: int = 8192,
                seed: int = 12345) -> Interpolation:
    """Loss on fresh samples at `points` evenly spaced points of the line from a's weights to b's."""
    check_interpolable(a, b)
    if points < 2:
        raise ValueError("points must be at least 2")
    if align:
        b = b.permuted(align_neurons(a.sfa(), b.sfa()))
    x, target = evaluation_batch(a.config, a.embedder, a.output_embedder, samples, seed)
    alphas = np.linspace(0.0, 1.0, points)
    losses = []
    for t in alphas:
        mix = Model(a.config, (1 - t) * a.w1 + t * b.w1, (1 - t) * a.b1 + t * b.b1, (1 - t) * a.w2 + t * b.w2,
                    a.embedder, a.output_embedder)
        losses.append(model_loss(mix, x, target))
    return Interpolation(alphas, np.array(losses), align)
