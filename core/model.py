"""The two-layer toy model, for weights stacked on a leading runs axis (R, ...).

The definitions here (used for evaluation and as the reference in tests); training uses the
hand-written forward and backward pass of core.step.
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


# A run's world: the input embedder E (m, N), and random_proj's output embedder (None for the other tasks).
World = tuple[torch.Tensor, torch.Tensor | None]


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
    return RunWeights(w1, b1, w2)


def hidden(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """Hidden activations (R, B, k) for inputs x (R, B, m)."""
    pre = torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2))
    return ACTIVATIONS[nonlinearity](pre)


def forward(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
            nonlinearity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs (R, B, out), hidden activations (R, B, k))."""
    act = hidden(x, w1, b1, nonlinearity)
    return torch.bmm(act, w2.transpose(1, 2)), act
