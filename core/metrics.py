"""Monosemanticity measures, as pure functions (ALGORITHM.md, "Measuring monosemanticity")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.model import hidden

MONO_THRESHOLD = 0.999
NEARLY_MONO_THRESHOLD = 0.9  # visible long before the strict threshold
RATIO_EPS = 1e-10
DEAD_TOLERANCE = 1e-12


def single_feature_activations(w1: torch.Tensor, b1: torch.Tensor, embedder: torch.Tensor,
                               nonlinearity: str) -> torch.Tensor:
    """SFA: hidden activations for each feature alone at amplitude 1, shape (R, k, N).

    w1 (R, k, m), b1 (R, k), embedder (R, m, N). The inputs are the rows of I_N @ E.T = E.T.
    """
    with torch.no_grad():
        inputs = embedder.transpose(1, 2)  # (R, N, m)
        return hidden(inputs, w1, b1, nonlinearity).transpose(1, 2)


def mono_scores(sfa: np.ndarray) -> np.ndarray:
    """Per-neuron r = max over features / (1e-10 + sum over features)."""
    return sfa.max(axis=1) / (RATIO_EPS + sfa.sum(axis=1))


def positive_mono_scores(sfa: np.ndarray) -> np.ndarray:
    """The same ratio on the positive part of the activations (meaningful for GeLU and SoLU)."""
    return mono_scores(np.clip(sfa, 0.0, None))


def positive_monosemantic_neurons(sfa: np.ndarray, threshold: float = MONO_THRESHOLD) -> np.ndarray:
    """Boolean mask of neurons with r on the positive part above the threshold (for GeLU and SoLU; not the paper's
    figure); dead neurons never count."""
    return (positive_mono_scores(sfa) > threshold) & ~dead_neurons(sfa)


def dead_neurons(sfa: np.ndarray) -> np.ndarray:
    """Neurons that output (numerically) zero for every single feature."""
    return np.abs(sfa).max(axis=1) <= DEAD_TOLERANCE


def monosemantic_neurons(sfa: np.ndarray, threshold: float = MONO_THRESHOLD) -> np.ndarray:
    """Boolean mask of neurons with r above the threshold; dead neurons never count."""
    return (mono_scores(sfa) > threshold) & ~dead_neurons(sfa)


def mono_ratio(sfa: np.ndarray, threshold: float = MONO_THRESHOLD) -> float:
    """The headline figure: monosemantic neurons per feature, (# r > threshold) / N."""
    return float(monosemantic_neurons(sfa, threshold).sum()) / sfa.shape[1]


def heatmap_order(sfa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's ordering: neurons by max/(1e-10+mean) descending, then features by the
    position of the neuron each feature activates most strongly. Returns (neuron_order, feature_order)."""
    selectivity = sfa.max(axis=1) / (RATIO_EPS + sfa.mean(axis=1))
    neuron_order = np.argsort(-selectivity, kind="stable")
    strongest = np.argmax(sfa[neuron_order], axis=0)
    feature_order = np.argsort(strongest, kind="stable")
    return neuron_order, feature_order


@dataclass(frozen=True)
class ScoreHistogram:
    counts: np.ndarray  # r in [0, 1], in equal bins (r = 1 in the last)
    edges: np.ndarray
    below: int  # r < 0 and r > 1: only GeLU and SoLU, whose negative outputs shrink the sum (or turn it negative)
    above: int


def score_histogram(scores: np.ndarray, bins: int = 20) -> ScoreHistogram:
    """Counts of r over [0, 1] in equal bins, and apart from them those below 0 and above 1: clipped into the end
    bins, an r of 20 read as monosemantic and a negative one as dead."""
    scores = np.asarray(scores)
    counts, edges = np.histogram(scores[(scores >= 0.0) & (scores <= 1.0)], bins=bins, range=(0.0, 1.0))
    return ScoreHistogram(counts, edges, int((scores < 0.0).sum()), int((scores > 1.0).sum()))


@dataclass(frozen=True)
class SfaSummary:
    """The metrics the dashboard and the run file report for one SFA matrix."""

    mono_ratio: float
    mono_neurons: int
    positive_mono_ratio: float
    dead_neurons: int
    nearly_mono_neurons: int  # r > 0.9: visible long before the strict 0.999 threshold
    mean_score: float

    @staticmethod
    def of(sfa: np.ndarray) -> SfaSummary:
        scores = mono_scores(sfa)
        dead = dead_neurons(sfa)
        alive_scores = np.where(dead, 0.0, scores)
        return SfaSummary(
            mono_ratio=mono_ratio(sfa),
            mono_neurons=int(monosemantic_neurons(sfa).sum()),
            positive_mono_ratio=float(positive_monosemantic_neurons(sfa).sum()) / sfa.shape[1],
            dead_neurons=int(dead.sum()),
            nearly_mono_neurons=int((alive_scores > NEARLY_MONO_THRESHOLD).sum()),
            mean_score=float(np.clip(alive_scores, 0.0, 1.0).mean()),
        )


def final_loss(losses: np.ndarray) -> float | None:
    """The loss every view reports: the mean over the last 5% of the steps trained (None before any)."""
    if len(losses) == 0:
        return None
    return float(losses[-max(1, math.ceil(0.05 * len(losses))):].mean())
