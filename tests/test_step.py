"""The hand-written forward/backward pass equals autograd on the plain definitions (core.model)."""

import pytest
import torch

from core.model import forward
from core.step import Gradients, Workspace, squared_error_and_gradients


def plain_loss_and_grads(x, target, w1, b1, w2, nonlinearity, l1):
    """ALGORITHM.md's loss, summed over runs, differentiated by autograd."""
    params = [t.clone().requires_grad_(True) for t in (w1, b1, w2)]
    out, act = forward(x, *params, nonlinearity)
    batch = x.shape[1]
    squared_error = (out - target).square().sum(dim=(1, 2)) / batch
    loss = squared_error.sum() + (l1 * act.abs().sum(dim=(1, 2))).sum() / batch
    loss.backward()
    return squared_error.detach(), [p.grad for p in params]


@pytest.mark.parametrize("nonlinearity", ["relu", "gelu", "solu"])
@pytest.mark.parametrize("with_l1", [False, True])
def test_hand_written_gradients_equal_autograd(nonlinearity, with_l1):
    runs, batch, m, k, out_dim = 3, 64, 6, 20, 12
    g = torch.Generator().manual_seed(7)
    w1 = torch.randn(runs, k, m, generator=g) * 0.5
    b1 = torch.randn(runs, k, generator=g) * 0.5 - 0.2
    w2 = torch.randn(runs, out_dim, k, generator=g) * 0.3
    l1 = torch.tensor([0.0, 0.05, 0.2]) if with_l1 else torch.zeros(runs)
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"))
    ws.x.copy_(torch.randn(runs, batch, m, generator=g))
    present = torch.rand(runs, batch, out_dim, generator=g) < 0.2
    ws.target.copy_(torch.rand(runs, batch, out_dim, generator=g) * present)
    expected_se, expected_grads = plain_loss_and_grads(ws.x.clone(), ws.target.clone(), w1, b1, w2, nonlinearity, l1)

    grads = Gradients.like(w1, b1, w2)
    grads.w1.fill_(123.0)  # stale values from a previous step must not leak into the new gradient
    se = squared_error_and_gradients(ws, w1, b1, w2, nonlinearity, l1 if with_l1 else None, grads)

    assert torch.allclose(se, expected_se, rtol=1e-5)
    for ours, theirs in zip((grads.w1, grads.b1, grads.w2), expected_grads):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
