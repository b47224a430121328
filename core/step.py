"""One training step's forward and backward pass by hand, for R runs stacked on a leading axis.

Autograd would launch the same matmuls, but it allocates every intermediate afresh each step (at
paper scale with batch 8192 that is ~100 MiB of fresh pages a step) and takes the loss's gradient in
separate passes. Here the squared error's gradient, 2 (out - target) / B, is the residual itself,
with the 2 / B folded into the two matmuls that read it, and the (R, B, .) arrays live in a
`Workspace` allocated once. tests/test_step.py checks it against autograd on the plain definitions.

ReLU neurons that no sample of the batch activates (in any run) add nothing to the output and get
zero gradients, so the three large matmuls can leave them out: with a negative initial bias every
neuron is dead for the first stretch of training (the bias has to decay before any fires), and a
whole step there costs a quarter to a fifth of a full one at paper shapes. Their gradients are then
written as exact zeros.

At precision bf16 the (R, B, .) arrays are bfloat16 and the matmuls read bfloat16 copies of the
parameters (cuBLAS accumulates in fp32, though by torch's default it may add split-K partial sums in
bf16): half the bytes for every pass over the activations, and the GPU's bf16 tensor cores.
Parameters, optimizer state and the loss stay fp32; the gradients are rounded to
bf16 by the matmuls that make them and widened into the fp32 `Gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Gathering the live neurons' columns and scattering their gradients back has a fixed cost: skipping breaks
# even near 90% live at paper shapes and near 65% at quick ones (`bench_dead_neurons --by-share`).
MAX_LIVE_SHARE_TO_COMPACT = 0.75


@dataclass
class Workspace:
    """Per-step arrays of shape (R, B, .), reused every step, and scratch for the live-neuron columns."""

    x: torch.Tensor  # inputs (R, B, m)
    target: torch.Tensor  # (R, B, out); the step overwrites it with the residual out - target
    pre: torch.Tensor  # pre-activations (R, B, k); ReLU overwrites them with the activations
    grad_hidden: torch.Tensor  # (R, B, k); with live neurons only, its storage holds (R, B, live)
    # Scratch for skipping dead neurons, allocated at the first step that skips (never on a GPU or for GeLU/SoLU):
    live_act: torch.Tensor | None = None  # flat, R * B * k: the live neurons' activations
    live_w2: torch.Tensor | None = None  # flat, 2 * R * out * k: their output weights, and after them their gradient
    skipped_dead: bool = False  # whether the last step left dead neurons out
    low: LowPrecisionCopies | None = None  # when the arrays are in a lower precision than the parameters

    @classmethod
    def allocate(cls, runs: int, batch_size: int, embed_dim: int, n_neurons: int, out_dim: int,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> Workspace:
        def empty(width: int) -> torch.Tensor:
            return torch.empty(runs, batch_size, width, device=device, dtype=dtype)

        low = None
        if dtype != torch.float32:
            def per_run(*shape: int) -> torch.Tensor:
                return torch.empty(runs, *shape, device=device, dtype=dtype)
            low = LowPrecisionCopies(per_run(n_neurons, embed_dim), per_run(n_neurons), per_run(out_dim, n_neurons),
                                     per_run(n_neurons, embed_dim), per_run(out_dim, n_neurons))
        return cls(empty(embed_dim), empty(out_dim), empty(n_neurons), empty(n_neurons), low=low)

    def live_scratch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.live_act is None or self.live_w2 is None:
            self.live_act = torch.empty_like(self.pre).view(-1)
            self.live_w2 = self.pre.new_empty(2 * self.target.shape[0] * self.target.shape[2] * self.pre.shape[2])
        return self.live_act, self.live_w2


@dataclass
class LowPrecisionCopies:
    """The parameters as the low-precision matmuls read them, and the weight gradients as they give them."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    grad_w1: torch.Tensor
    grad_w2: torch.Tensor


def _scratch(flat: torch.Tensor, *shape: int, offset: int = 0) -> torch.Tensor:
    """A contiguous (shape) view at the start (or `offset`) of a flat scratch buffer."""
    size = 1
    for dim in shape:
        size *= dim
    return flat[offset:offset + size].view(shape)


@dataclass
class Gradients:
    """d loss / d parameters, stacked like the parameters: w1 (R, k, m), b1 (R, k), w2 (R, out, k)."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor

    @classmethod
    def like(cls, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> Gradients:
        return cls(torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2))


def _relu_derivative(act: torch.Tensor):  # noqa: ANN202 (a closure)
    # autograd's own ReLU backward, in place: one pass (a masked_fill_ with a mask takes 20x longer)
    return lambda grad: torch.ops.aten.threshold_backward.grad_input(grad, act, 0.0, grad_input=grad)


def _activation_and_derivative(pre: torch.Tensor, nonlinearity: str) -> tuple[torch.Tensor, object]:
    """The activations, and a function taking d loss / d activations to d loss / d pre-activations."""
    if nonlinearity == "relu":
        act = pre.relu_()
        return act, _relu_derivative(act)
    if nonlinearity == "gelu":
        act = torch.nn.functional.gelu(pre)
        return act, lambda grad: torch.ops.aten.gelu_backward(grad, pre)
    if nonlinearity == "solu":
        exp = torch.exp(pre)
        act = pre * exp
        return act, lambda grad: grad.mul_(exp.add_(act))  # d/dx x e^x = e^x + x e^x
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _fused_relu_layer(ws: Workspace, w1: torch.Tensor, b1: torch.Tensor) -> tuple[torch.Tensor, object]:
    """relu(x @ w1.T + b1) into ws.pre, run by run, by cuBLASLt with the bias and the ReLU in the matmul's epilogue:
    no pass that broadcasts the bias into the output first and none for the ReLU (a GPU's paper-scale step
    spends more time on such passes than on the first layer's matmul)."""
    for r in range(ws.x.shape[0]):
        torch._addmm_activation(b1[r], ws.x[r], w1[r].T, out=ws.pre[r])
    return ws.pre, _relu_derivative(ws.pre)


def _first_layer(ws: Workspace, w1: torch.Tensor, b1: torch.Tensor, nonlinearity: str) -> tuple[torch.Tensor, object]:
    """The activations into ws.pre, and the function taking gradients back through the nonlinearity."""
    if nonlinearity == "relu" and ws.x.device.type == "cuda":
        return _fused_relu_layer(ws, w1, b1)
    torch.baddbmm(b1.unsqueeze(1), ws.x, w1.transpose(1, 2), out=ws.pre)
    return _activation_and_derivative(ws.pre, nonlinearity)


def live_neurons(act: torch.Tensor, max_live_share: float = MAX_LIVE_SHARE_TO_COMPACT) -> torch.Tensor | None:
    """Indices of the ReLU neurons active on some sample of some run, or None when more are than max_live_share.

    A NaN activation counts as live, so a diverging run still shows its NaN loss.
    """
    live = (act.amax(dim=(0, 1)) <= 0).logical_not_().nonzero().squeeze(1)
    return live if live.numel() <= max_live_share * act.shape[2] else None


def _output_and_gradients(ws: Workspace, act: torch.Tensor, w2: torch.Tensor, backward_through_activation,  # noqa: ANN001
                          l1_reg: torch.Tensor | None, grad_hidden: torch.Tensor, grads: Gradients) -> torch.Tensor:
    """Everything after the activations: the squared error, and `grads` from the residual back."""
    runs, batch_size = ws.x.shape[0], ws.x.shape[1]
    # act @ w2.T - target in the matmul itself, in the target's place: one pass over the outputs instead of three
    residual = ws.target.baddbmm_(act, w2.transpose(1, 2), beta=-1.0)
    accumulate = torch.promote_types(residual.dtype, torch.float32)
    if residual.is_cuda:  # a GPU's reduction tree is accurate (~1e-7) and fastest over a run's B x out values at once
        norms = torch.linalg.vector_norm(residual.view(runs, -1), dim=1, dtype=accumulate)
    else:  # the CPU's loses ~1e-4 of so long a sum: per sample first is exact to ~1e-7, and twice as fast
        norms = torch.linalg.vector_norm(torch.linalg.vector_norm(residual, dim=2, dtype=accumulate), dim=1)
    squared_error = norms.square_().div_(batch_size)

    scale = 2.0 / batch_size
    grads.w2.baddbmm_(residual.transpose(1, 2), act, beta=0.0, alpha=scale)
    grad_hidden.baddbmm_(residual, w2, beta=0.0, alpha=scale)
    if l1_reg is not None:
        grad_hidden.add_(act.sign().mul_((l1_reg / batch_size).view(runs, 1, 1)))
    grad_pre = backward_through_activation(grad_hidden)
    grads.w1.baddbmm_(grad_pre.transpose(1, 2), ws.x, beta=0.0)
    torch.sum(grad_pre, dim=1, dtype=grads.b1.dtype, out=grads.b1)
    return squared_error


def squared_error_and_gradients(ws: Workspace, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                                nonlinearity: str, l1_reg: torch.Tensor | None, grads: Gradients,
                                skip_dead_neurons: bool = False,
                                max_live_share: float = MAX_LIVE_SHARE_TO_COMPACT) -> torch.Tensor:
    """Fill `grads` with the gradient of the training loss and return each run's squared error (R,).

    Loss per run: sum((out - target)^2) / B + l1_reg * sum(|act|) / B, with ws.x and ws.target
    already holding the batch. The returned value is the squared-error term alone (what is recorded).
    `skip_dead_neurons` leaves ReLU neurons that nothing activates out of the large matmuls; finding
    them reads a count back to the host, so the trainer asks for it on the CPU only.
    """
    if ws.low is not None:
        return _in_low_precision(ws, w1, b1, w2, nonlinearity, l1_reg, grads)
    runs, batch_size = ws.x.shape[0], ws.x.shape[1]
    act, backward_through_activation = _first_layer(ws, w1, b1, nonlinearity)
    live = live_neurons(act, max_live_share) if skip_dead_neurons and nonlinearity == "relu" else None
    ws.skipped_dead = live is not None
    if live is None:
        return _output_and_gradients(ws, act, w2, backward_through_activation, l1_reg, ws.grad_hidden, grads)

    n_live, out_dim, embed_dim = live.numel(), w2.shape[1], w1.shape[2]
    # gather/scatter with a broadcast index: 5-10x faster than index_select/index_copy_ along the last dim
    act_columns = live.view(1, 1, -1).expand(runs, batch_size, n_live)
    w2_columns = live.view(1, 1, -1).expand(runs, out_dim, n_live)
    act_scratch, w2_scratch = ws.live_scratch()
    live_act = torch.gather(act, 2, act_columns, out=_scratch(act_scratch, runs, batch_size, n_live))
    live_w2 = torch.gather(w2, 2, w2_columns, out=_scratch(w2_scratch, runs, out_dim, n_live))
    live_grads = Gradients(w1.new_empty(runs, n_live, embed_dim), b1.new_empty(runs, n_live),
                           _scratch(w2_scratch, runs, out_dim, n_live, offset=live_w2.numel()))
    grad_hidden = _scratch(ws.grad_hidden.view(-1), runs, batch_size, n_live)
    squared_error = _output_and_gradients(ws, live_act, live_w2, _relu_derivative(live_act), l1_reg, grad_hidden,
                                          live_grads)
    grads.w1.zero_().index_copy_(1, live, live_grads.w1)
    grads.b1.zero_().index_copy_(1, live, live_grads.b1)
    grads.w2.zero_().scatter_(2, w2_columns, live_grads.w2)
    return squared_error


def _in_low_precision(ws: Workspace, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, nonlinearity: str,
                      l1_reg: torch.Tensor | None, grads: Gradients) -> torch.Tensor:
    """The step with every matmul in the workspace's precision (no dead-neuron skipping: a GPU's path)."""
    low = ws.low
    low.w1.copy_(w1)
    low.b1.copy_(b1)
    low.w2.copy_(w2)
    # b1's gradient is a sum over the batch: summed straight into fp32
    low_grads = Gradients(low.grad_w1, grads.b1, low.grad_w2)
    act, backward_through_activation = _first_layer(ws, low.w1, low.b1, nonlinearity)
    squared_error = _output_and_gradients(ws, act, low.w2, backward_through_activation, l1_reg, ws.grad_hidden,
                                          low_grads)
    grads.w1.copy_(low.grad_w1)
    grads.w2.copy_(low.grad_w2)
    return squared_error
