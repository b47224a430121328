"""Section 5 of the paper: what monosemantic and polysemantic neurons compute (pure functions).

A model is split into its monosemantic neurons (r > 0.999, not dead) and the rest; for GeLU and SoLU, r on the
positive part of the activations (the paper's max/sum passes 0.999 by accident when they go negative). For a feature f,
its "target direction" is e_f for the decoder and abs tasks, and E2[:, f] for the random re-projector
(unit norm), so that the ideal output along it at input amplitude a is a (|a| for abs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from core.compare import Model, evaluation_batch
from core.metrics import (
    MONO_THRESHOLD,
    dead_neurons,
    mono_scores,
    monosemantic_neurons,
    positive_mono_scores,
    positive_monosemantic_neurons,
)
from core.model import ACTIVATIONS


def uses_positive_part(nonlinearity: str) -> bool:
    """Whether the inspector splits mono from poly on the positive part of the activations: GeLU and SoLU go
    negative, where the paper's max/sum passes 0.999 by accident (ALGORITHM.md). Headline figures stay the paper's."""
    return nonlinearity != "relu"


def mono_feature_of(sfa: np.ndarray, threshold: float = MONO_THRESHOLD, positive_part: bool = False) -> np.ndarray:
    """For each neuron, the feature it is monosemantic for, or -1."""
    mono = positive_monosemantic_neurons(sfa, threshold) if positive_part else monosemantic_neurons(sfa, threshold)
    return np.where(mono, sfa.argmax(axis=1), -1)  # positive-part mono: its max is positive, the same argmax


def mono_neurons_per_feature(sfa: np.ndarray, positive_part: bool = False) -> np.ndarray:
    """(N,) how many neurons are monosemantic for each feature."""
    owners = mono_feature_of(sfa, positive_part=positive_part)
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
    mono_part: np.ndarray  # from this feature's monosemantic neurons
    rest_part: np.ndarray  # from every other neuron: the polysemantic ones and other features' monosemantic ones
    other_mono_part: np.ndarray  # the latter alone (part of rest_part)
    ideal: np.ndarray
    positive_part: bool = False  # mono judged on the positive part of the activations (GeLU, SoLU)


def feature_view(model: Model, sfa: np.ndarray, feature: int, points: int = 101) -> FeatureView:
    """Which neurons serve a feature alone, and the output for it as its amplitude sweeps 0..1 (-1..1 for abs)."""
    n_features = model.config.n_features
    if not 0 <= feature < n_features:
        raise ValueError(f"feature must be from 0 to {n_features - 1}, got {feature}")
    positive = uses_positive_part(model.config.nonlinearity)
    owner = mono_feature_of(sfa, positive_part=positive)
    neurons = np.flatnonzero(owner == feature)
    neurons = neurons[np.argsort(-sfa[neurons, feature], kind="stable")]
    own = torch.as_tensor(owner == feature)
    other_mono = torch.as_tensor((owner >= 0) & (owner != feature))
    direction = target_directions(model)[:, feature]
    with torch.no_grad():
        effective = (model.w1 @ model.embedder)[:, feature]
        out_along = direction @ model.w2  # (k,) each neuron's output weight along the feature
        lo = -1.0 if model.config.task == "abs" else 0.0
        amplitudes = torch.linspace(lo, 1.0, points)
        h = hidden_of(model, amplitudes[:, None] * model.embedder[:, feature][None, :])
        contributions = h * out_along  # (points, k)
        mono_part = contributions[:, own].sum(1)
        rest_part = contributions[:, ~own].sum(1)
        other_mono_part = contributions[:, other_mono].sum(1)
    ideal = amplitudes.abs() if model.config.task == "abs" else amplitudes
    idx = torch.as_tensor(neurons)
    return FeatureView(feature, neurons, sfa[neurons, feature], effective[idx].numpy(), model.b1[idx].numpy(),
                       out_along[idx].numpy(), amplitudes.numpy(), (mono_part + rest_part).numpy(),
                       mono_part.numpy(), rest_part.numpy(), other_mono_part.numpy(), ideal.numpy(), positive)


@dataclass(frozen=True)
class NeuronView:
    neuron: int
    activations: np.ndarray  # for every single feature (at amplitude +1)
    bias: float
    monosemantic: bool  # as the inspector splits: on the positive part for GeLU and SoLU
    score: float  # the paper's r = max / sum
    top_features: np.ndarray  # strongest first (up to 5 with positive activation)
    dead: bool = False  # silent for every single feature at amplitude +1
    positive_score: float | None = None  # r on the positive part: GeLU and SoLU only
    # abs only: the activations for each feature alone at amplitude -1, which the SFA (at +1) does not see
    negative_activations: np.ndarray | None = None


def neuron_view(model: Model, sfa: np.ndarray, neuron: int) -> NeuronView:
    if not 0 <= neuron < sfa.shape[0]:
        raise ValueError(f"neuron must be from 0 to {sfa.shape[0] - 1}, got {neuron}")
    row = sfa[neuron]
    order = np.argsort(-row, kind="stable")
    top = order[row[order] > 0][:5]
    positive = uses_positive_part(model.config.nonlinearity)
    negative = None
    if model.config.task == "abs":
        with torch.no_grad():  # one neuron's pre-activations for -e_f: N x m, cheap at any size
            pre = -(model.embedder.T @ model.w1[neuron]) + model.b1[neuron]
            negative = ACTIVATIONS[model.config.nonlinearity](pre).numpy()
    return NeuronView(neuron, row, float(model.b1[neuron]),
                      bool(mono_feature_of(sfa[neuron:neuron + 1], positive_part=positive)[0] >= 0),
                      float(mono_scores(sfa[neuron:neuron + 1])[0]), top,
                      bool(dead_neurons(sfa[neuron:neuron + 1])[0]),
                      float(positive_mono_scores(sfa[neuron:neuron + 1])[0]) if positive else None, negative)


@dataclass(frozen=True)
class LinearMap:
    matrix: np.ndarray  # target directions^T @ W2[:, poly] @ W1[poly] @ E: (N, N)
    singular_values: np.ndarray
    rank90: int  # singular values needed for 90% of the energy (sum of squares); 0 for a zero map
    ideal_scale: float | None  # c minimising ||M - c A||_F, A the ideal map (below); None: no ideal map
    ideal_error: float | None  # ||M - c A||_F / ||M||_F (0: exactly a scaled ideal map); None: no ideal, or M = 0
    # "identity" (decoder), "E2ᵀE2" (random_proj: a perfect model maps v to E2 v); None for abs: |v| is not
    # linear, and the map linearised at +1 is the identity's mirror at -1, so neither is its ideal
    ideal: str | None
    rank_cap: int | None = None  # its rank is at most min(m, polysemantic neurons): it passes through both
    input_dims: int | None = None  # m: the ideal map is compared as far as the m-dim input carries it
    poly_neurons: int | None = None  # live polysemantic neurons (None: a matrix given as such)
    positive_part: bool = False  # polysemantic = not mono on the positive part (GeLU, SoLU)


def poly_linear_map(model: Model, sfa: np.ndarray) -> LinearMap:
    """The polysemantic neurons' linearised map from features to features (the paper's low-rank identity).

    It is compared with the ideal map as far as the m-dim input carries it: the ideal A times the projection onto
    the embedder's rows, the closest any map M @ E gets to A. Compared with A itself, every model read near 1 (the
    relative error to c I of a rank-m map is at least sqrt(1 - m / N): 0.94 at the presets' sizes).

    Neurons dead to every feature alone are left out: off at each single-feature input, their ReLU's linearisation
    there is zero (the amplitude view, which sums actual activations, keeps them with the rest).

    M = C @ E with C = D^T W2[:, poly] W1[poly] (N x m): with E = U S V^T, M's singular values are C U S's, and
    the projection is V V^T, so that nothing costs N^3 (an N x N SVD took seconds at N = 2048)."""
    positive = uses_positive_part(model.config.nonlinearity)
    poly = torch.as_tensor(mono_feature_of(sfa, positive_part=positive) < 0) & ~torch.as_tensor(dead_neurons(sfa))
    with torch.no_grad():
        c = (model.w2[:, poly] @ model.w1[poly]).double()
        if model.output_embedder is not None:
            c = model.output_embedder.double().T @ c
    c, embedder = c.numpy(), model.embedder.double().numpy()
    u, s, vt = np.linalg.svd(embedder, full_matrices=False)
    matrix = c @ embedder
    singular = np.linalg.svd(c @ (u * s), compute_uv=False)
    rows = vt[s > s.max(initial=0.0) * max(embedder.shape) * np.finfo(float).eps]  # as pinv's cutoff
    m, n_poly = embedder.shape[0], int(poly.sum())
    cap = min(m, n_poly)
    if model.config.task == "abs":
        return LinearMap(matrix, singular, rank90_of(singular), None, None, None, cap, m, n_poly, positive)
    if model.output_embedder is None:
        reachable, name = rows.T @ rows, "identity"
    else:
        d = model.output_embedder.double().numpy()
        reachable, name = (d.T @ (d @ rows.T)) @ rows, "E2ᵀE2"
    linear = linear_map_summary(matrix, reachable, name, rank_cap=cap, input_dims=m, singular=singular)
    return replace(linear, poly_neurons=n_poly, positive_part=positive)


def rank90_of(singular: np.ndarray) -> int:
    energy = np.cumsum(np.asarray(singular, dtype=np.float64) ** 2)
    return int(np.searchsorted(energy, 0.9 * energy[-1]) + 1) if len(energy) and energy[-1] > 0 else 0


def linear_map_summary(matrix: np.ndarray, ideal: np.ndarray | None = None, ideal_name: str = "identity",
                       rank_cap: int | None = None, input_dims: int | None = None,
                       singular: np.ndarray | None = None) -> LinearMap:
    """The map's singular values (given, or from an SVD) and its distance from the closest multiple of the ideal."""
    singular = np.linalg.svd(matrix, compute_uv=False) if singular is None else singular
    ideal = np.eye(matrix.shape[0]) if ideal is None else ideal
    scale = float(np.sum(matrix * ideal) / np.sum(ideal * ideal))  # least squares; trace / N for the identity
    norm = float(np.linalg.norm(matrix))
    # a zero map is no multiple of anything: an error of 0 would read "exactly the ideal"
    error = float(np.linalg.norm(matrix - scale * ideal) / norm) if norm > 0 else None
    return LinearMap(matrix, singular, rank90_of(singular), scale, error, ideal_name, rank_cap, input_dims)


@dataclass(frozen=True)
class MonoSummary:
    counts: dict[str, int]  # features with 0, 1, 2, 3+ monosemantic neurons
    # Squared error of the features in each group, on fresh samples; the groups add up to the loss. None for
    # random_proj: its N target directions in m < N dimensions overlap, so the loss does not split by feature.
    group_losses: dict[str, float] | None
    positive_part: bool = False  # mono judged on the positive part (GeLU, SoLU)


def mono_summary(model: Model, sfa: np.ndarray, samples: int = 4096, seed: int = 7) -> MonoSummary:
    positive = uses_positive_part(model.config.nonlinearity)
    per_feature = mono_neurons_per_feature(sfa, positive)
    groups = np.minimum(per_feature, 3)
    names = ("0", "1", "2", "3+")
    counts = {name: int((groups == g).sum()) for g, name in enumerate(names)}
    if model.output_embedder is not None:
        return MonoSummary(counts, None, positive)
    x, target = evaluation_batch(model.config, model.embedder, model.output_embedder, samples, seed)
    with torch.no_grad():
        out = hidden_of(model, x) @ model.w2.T
        # each feature's output's squared error, summed over the batch and divided by B as in the loss
        error = (out - target).square().sum(0) / samples
    losses = {name: float(error[torch.as_tensor(groups == g)].sum()) for g, name in enumerate(names)}
    return MonoSummary(counts, losses, positive)


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
