"""The hand-written forward/backward pass equals autograd on the plain definitions (core.model)."""

import pytest
import torch

from core.model import forward
from core.step import (
    MAX_LIVE_SHARE_TO_COMPACT,
    Gradients,
    Workspace,
    _fused_relu_layer,
    live_neurons,
    squared_error_and_gradients,
)


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


@pytest.mark.parametrize("dead_share", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("with_l1", [False, True])
def test_skipping_dead_relu_neurons_gives_the_same_gradients(dead_share, with_l1):
    runs, batch, m, k, out_dim = 3, 64, 6, 40, 12
    g = torch.Generator().manual_seed(11)
    w1 = torch.randn(runs, k, m, generator=g) * 0.5
    b1 = torch.randn(runs, k, generator=g) * 0.5
    n_dead = int(dead_share * k)
    b1[:, :n_dead] = -50.0  # dead in every run: left out of the large matmuls
    b1[0, n_dead:n_dead + 3] = -50.0  # dead in one run only: computed, since the others use them
    w2 = torch.randn(runs, out_dim, k, generator=g) * 0.3
    l1 = torch.tensor([0.0, 0.05, 0.2]) if with_l1 else torch.zeros(runs)
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"))
    ws.x.copy_(torch.randn(runs, batch, m, generator=g))
    present = torch.rand(runs, batch, out_dim, generator=g) < 0.2
    ws.target.copy_(torch.rand(runs, batch, out_dim, generator=g) * present)
    expected_se, expected_grads = plain_loss_and_grads(ws.x.clone(), ws.target.clone(), w1, b1, w2, "relu", l1)
    act = torch.baddbmm(b1.unsqueeze(1), ws.x, w1.transpose(1, 2)).relu_()
    assert (live_neurons(act) is not None) == (1 - dead_share <= MAX_LIVE_SHARE_TO_COMPACT)  # both paths are tested

    grads = Gradients.like(w1, b1, w2)
    for stale in (grads.w1, grads.b1, grads.w2):
        stale.fill_(123.0)
    se = squared_error_and_gradients(ws, w1, b1, w2, "relu", l1 if with_l1 else None, grads, skip_dead_neurons=True)

    assert torch.allclose(se, expected_se, rtol=1e-5)
    for ours, theirs in zip((grads.w1, grads.b1, grads.w2), expected_grads):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert not grads.w2[:, :, :n_dead].any() and not grads.w1[:, :n_dead].any() and not grads.b1[:, :n_dead].any()


def test_a_nan_neuron_is_not_skipped_as_dead():
    runs, batch, m, k, out_dim = 1, 16, 4, 10, 5
    w1, b1, w2 = torch.ones(runs, k, m), torch.full((runs, k), -50.0), torch.ones(runs, out_dim, k)
    w1[0, 3, 0] = float("nan")
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"))
    ws.x.fill_(0.1)
    ws.target.zero_()
    se = squared_error_and_gradients(ws, w1, b1, w2, "relu", None, Gradients.like(w1, b1, w2), skip_dead_neurons=True)
    assert ws.skipped_dead  # the nine dead neurons were left out, the NaN one kept
    assert torch.isnan(se).all()


def test_one_workspace_serves_steps_with_changing_numbers_of_live_neurons():
    runs, batch, m, k, out_dim = 2, 32, 5, 30, 8
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(runs, k, m, generator=g), torch.randn(runs, out_dim, k, generator=g) * 0.3
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"))
    grads = Gradients.like(w1, torch.zeros(runs, k), w2)
    for n_live in (5, 30, 0, 12, 22, 3):
        b1 = torch.randn(runs, k, generator=g) * 0.5
        b1[:, n_live:] = -100.0
        ws.x.copy_(torch.randn(runs, batch, m, generator=g))
        ws.target.copy_(torch.rand(runs, batch, out_dim, generator=g))
        expected_se, expected_grads = plain_loss_and_grads(ws.x.clone(), ws.target.clone(), w1, b1, w2, "relu",
                                                           torch.zeros(runs))
        se = squared_error_and_gradients(ws, w1, b1, w2, "relu", None, grads, skip_dead_neurons=True)
        assert ws.skipped_dead == (n_live <= MAX_LIVE_SHARE_TO_COMPACT * k)
        assert torch.allclose(se, expected_se, rtol=1e-5)
        for ours, theirs in zip((grads.w1, grads.b1, grads.w2), expected_grads):
            assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6), n_live


def test_the_fused_relu_layer_computes_relu_of_the_affine_map():
    """The GPU's first layer (cuBLASLt epilogue there); on the CPU the same op computes it unfused."""
    g = torch.Generator().manual_seed(3)
    ws = Workspace.allocate(2, 16, 4, 8, 5, torch.device("cpu"))
    ws.x.copy_(torch.randn(2, 16, 4, generator=g))
    w1, b1 = torch.randn(2, 8, 4, generator=g), torch.randn(2, 8, generator=g)
    act, _ = _fused_relu_layer(ws, w1, b1)
    expected = torch.relu(ws.x @ w1.transpose(1, 2) + b1.unsqueeze(1))
    torch.testing.assert_close(act, expected)
    assert (act == 0).any() and (act > 0).any()


@pytest.mark.parametrize("nonlinearity", ["relu", "gelu", "solu"])
def test_a_bf16_workspace_computes_the_definition_to_bf16_accuracy(nonlinearity):
    """The GPU's bf16 path (run here on the CPU): the same loss and gradients, to bfloat16's 8 mantissa bits,
    with fp32 parameters and fp32 gradients out."""
    runs, batch, m, k, out_dim = 2, 256, 8, 48, 24
    g = torch.Generator().manual_seed(5)
    w1 = torch.randn(runs, k, m, generator=g) * 0.5
    b1 = torch.randn(runs, k, generator=g) * 0.5 - 0.2
    w2 = torch.randn(runs, out_dim, k, generator=g) * 0.3
    l1 = torch.tensor([0.0, 0.1])
    x = torch.randn(runs, batch, m, generator=g)
    target = torch.rand(runs, batch, out_dim, generator=g) * (torch.rand(runs, batch, out_dim, generator=g) < 0.2)
    expected_se, expected_grads = plain_loss_and_grads(x.double(), target.double(), w1.double(), b1.double(),
                                                       w2.double(), nonlinearity, l1.double())
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"), torch.bfloat16)
    assert ws.x.dtype == ws.pre.dtype == ws.target.dtype == torch.bfloat16
    ws.x.copy_(x)
    ws.target.copy_(target)
    grads = Gradients.like(w1, b1, w2)
    grads.w1.fill_(123.0)
    se = squared_error_and_gradients(ws, w1, b1, w2, nonlinearity, l1, grads)

    assert se.dtype == grads.w1.dtype == grads.b1.dtype == grads.w2.dtype == torch.float32
    for ours, theirs in zip((se, grads.w1, grads.b1, grads.w2), (expected_se, *expected_grads)):
        error = float((ours.double() - theirs).norm() / theirs.norm())
        assert 0 < error < 3e-2  # rounded (not fp32), by a few of bf16's steps of 2^-8 (SoLU's product the most)


def test_the_squared_error_of_a_large_batch_is_exact_to_float32_rounding():
    """Millions of residuals summed in fp32 (a paper-scale batch) keep the float64 sum to 1e-6."""
    runs, batch, m, k, out_dim = 1, 8192, 4, 8, 512
    g = torch.Generator().manual_seed(3)
    w1, b1 = torch.randn(runs, k, m, generator=g), torch.randn(runs, k, generator=g)
    w2 = torch.zeros(runs, out_dim, k)  # output 0: the squared error is the target's
    ws = Workspace.allocate(runs, batch, m, k, out_dim, torch.device("cpu"))
    ws.x.copy_(torch.randn(runs, batch, m, generator=g))
    target = torch.randn(runs, batch, out_dim, generator=g)
    ws.target.copy_(target)
    se = squared_error_and_gradients(ws, w1, b1, w2, "relu", None, Gradients.like(w1, b1, w2))
    expected = target.double().square().sum(dim=(1, 2)) / batch
    assert float((se.double() - expected).abs().max() / expected.max()) < 1e-6
