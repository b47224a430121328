"""Section 5 of the paper: what monosemantic and polysemantic neurons compute (pure functions).

A model is split into its monosemantic neurons (r > 0.999, not dead) and the rest. For a feature f,
its "target direction" is e_f for the decoder and abs tasks, and E2[:, f] for the random re-projector
(unit norm), so that the ideal output along it at input amplitude a is a (|a| for abs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.compare import Model, evaluation_batch
from core.metrics import MONO_THRESHOLD, dead_neurons, mono_scores, monosemantic_neurons
from core.model import ACTIVATIONS


def mono_feature_of(sfa: np.ndarray, threshold: float = MONO_THRESHOLD) -> np.ndarray:
    """For each neuron, the feature it is monosemantic for, or -1."""
    mono = monosemantic_neurons(sfa, threshold)
    return np.where(mono, sfa.argmax(axis=1), -1)


def mono_neurons_per_feature(sfa: np.ndarray) -> np.ndarray:
    """(N,) how many neurons are monosemantic for each feature."""
    owners = mono_feature_of(sfa)
    return np.bincount(owners[owners >= 0], minlength=sfa.shape[1])


def target_directions(model: Model) -> torch.Tensor:
    """(out, N): column f is the output direction that represents feature f."""
    if model.output_embedder is not None:
        return model.output_embedder.float()
    return torch.eye(model.config.n_features)


def hidden_of(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Hidden activations (B, k) for inputs x (B, m)."""
    return ACTIVATIONS[model.config.nonlinearity](x @ model.w1.T + model.b1)


@dataclass(frozen=True)
class FeatureView:
    feature: int
    neurons: np.ndarray  # neurons monosemantic for this feature, strongest first
    activations: np.ndarray  # their activation for this feature alone
    input_weights: np.ndarray  # (W1 @ E)[n, f]: how strongly each reads the feature
    biases: np.ndarray
    output_weights: np.ndarray  # W2[:, n] along the feature's target direction
    amplitudes: np.ndarray
    total: np.ndarray  # model output along the target direction
    mono_part: np.ndarray
    poly_part: np.ndarray
    ideal: np.ndarray


def feature_view(model: Model, sfa: np.ndarray, feature: int, points: int = 101) -> FeatureView:
    """Which neurons serve a feature alone, and the output for it as its amplitude sweeps 0..1 (-1..1 for abs)."""
    n_features = model.config.n_features
    if not 0 <= feature < n_features:
        raise ValueError(f"feature must be from 0 to {n_features - 1}, got {feature}")
    owner = mono_feature_of(sfa)
    neurons = np.flatnonzero(owner == feature)
    neurons = neurons[np.argsort(-sfa[neurons, feature], kind="stable")]
    mono = torch.as_tensor(owner >= 0)
    direction = target_directions(model)[:, feature]
    with torch.no_grad():
        effective = (model.w1 @ model.embedder)[:, feature]
        out_along = direction @ model.w2  # (k,) each neuron's output weight along the feature
        lo = -1.0 if model.config.task == "abs" else 0.0
        amplitudes = torch.linspace(lo, 1.0, points)
        h = hidden_of(model, amplitudes[:, None] * model.embedder[:, feature][None, :])
        contributions = h * out_along  # (points, k)
        mono_part = contributions[:, mono].sum(1)
        poly_part = contributions[:, ~mono].sum(1)
    ideal = amplitudes.abs() if model.config.task == "abs" else amplitudes
    idx = torch.as_tensor(neurons)
    return FeatureView(feature, neurons, sfa[neurons, feature], effective[idx].numpy(), model.b1[idx].numpy(),
                       out_along[idx].numpy(), amplitudes.numpy(), (mono_part + poly_part).numpy(),
                       mono_part.numpy(), poly_part.numpy(), ideal.numpy())


@dataclass(frozen=True)
class NeuronView:
    neuron: int
    activations: np.ndarray  # for every single feature
    bias: float
    monosemantic: bool
    score: float  # r = max / sum
    top_features: np.ndarray  # strongest first (up to 5 with positive activation)


def neuron_view(model: Model, sfa: np.ndarray, neuron: int) -> NeuronView:
    if not 0 <= neuron < sfa.shape[0]:
        raise ValueError(f"neuron must be from 0 to {sfa.shape[0] - 1}, got {neuron}")
    row = sfa[neuron]
    order = np.argsort(-row, kind="stable")
    top = order[row[order] > 0][:5]
    return NeuronView(neuron, row, float(model.b1[neuron]), bool(monosemantic_neurons(sfa)[neuron]),
                      float(mono_scores(sfa)[neuron]), top)


@dataclass(frozen=True)
class LinearMap:
    matrix: np.ndarray  # target directions^T @ W2[:, poly] @ W1[poly] @ E: (N, N)
    singular_values: np.ndarray
    rank90: int  # singular values needed for 90% of the energy (sum of squares)
    ideal_scale: float  # c minimising ||M - c A||_F, A the ideal map (below)
    ideal_error: float  # ||M - c A||_F / ||M||_F (0: exactly a scaled ideal map)
    ideal: str  # "identity" (decoder, abs), or "E2ᵀE2" (random_proj: a perfect model maps v to E2 v)
    rank_cap: int | None = None  # its rank is at most min(m, polysemantic neurons): it passes through both
    input_dims: int | None = None  # m: the ideal map is compared as far as the m-dim input carries it


def poly_linear_map(model: Model, sfa: np.ndarray) -> LinearMap:
    """The polysemantic neurons' linearised map from features to features (the paper's low-rank identity).

    It is compared with the ideal map as far as the m-dim input carries it: the ideal A times the projection onto
    the embedder's rows, the closest any map M @ E gets to A. Compared with A itself, every model read near 1 (the
    relative error to c I of a rank-m map is at least sqrt(1 - m / N): 0.94 at the presets' sizes).

    Neurons dead to every feature alone are left out: off at each single-feature input, their ReLU's linearisation
    there is zero (the amplitude view, which sums actual activations, keeps them with the rest)."""
    poly = torch.as_tensor(mono_feature_of(sfa) < 0) & ~torch.as_tensor(dead_neurons(sfa))
    with torch.no_grad():
        directions = target_directions(model)
        matrix = (directions.T @ model.w2[:, poly] @ model.w1[poly] @ model.embedder).numpy()
        ideal = (directions.T @ directions).numpy() if model.output_embedder is not None else np.eye(matrix.shape[0])
    embedder = model.embedder.double().numpy()
    reachable = ideal @ (np.linalg.pinv(embedder) @ embedder)
    m = embedder.shape[0]
    return linear_map_summary(matrix, reachable, "identity" if model.output_embedder is None else "E2ᵀE2",
                              rank_cap=min(m, int(poly.sum())), input_dims=m)


def linear_map_summary(matrix: np.ndarray, ideal: np.ndarray | None = None, ideal_name: str = "identity",
                       rank_cap: int | None = None, input_dims: int | None = None) -> LinearMap:
    singular = np.linalg.svd(matrix, compute_uv=False)
    energy = np.cumsum(singular**2)
    rank90 = int(np.searchsorted(energy, 0.9 * energy[-1]) + 1) if energy[-1] > 0 else 0
    ideal = np.eye(matrix.shape[0]) if ideal is None else ideal
    scale = float(np.sum(matrix * ideal) / np.sum(ideal * ideal))  # least squares; trace / N for the identity
    norm = float(np.linalg.norm(matrix))
    error = float(np.linalg.norm(matrix - scale * ideal) / norm) if norm > 0 else 0.0
    return LinearMap(matrix, singular, rank90, scale, error, ideal_name, rank_cap, input_dims)


@dataclass(frozen=True)
class MonoSummary:
    counts: dict[str, int]  # features with 0, 1, 2, 3+ monosemantic neurons
    # Squared error of the features in each group, on fresh samples; the groups add up to the loss. None for
    # random_proj: its N target directions in m < N dimensions overlap, so the loss does not split by feature.
    group_losses: dict[str, float] | None


def mono_summary(model: Model, sfa: np.ndarray, samples: int = 4096, seed: int = 7) -> MonoSummary:
    owner = mono_feature_of(sfa)
    per_feature = np.bincount(owner[owner >= 0], minlength=model.config.n_features)
    groups = np.minimum(per_feature, 3)
    names = ("0", "1", "2", "3+")
    counts = {name: int((groups == g).sum()) for g, name in enumerate(names)}
    if model.output_embedder is not None:
        return MonoSummary(counts, None)
    x, target = evaluation_batch(model.config, model.embedder, model.output_embedder, samples, seed)
    with torch.no_grad():
        out = hidden_of(model, x) @ model.w2.T
        # each feature's output's squared error, summed over the batch and divided by B as in the loss
        error = (out - target).square().sum(0) / samples
    losses = {name: float(error[torch.as_tensor(groups == g)].sum()) for g, name in enumerate(names)}
    return MonoSummary(counts, losses)


def pair_interference(model: Model, f1: int, f2: int, points: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """Output along f1's direction as f1's and f2's amplitudes both sweep 0..1: (amplitudes, grid[a2, a1])."""
    n = model.config.n_features
    for f in (f1, f2):
        if not 0 <= f < n:
            raise ValueError(f"features must be from 0 to {n - 1}, got {f}")
    lo = -1.0 if model.config.task == "abs" else 0.0
    a = torch.linspace(lo, 1.0, points)
    a1, a2 = torch.meshgrid(a, a, indexing="xy")  # a1 varies along columns
    e = model.embedder
    x = a1.reshape(-1, 1) * e[:, f1] + a2.reshape(-1, 1) * e[:, f2]
    with torch.no_grad():
        out = hidden_of(model, x) @ model.w2.T @ target_directions(model)[:, f1]
    return a.numpy(), out.reshape(points, points).numpy()
