"""The toy world: fixed random embedders, sparse feature samplers and the three tasks.

ALGORITHM.md defines a batch as `v = U(0,1) * Bernoulli(p)` over a dense (B, N) grid. Only about
N*eps features per sample are present, so on the CPU drawing two uniforms for every cell is most of
the sampling cost. `FeatureSampler` draws the same distribution exactly from far fewer numbers:

- the positions of present cells come from geometric gaps between successes of a Bernoulli
  process (the gaps of i.i.d. Bernoulli(q) trials are i.i.d. geometric: an identity, not an
  approximation);
- features with different probabilities (power law) are split into tiers whose probabilities lie
  within a factor 4 of each other; a tier is sampled at its largest probability q and each candidate
  is kept with probability p_j / q (thinning keeps the cells independent and Bernoulli(p_j));
- the amplitude reuses the acceptance uniform: given u < a, u / a is U(0,1).

On a GPU, drawing a uniform per cell is cheap and needs no host round trip, so `dense` is used there
(and on the CPU when features are not sparse, eps > 1/8): one uniform u per cell, present when u < p,
amplitude u / p. Both are tested against the definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SPARSE_MAX_DENSITY = 1 / 8  # above, a present cell's indices (2 x int64) outweigh a dense batch's float32 cells
TIER_WIDTH = 4.0  # probabilities within a tier differ by less than this factor: at most 4x candidates wasted
GAP_MARGIN_SIGMAS = 6.0  # geometric gaps are drawn in chunks this many standard deviations above the mean


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


def task_probabilities(task: str, n_features: int, eps: float, sample_kind: str) -> torch.Tensor:
    """The abs task draws two vectors at eps/2 each so that the density of v1 - v2 matches eps."""
    return feature_probabilities(n_features, eps / 2 if task == "abs" else eps, sample_kind)


@dataclass(frozen=True)
class SparseFeatures:
    """The present cells of a (B, N) feature batch, sorted by sample: sample index, feature index, amplitude."""

    rows: torch.Tensor  # int64, non-decreasing
    cols: torch.Tensor  # int64
    values: torch.Tensor  # float32
    batch_size: int
    n_features: int

    @classmethod
    def from_unsorted(cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, batch_size: int,
                      n_features: int) -> SparseFeatures:
        order = torch.argsort(rows, stable=True)
        return cls(rows[order], cols[order], values[order], batch_size, n_features)

    def dense(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, N) matrix; cells drawn twice (the abs task's v1 - v2) are summed."""
        if out is None:
            out = torch.zeros(self.batch_size, self.n_features, device=self.values.device)
        else:
            out.zero_()
        return out.index_put_((self.rows, self.cols), self.values, accumulate=True)

    def project(self, embedder_rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """v @ E.T, (B, m), from the present cells only; `embedder_rows` is E.T, contiguous (N, m)."""
        # embedding_bag's weighted sum over each sample's cells: ~20x faster on CPU than index_add_
        counts = torch.bincount(self.rows, minlength=self.batch_size)
        offsets = torch.cumsum(counts, 0).sub_(counts)
        x = torch.nn.functional.embedding_bag(self.cols, embedder_rows, offsets, mode="sum",
                                              per_sample_weights=self.values)
        return x if out is None else out.copy_(x)

    def minus(self, other: SparseFeatures) -> SparseFeatures:
        return SparseFeatures.from_unsorted(torch.cat([self.rows, other.rows]), torch.cat([self.cols, other.cols]),
                                            torch.cat([self.values, -other.values]), self.batch_size,
                                            self.n_features)


def bernoulli_positions(total: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of the successes among `total` i.i.d. Bernoulli(rate) trials (int64)."""
    device = generator.device
    if rate >= 1.0:
        return torch.arange(total, device=device)
    if rate <= 0.0 or total == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    log_miss = math.log1p(-rate)
    expected = total * rate
    chunk = int(expected + GAP_MARGIN_SIGMAS * math.sqrt(expected) + 16)
    pieces, start = [], 0.0
    while True:
        # float64: the gap's distribution is exact to ~1e-16 and cumulative positions stay exact integers
        u = torch.rand(chunk, generator=generator, dtype=torch.float64, device=device)
        gaps = torch.floor(torch.log1p(-u) / log_miss)  # failures before the next success
        positions = torch.cumsum(gaps + 1.0, 0).add_(start - 1.0)
        last = float(positions[-1])
        if last >= total:
            pieces.append(positions[positions < total])
            break
        pieces.append(positions)
        start = last + 1.0
    return torch.cat(pieces).long()


@dataclass(frozen=True)
class _Tier:
    cols: torch.Tensor | None  # feature indices of the tier; None: every feature, in order
    width: int
    rate: float  # candidates are drawn at this rate: the largest probability in the tier
    accept: torch.Tensor | None  # p_j / rate per feature of the tier; None when all are 1


class FeatureSampler:
    """Draws `v = U(0,1) * Bernoulli(p)` batches for fixed per-feature probabilities `p` (N,)."""

    def __init__(self, probs: torch.Tensor, device: torch.device | str = "cpu"):
        self.probs = probs.float().to(device)
        self._divisors = self.probs.clamp(min=torch.finfo(torch.float32).tiny)  # amplitude u / p; absent where p = 0
        self._zero = torch.zeros((), device=device)
        self.n_features = int(probs.shape[0])
        self.device = torch.device(device)
        self.tiers = self._tiers(probs.double().cpu())
        self.density = float(probs.double().mean()) if len(probs) else 0.0

    def _tiers(self, probs: torch.Tensor) -> list[_Tier]:
        positive = probs > 0
        if not positive.any():
            return []
        if bool((probs == probs[0]).all()):
            return [_Tier(None, self.n_features, float(probs[0]), None)]
        level = torch.full_like(probs, -1.0)
        level[positive] = torch.floor(torch.log(probs.max() / probs[positive]) / math.log(TIER_WIDTH))
        tiers = []
        for value in torch.unique(level[positive]).tolist():
            cols = torch.nonzero(level == value).flatten()
            rate = float(probs[cols].max())
            accept = None if bool((probs[cols] == rate).all()) else (probs[cols] / rate).float().to(self.device)
            tiers.append(_Tier(cols.to(self.device), len(cols), rate, accept))
        return tiers

    def sparse(self, batch_size: int, generator: torch.Generator) -> SparseFeatures:
        """Present cells only: the CPU's fast path."""
        rows, cols, values = [], [], []
        for tier in self.tiers:
            positions = bernoulli_positions(batch_size * tier.width, tier.rate, generator)
            u = torch.rand(positions.shape[0], generator=generator, device=self.device)
            local = positions % tier.width
            row = positions // tier.width
            if tier.accept is not None:
                accept = tier.accept[local]
                kept = u < accept
                row, local, u = row[kept], local[kept], u[kept] / accept[kept]
            rows.append(row)
            cols.append(local if tier.cols is None else tier.cols[local])
            values.append(u)
        if not rows:
            empty = torch.empty(0, dtype=torch.long, device=self.device)
            return SparseFeatures(empty, empty, torch.empty(0, device=self.device), batch_size, self.n_features)
        if len(rows) == 1:  # one tier's positions are already in row-major order
            return SparseFeatures(rows[0], cols[0], values[0], batch_size, self.n_features)
        return SparseFeatures.from_unsorted(torch.cat(rows), torch.cat(cols), torch.cat(values), batch_size,
                                            self.n_features)

    def dense(self, batch_size: int, generator: torch.Generator, out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) from one uniform per cell, written into `out` when given: the GPU's path (no host round trip)."""
        u = torch.rand(batch_size, self.n_features, generator=generator, device=self.device)
        present = u < self.probs
        return torch.where(present, u.div_(self._divisors), self._zero, out=out)


def task_sampler(task: str, n_features: int, eps: float, sample_kind: str,
                 device: torch.device | str = "cpu") -> FeatureSampler:
    return FeatureSampler(task_probabilities(task, n_features, eps, sample_kind), device)


def sample_task_batch(task: str, batch_size: int, sampler: FeatureSampler, generator: torch.Generator,
                      embedder: torch.Tensor, output_embedder: torch.Tensor | None,
                      x_out: torch.Tensor | None = None, target_out: torch.Tensor | None = None,
                      sparse: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, m), targets (B, out)) for one run, written into `x_out`/`target_out` when given.

    The abs task's sampler already holds eps/2 (see `task_probabilities`). `sparse` picks the sampler's
    path; by default sparse on the CPU for sparse features, dense on a GPU or for dense features.
    """
    if x_out is not None and x_out.dtype != torch.float32:  # a low-precision step: drawn in fp32, stored rounded
        x, target = sample_task_batch(task, batch_size, sampler, generator, embedder, output_embedder, sparse=sparse)
        return x_out.copy_(x), target_out.copy_(target)
    if sparse is None:
        sparse = sampler.device.type == "cpu" and sampler.density <= SPARSE_MAX_DENSITY
    if not sparse:  # each array written where it is kept: on a GPU at paper shapes, copies cost as much as matmuls
        v = sampler.dense(batch_size, generator, out=target_out if task == "decoder" else None)
        if task == "abs":
            v = v.sub_(sampler.dense(batch_size, generator))
            target = torch.abs(v, out=target_out) if target_out is not None else v.abs()
        elif task == "random_proj":
            target = torch.mm(v, output_embedder.T, out=target_out)
        else:
            target = v
        return torch.mm(v, embedder.T, out=x_out), target
    features = sampler.sparse(batch_size, generator)
    if task == "abs":
        features = features.minus(sampler.sparse(batch_size, generator))
    x = features.project(embedder.T.contiguous(), x_out)
    if task == "random_proj":
        target = features.project(output_embedder.T.contiguous(), target_out)
    else:
        target = features.dense(target_out)
        if task == "abs":
            target.abs_()
    return x, target
