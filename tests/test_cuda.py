"""The GPU path: CUDA graphs, on-device sampling and TF32. Run on a machine with a CUDA GPU (CI has none);
the same step code runs on the CPU in every other test."""

import io

import numpy as np
import pytest
import torch

from core.presets import PAPER_BASE, preset_config
from core.step import Gradients, Workspace, squared_error_and_gradients
from core.train import Trainer, matmul_precision, worth_batching
from tests.helpers import with_library_lamb

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def quick_cuda():
    # 300 steps: past the warm-up, the capture, and the half-way point where bias decay stops (step 150)
    return preset_config("quick-negative-bias").replace(steps=300, snapshot_every=100, device="cuda")


def assert_same_training(a: Trainer, b: Trainer, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    torch.testing.assert_close(a.losses, b.losses, rtol=rtol, atol=atol)
    for name in ("w1", "b1", "w2"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol)


def test_graph_replays_train_like_eager_steps(quick_cuda):
    configs = [quick_cuda.replace(seed=1, lr=0.003), quick_cuda.replace(seed=2, l1_reg=0.01),
               quick_cuda.replace(seed=3, init_bias=0.0)]
    graphed, eager = Trainer(configs, cuda_graph=True), Trainer(configs, cuda_graph=False)
    graphed.advance(quick_cuda.steps)
    eager.advance(quick_cuda.steps)
    assert graphed._graph is not None and eager._graph is None
    assert_same_training(graphed, eager)
    assert [len(m) for m in graphed.log2_models] == [len(m) for m in eager.log2_models]


@pytest.mark.parametrize("task", ["decoder", "random_proj", "abs"])
def test_a_graphed_single_run_matches_the_library_lamb(quick_cuda, task):
    config = quick_cuda.replace(task=task, steps=100)
    graphed, library = Trainer([config], cuda_graph=True), with_library_lamb(Trainer([config], cuda_graph=False))
    graphed.advance(config.steps)
    library.advance(config.steps)
    # The two LAMBs round differently (the schedule's factor on 1 vs on lr, a reciprocal vs a division), and
    # a ReLU that flips on such a difference moves a few weights far: compare the whole, not each weight.
    torch.testing.assert_close(graphed.losses, library.losses, rtol=1e-4, atol=1e-6)
    for name in ("w1", "b1", "w2"):
        assert relative_error(getattr(graphed, name), getattr(library, name)) < 1e-3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_graphed_run_resumes_exactly(quick_cuda, precision):
    quick_cuda = quick_cuda.replace(precision=precision)
    straight, first = Trainer([quick_cuda]), Trainer([quick_cuda])
    straight.advance(quick_cuda.steps)
    first.advance(120)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    resumed = Trainer([quick_cuda])
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    resumed.advance(quick_cuda.steps - 120)
    assert_same_training(straight, resumed)


def step_on(device: str, dtype: torch.dtype, seed: int = 0, precision: str = "fp32",
            workspace_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """One forward-backward pass at paper shapes on fixed random inputs: [squared error, gradients]."""
    g = torch.Generator().manual_seed(seed)
    runs, batch, m, k, out = 2, 1024, 64, 1024, 512
    w1, b1, w2 = torch.randn(runs, k, m, generator=g) / 8, torch.randn(runs, k, generator=g) / 8, \
        torch.randn(runs, out, k, generator=g) / 32
    ws = Workspace.allocate(runs, batch, m, k, out, torch.device(device), workspace_dtype or torch.float32)
    ws.x.copy_(torch.randn(runs, batch, m, generator=g))
    ws.target.copy_(torch.rand(runs, batch, out, generator=g))
    tensors = [t.to(device=device, dtype=dtype) for t in (w1, b1, w2)]
    if workspace_dtype is None:
        for name in ("x", "target", "pre", "grad_hidden"):
            setattr(ws, name, getattr(ws, name).to(dtype))
    grads = Gradients.like(*tensors)
    with matmul_precision(precision, torch.device(device)):
        error = squared_error_and_gradients(ws, *tensors, "relu", None, grads)
    return [t.double().cpu() for t in (error, grads.w1, grads.b1, grads.w2)]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_the_cuda_step_computes_the_float64_definition():
    reference = step_on("cpu", torch.float64)
    fp32, tf32 = step_on("cuda", torch.float32), step_on("cuda", torch.float32, precision="tf32")
    for exact, rounded, ref in zip(fp32, tf32, reference):
        assert relative_error(exact, ref) < 1e-5
        assert 0 < relative_error(rounded, ref) < 1e-2  # TF32 rounds the matmul inputs to 10 mantissa bits
    bf16 = step_on("cuda", torch.float32, workspace_dtype=torch.bfloat16)
    for rounded, ref in zip(bf16, reference):
        assert 0 < relative_error(rounded, ref) < 3e-2  # inputs and activations in bfloat16: 8 mantissa bits


def test_bf16_trains_in_bfloat16_and_its_graph_replays_like_eager_steps(quick_cuda):
    configs = [quick_cuda.replace(precision="bf16", seed=1), quick_cuda.replace(precision="bf16", seed=2, l1_reg=0.01)]
    graphed, eager = Trainer(configs, cuda_graph=True), Trainer(configs, cuda_graph=False)
    assert graphed.workspace.pre.dtype == torch.bfloat16 and graphed.w1.dtype == torch.float32
    graphed.advance(quick_cuda.steps)
    eager.advance(quick_cuda.steps)
    assert graphed._graph is not None
    assert_same_training(graphed, eager)
    exact = Trainer([c.replace(precision="fp32") for c in configs])
    exact.advance(quick_cuda.steps)
    late = slice(quick_cuda.steps - 50, quick_cuda.steps)
    torch.testing.assert_close(graphed.losses[:, late].mean(1), exact.losses[:, late].mean(1), rtol=0.05, atol=0)


def test_paper_shape_sweeps_train_stacked_on_a_gpu():
    assert worth_batching(PAPER_BASE.replace(device="cuda"))


def test_a_graphed_run_that_diverges_keeps_its_finite_copies():
    from core.runfile import build_run_file
    from tests.helpers import diverging_config

    trainer = Trainer([diverging_config().replace(device="cuda")], cuda_graph=True)
    trainer.advance(2000)
    error = trainer.snapshot().runs[0].error
    assert trainer._graph is not None
    losses = trainer.losses[0, :2000].cpu().numpy()
    first_bad = int(np.argmin(np.isfinite(losses))) + 1  # losses[i] is step i + 1's
    assert not np.isfinite(losses).all() and trainer.diverged_at == [first_bad]
    assert error is not None and f"at step {first_bad}:" in error
    record = build_run_file(trainer)
    assert record is not None and record["metrics"]["diverged_at"] == first_bad
    assert all(torch.isfinite(t).all() for t in record["final_model"].values())
