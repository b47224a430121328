"""The toy world: fixed random embedders, sparse feature samplers and the three tasks."""

from __future__ import annotations

import torch


def make_embedder(n_features: int, embed_dim: int, generator: torch.Generator) -> torch.Tensor:
    """Random embedder E of shape (m, N): thin-SVD of a normal (N, m) matrix, rows unit-normalised."""
    device = generator.device
    gaussian = torch.randn(n_features, embed_dim, generator=generator, device=device)
    u, _, _ = torch.linalg.svd(gaussian, full_matrices=False)
    u = u / u.norm(dim=1, keepdim=True)
    return u.T.contiguous()


def feature_probabilities(n_features: int, eps: float, sample_kind: str) -> torch.Tensor:
    """Per-feature presence probability: eps for all, or p_i ~ i^-1.1 summing to N*eps, clipped at 1."""
    if sample_kind == "equal":
        return torch.full((n_features,), float(eps))
    if sample_kind == "power_law":
        weights = torch.arange(1, n_features + 1, dtype=torch.float64) ** -1.1
        probs = weights * (n_features * eps / weights.sum())
        return probs.clamp(max=1.0).float()
    raise ValueError(f"unknown sample_kind {sample_kind!r}")


def sample_features(batch_size: int, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """v = U(0,1) * Bernoulli(p): (B, N) sparse feature amplitudes."""
    shape = (batch_size, probs.shape[0])
    amplitudes = torch.rand(shape, generator=generator, device=probs.device)
    present = torch.rand(shape, generator=generator, device=probs.device) < probs
    return amplitudes * present


def sample_task_batch(task: str, batch_size: int, probs: torch.Tensor, generator: torch.Generator,
                      embedder: torch.Tensor, output_embedder: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, m), targets (B, out)) for one run. `probs` are already halved for the abs task."""
    if task == "abs":
        v = sample_features(batch_size, probs, generator) - sample_features(batch_size, probs, generator)
        target = v.abs()
    else:
        v = sample_features(batch_size, probs, generator)
        target = v @ output_embedder.T if task == "random_proj" else v
    return v @ embedder.T, target


def task_probabilities(task: str, n_features: int, eps: float, sample_kind: str) -> torch.Tensor:
    """The abs task draws two vectors at eps/2 each so that the density of v1 - v2 matches eps."""
    return feature_probabilities(n_features, eps / 2 if task == "abs" else eps, sample_kind)
