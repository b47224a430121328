"""One training step's forward and backward pass by hand, for R runs stacked on a leading axis.

Autograd would launch the same matmuls, but it allocates every intermediate afresh each step (at
paper scale with batch 8192 that is ~100 MiB of fresh pages a step) and takes the loss's gradient in
separate passes. Here the squared error's gradient, 2 (out - target) / B, is the residual itself,
with the 2 / B folded into the two matmuls that read it, and the (R, B, .) arrays live in a
`Workspace` allocated once. tests/test_step.py checks it against autograd on the plain definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Workspace:
    """Per-step arrays of shape (R, B, .), reused every step."""

    x: torch.Tensor  # inputs (R, B, m)
    target: torch.Tensor  # (R, B, out)
    pre: torch.Tensor  # pre-activations (R, B, k); ReLU overwrites them with the activations
    out: torch.Tensor  # outputs (R, B, out), then the residual out - target
    grad_hidden: torch.Tensor  # (R, B, k)

    @classmethod
    def allocate(cls, runs: int, batch_size: int, embed_dim: int, n_neurons: int, out_dim: int,
                 device: torch.device) -> Workspace:
        def empty(width: int) -> torch.Tensor:
            return torch.empty(runs, batch_size, width, device=device)

        return cls(empty(embed_dim), empty(out_dim), empty(n_neurons), empty(out_dim), empty(n_neurons))


@dataclass
class Gradients:
    """d loss / d parameters, stacked like the parameters: w1 (R, k, m), b1 (R, k), w2 (R, out, k)."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor

    @classmethod
    def like(cls, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> Gradients:
        return cls(torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2))


def _activation_and_derivative(pre: torch.Tensor, nonlinearity: str) -> tuple[torch.Tensor, object]:
    """The activations, and a function taking d loss / d activations to d loss / d pre-activations."""
    if nonlinearity == "relu":
        act = pre.relu_()
        # autograd's own ReLU backward, in place: one pass (a masked_fill_ with a mask takes 20x longer)
        return act, lambda grad: torch.ops.aten.threshold_backward.grad_input(grad, act, 0.0, grad_input=grad)
    if nonlinearity == "gelu":
        act = torch.nn.functional.gelu(pre)
        return act, lambda grad: torch.ops.aten.gelu_backward(grad, pre)
    if nonlinearity == "solu":
        exp = torch.exp(pre)
        act = pre * exp
        return act, lambda grad: grad.mul_(exp.add_(act))  # d/dx x e^x = e^x + x e^x
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def squared_error_and_gradients(ws: Workspace, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                                nonlinearity: str, l1_reg: torch.Tensor | None, grads: Gradients
                                ) -> torch.Tensor:
    """Fill `grads` with the gradient of the training loss and return each run's squared error (R,).

    Loss per run: sum((out - target)^2) / B + l1_reg * sum(|act|) / B, with ws.x and ws.target
    already holding the batch. The returned value is the squared-error term alone (what is recorded).
    """
    runs, batch_size = ws.x.shape[0], ws.x.shape[1]
    torch.baddbmm(b1.unsqueeze(1), ws.x, w1.transpose(1, 2), out=ws.pre)
    act, backward_through_activation = _activation_and_derivative(ws.pre, nonlinearity)
    residual = torch.bmm(act, w2.transpose(1, 2), out=ws.out).sub_(ws.target)
    squared_error = torch.linalg.vector_norm(residual.view(runs, -1), dim=1).square_().div_(batch_size)

    scale = 2.0 / batch_size
    grads.w2.baddbmm_(residual.transpose(1, 2), act, beta=0.0, alpha=scale)
    grad_hidden = ws.grad_hidden.baddbmm_(residual, w2, beta=0.0, alpha=scale)
    if l1_reg is not None:
        grad_hidden.add_(act.sign().mul_((l1_reg / batch_size).view(runs, 1, 1)))
    grad_pre = backward_through_activation(grad_hidden)
    grads.w1.baddbmm_(grad_pre.transpose(1, 2), ws.x, beta=0.0)
    torch.sum(grad_pre, dim=1, out=grads.b1)
    return squared_error
