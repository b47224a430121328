"""The two-layer toy model with weights stacked on a leading runs axis.

Each run owns its own leaf tensors (so LAMB takes one trust ratio per run and tensor, as when
runs train alone); the forward pass stacks them and does one batched matmul for all runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def solu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.exp(x)


ACTIVATIONS = {
    "relu": torch.relu,
    "gelu": torch.nn.functional.gelu,
    "solu": solu,
}


@dataclass
class RunWeights:
    """One run's parameters, in the paper code's layout: w1 (k, m), b1 (k), w2 (out, k)."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2]


def init_weights(embed_dim: int, n_neurons: int, out_dim: int, init_bias: float,
                 generator: torch.Generator) -> RunWeights:
    """PyTorch's default Linear initialisation, then `init_bias` added to every first-layer bias."""
    device = generator.device
    bound1 = 1.0 / math.sqrt(embed_dim)
    bound2 = 1.0 / math.sqrt(n_neurons)

    def uniform(shape: tuple[int, ...], bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * bound

    w1 = uniform((n_neurons, embed_dim), bound1)
    b1 = uniform((n_neurons,), bound1) + init_bias
    w2 = uniform((out_dim, n_neurons), bound2)
    return RunWeights(*(t.requires_grad_(True) for t in (w1, b1, w2)))


def stacked(runs: list[RunWeights]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(R, k, m), (R, k), (R, out, k); differentiable back to each run's leaves."""
    if len(runs) == 1:
        r = runs[0]
        return r.w1.unsqueeze(0), r.b1.unsqueeze(0), r.w2.unsqueeze(0)
    return (torch.stack([r.w1 for r in runs]), torch.stack([r.b1 for r in runs]),
            torch.stack([r.w2 for r in runs]))


def hidden(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """Hidden activations (R, B, k) for inputs x (R, B, m)."""
    pre = torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2))
    return ACTIVATIONS[nonlinearity](pre)


def forward(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
            nonlinearity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs (R, B, out), hidden activations (R, B, k))."""
    act = hidden(x, w1, b1, nonlinearity)
    return torch.bmm(act, w2.transpose(1, 2)), act
