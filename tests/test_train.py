import io
import math

import numpy as np
import pytest
import torch

from core.config import RunConfig
from core.model import solu
from core.presets import PAPER_BASE, preset_config
from core.stacked_lamb import paper_lamb
from core.train import (
    IncompatibleCheckpoint,
    Trainer,
    TrainingDiverged,
    is_log2_checkpoint,
    iterate_training,
    scheduled_lr,
    train,
    worth_batching,
)
from tests.helpers import diverging_config, with_library_lamb


def test_same_seed_same_numbers(tiny):
    a, b = Trainer([tiny]), Trainer([tiny])
    a.advance(40)
    b.advance(40)
    assert torch.equal(a.losses, b.losses)
    assert torch.equal(a.weights[0].w1, b.weights[0].w1)


def test_runs_trained_together_equal_runs_trained_alone_bit_for_bit(tiny):
    """A sweep's run and the same config and seed trained alone: with the library's LAMB for the single run their
    losses parted at step 51 (quick-negative-bias), and after 8192 steps they had found other basins."""
    configs = [tiny.replace(seed=1, lr=0.003), tiny.replace(seed=2, init_bias=-1.0, bias_decay=2.0),
               tiny.replace(seed=3, l1_reg=0.01, lr=0.003)]
    together = Trainer(configs)
    together.advance(tiny.steps)
    for r, config in enumerate(configs):
        alone = Trainer([config])
        alone.advance(tiny.steps)
        assert torch.equal(together.losses[r], alone.losses[0])
        for a, b in zip(together.weights[r].tensors(), alone.weights[0].tensors()):
            assert torch.equal(a, b)


def test_runs_train_as_with_the_librarys_lamb(tiny):
    """StackedLamb, which every run trains with, does the library's update: the same run with the library's Lamb."""
    for config in (tiny, tiny.replace(init_bias=-1.0, bias_decay=2.0, l1_reg=0.01, lr=0.003)):
        ours, library = Trainer([config]), with_library_lamb(Trainer([config]))
        ours.advance(config.steps)
        library.advance(config.steps)
        assert torch.allclose(ours.losses, library.losses, rtol=1e-5, atol=1e-7)
        for a, b in zip(ours.weights[0].tensors(), library.weights[0].tensors()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_single_runs_checkpoint_from_the_library_lamb_resumes(tiny):
    """Checkpoints of single runs written before every run took StackedLamb hold the library's state: a paused run
    goes on from its step (not from step 0), as the library would have taken it on."""
    old = with_library_lamb(Trainer([tiny]))
    old.advance(20)
    buffer = io.BytesIO()  # through bytes, as a worker stores it: the live state's tensors would be shared
    torch.save({**old.state_dict(), "optimizer_kind": "library"}, buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    resumed = Trainer([tiny])
    resumed.load_state_dict(state)
    assert resumed.step == 20 and resumed.current_lrs() == pytest.approx([old.optimizer.param_groups[0]["lr"]])
    old.advance(20)
    resumed.advance(20)
    assert torch.allclose(resumed.losses, old.losses, rtol=1e-5, atol=1e-7)
    pair = [tiny, tiny.replace(seed=1)]
    with pytest.raises(IncompatibleCheckpoint, match="library LAMB"):  # a batched job's state never was the library's
        Trainer(pair).load_state_dict({**state, "configs": [c.to_dict() for c in pair]})


def test_incompatible_runs_refused(tiny):
    with pytest.raises(ValueError, match="share"):
        Trainer([tiny, tiny.replace(n_neurons=32)])


def test_bias_decay_only_in_first_half(tiny):
    # lr tiny so that the optimizer barely moves the bias: the decay factor dominates
    config = tiny.replace(lr=1e-6, bias_decay=1e4, init_bias=-1.0, steps=20)
    trainer = Trainer([config])
    factor = 1 - 1e4 * 1e-6
    before = trainer.weights[0].b1.detach().clone()
    trainer.advance(10)
    after_first_half = trainer.weights[0].b1.detach().clone()
    assert torch.allclose(after_first_half, before * factor**10, rtol=1e-3)
    trainer.advance(10)
    assert torch.allclose(trainer.weights[0].b1, after_first_half, rtol=1e-3, atol=1e-6)


def test_cosine_schedule_period_1024():
    trainer = Trainer([RunConfig(n_features=8, embed_dim=2, n_neurons=4, batch_size=4, steps=1100, lr=0.01)])
    seen = []
    for _ in range(1025):
        seen.append(trainer.current_lrs()[0])
        trainer.advance(1)
    assert seen[0] == pytest.approx(0.01)
    assert seen[512] == pytest.approx(0.0, abs=1e-9)
    assert seen[256] == pytest.approx(0.005, rel=1e-6)
    assert seen[1024] == pytest.approx(0.01, rel=1e-6)
    # the closed form the live view draws the schedule from: seen[i] is the rate of step i + 1
    assert scheduled_lr(0.01, np.arange(1, 1026)) == pytest.approx(seen, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("n_runs", [1, 2])
def test_a_snapshot_reports_the_learning_rate_its_last_step_used(tiny, n_runs):
    configs = [tiny.replace(steps=1100, lr=0.01 * (r + 1)) for r in range(n_runs)]
    trainer = Trainer(configs)
    used = []
    step_schedule = trainer.scheduler.step

    def record_then_step() -> None:
        used.append(trainer.current_lrs())
        step_schedule()

    trainer.scheduler.step = record_then_step
    for n in (1, 255, 256, 300, 1):  # to steps 1, 256, 512 (the trough), 812, 813
        trainer.advance(n)
        reported = [run.lr for run in trainer.snapshot().runs]
        assert reported == pytest.approx(used[-1], rel=1e-9, abs=1e-15), trainer.step


def test_l1_term_changes_gradients_only_when_set(tiny):
    plain, reg = Trainer([tiny]), Trainer([tiny.replace(l1_reg=0.1)])
    plain.advance(5)
    reg.advance(5)
    # the recorded loss is the squared error alone; the L1 term acts only through training
    assert not torch.allclose(plain.weights[0].w1, reg.weights[0].w1)
    reg_activity = reg.sfa().sum()
    assert reg_activity < plain.sfa().sum()


def test_log2_checkpoints_at_powers_of_two(tiny):
    assert [i for i in range(70) if is_log2_checkpoint(i)] == [0, 1, 3, 7, 15, 31, 63]
    trainer = Trainer([tiny])
    trainer.advance(tiny.steps)
    assert len(trainer.log2_models[0]) == 7
    assert set(trainer.log2_models[0][0]) == {"0.weight", "0.bias", "2.weight"}


def test_snapshots_cover_every_step_once(tiny):
    trainer = Trainer([tiny])
    snaps = list(iterate_training(trainer))
    assert [s.step for s in snaps] == [1, 2, 4, 8, 16, 32, 48, 64]  # powers of 2 before the first interval
    losses = np.concatenate([s.runs[0].new_losses for s in snaps])
    assert np.array_equal(losses, trainer.losses[0].numpy())
    last = snaps[-1].runs[0]
    assert last.sfa.shape == (tiny.n_neurons, tiny.n_features)
    assert 0 <= last.summary.mono_ratio <= tiny.n_neurons / tiny.n_features
    assert snaps[-1].done


@pytest.mark.parametrize("init_bias", [0.0, -1.0])  # -1: dead neurons, left out of the matmuls when checkpointed
def test_resume_from_checkpoint_continues_exactly(tiny, init_bias):
    tiny = tiny.replace(init_bias=init_bias, bias_decay=4.0)
    straight, first, resumed = Trainer([tiny]), Trainer([tiny]), Trainer([tiny])
    for trainer in (straight, first, resumed):
        trainer.skip_dead_neurons = True  # the engine skips only at larger shapes, where it pays
    straight.advance(tiny.steps)
    first.advance(24)
    assert first.workspace.skipped_dead == (init_bias < 0)
    state = first.state_dict()
    resumed.load_state_dict(state)
    # restored and checkpointed again without a step (a stop saved from its checkpoint): the same state, and none
    # of the batch's arrays allocated
    assert resumed.state_dict()["skipped_dead"] == state["skipped_dead"] and resumed._workspace is None
    resumed.advance(tiny.steps)
    assert torch.equal(resumed.losses, straight.losses)
    assert torch.equal(resumed.weights[0].w2, straight.weights[0].w2)


def test_solu_overflow_fails_with_clear_error(tiny):
    assert math.isinf(solu(torch.tensor(100.0)).item())
    config = tiny.replace(nonlinearity="solu", init_bias=80.0)
    with pytest.raises(TrainingDiverged, match="SoLU"):
        for _ in train(config):
            pass


def test_all_tasks_and_nonlinearities_train(tiny):
    for task in ("decoder", "random_proj", "abs"):
        for nonlinearity in ("relu", "gelu", "solu"):
            trainer = Trainer([tiny.replace(task=task, nonlinearity=nonlinearity, sample_kind="power_law")])
            trainer.advance(tiny.steps)
            early, late = trainer.losses[0, :8].mean(), trainer.losses[0, -8:].mean()
            assert torch.isfinite(trainer.losses).all()
            assert late < early, (task, nonlinearity)


def test_batched_runs_resume_from_checkpoint_exactly(tiny):
    configs = [tiny.replace(seed=1, lr=0.003), tiny.replace(seed=2, lr=0.01, init_bias=-1.0, bias_decay=2.0)]
    straight = Trainer(configs)
    straight.advance(tiny.steps)
    first = Trainer(configs)
    first.advance(24)
    resumed = Trainer(configs)
    resumed.load_state_dict(first.state_dict())
    resumed.advance(tiny.steps)
    assert torch.equal(resumed.losses, straight.losses)
    assert torch.equal(resumed.w1, straight.w1)
    assert resumed.current_lrs() == pytest.approx([0.003 * straight.current_lrs()[1] / 0.01,
                                                   straight.current_lrs()[1]])


def test_lamb_step_is_the_papers_without_bias_correction():
    """ALGORITHM.md: w -= lr * (||w|| clamped at 10) / (||u|| + eps) * u, u = m / (sqrt(v) + eps), m, v EMAs."""
    g = torch.Generator().manual_seed(0)
    w0, grad = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    w = w0.clone()
    w.grad = grad.clone()
    paper_lamb([w], lr=0.01).step()
    m, v = 0.1 * grad, 0.001 * grad * grad
    u = m / (v.sqrt() + 1e-6)
    expected = w0 - 0.01 * w0.norm().clamp(max=10) / (u.norm() + 1e-6) * u
    assert torch.allclose(w, expected, rtol=1e-6, atol=1e-7)


def test_tf32_precision_switches_cuda_matmuls_only_while_training(tiny):
    from core.train import matmul_precision

    before = torch.backends.cuda.matmul.fp32_precision
    for precision in ("tf32", "bf16"):  # bf16's step leaves only the sampler's projection in float32
        with matmul_precision(precision, torch.device("cuda")):
            assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == before
    # a CPU always computes in fp32: the same numbers as the default
    exact, tf32, bf16 = (Trainer([tiny.replace(precision=p)]) for p in ("fp32", "tf32", "bf16"))
    for trainer in (exact, tf32, bf16):
        trainer.advance(20)
    assert torch.equal(exact.losses, tf32.losses) and torch.equal(exact.losses, bf16.losses)
    assert bf16.where().endswith(", fp32 (bf16 needs a CUDA GPU)") and "fp32" not in exact.where()
    assert tiny.replace(precision="bf17").validate()["precision"].startswith("precision must be one of")


def test_bf16_computes_in_bfloat16_on_a_gpu_with_bf16_units_only(monkeypatch):
    from core.train import compute_dtype

    cuda = torch.device("cuda")
    assert compute_dtype("bf16", torch.device("cpu")) == compute_dtype("tf32", cuda) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert compute_dtype("bf16", cuda) == torch.bfloat16  # Ampere on
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert compute_dtype("bf16", cuda) == torch.float32  # emulated only: a V100, a T4


def test_the_gpus_bf16_path_trains_like_fp32_within_rounding():
    """bf16 as a GPU trains it (run here on the CPU): the same samples, a loss curve within bf16's rounding
    of fp32's, and fp32 weights and losses kept."""
    config = preset_config("quick-negative-bias").replace(steps=400, batch_size=128)
    exact, low = Trainer([config]), Trainer([config], dtype=torch.bfloat16)
    exact.advance(config.steps)
    low.advance(config.steps)
    assert low.workspace.pre.dtype == torch.bfloat16 and low.w1.dtype == low.losses.dtype == torch.float32
    first = slice(0, 8)  # before rounding differences compound: the same batches, nearly the same losses
    torch.testing.assert_close(low.losses[0, first], exact.losses[0, first], rtol=2e-2, atol=0)
    late = slice(config.steps - 100, config.steps)
    assert float(low.losses[0, late].mean()) == pytest.approx(float(exact.losses[0, late].mean()), rel=0.05)


def test_dense_sampling_path_trains_like_the_sparse_one(tiny):
    """Dense features (eps > 1/8) take the one-uniform-per-cell path, the one a GPU always takes."""
    dense = Trainer([tiny.replace(eps=0.5, steps=200)])
    dense.advance(200)
    assert torch.isfinite(dense.losses).all()
    assert dense.losses[0, -20:].mean() < 0.8 * dense.losses[0, :20].mean()


def test_dead_neurons_are_skipped_on_the_cpu_where_it_pays(tiny):
    assert not Trainer([tiny]).skip_dead_neurons  # small shapes: gathering the live neurons costs what it saves
    config = tiny.replace(n_features=256, embed_dim=16, n_neurons=256, batch_size=1024, init_bias=-0.7, eps=1 / 64,
                          bias_decay=0.5, steps=32)
    skipping, dense = Trainer([config]), Trainer([config])
    assert skipping.skip_dead_neurons
    dense.skip_dead_neurons = False
    skipping.advance(8)
    dense.advance(8)
    assert skipping.workspace.skipped_dead and not dense.workspace.skipped_dead
    assert 0.1 < (skipping.workspace.pre > 0).any(dim=1).float().mean() < 0.75  # some neurons live, most not
    assert torch.allclose(skipping.losses, dense.losses, rtol=1e-5)
    assert torch.allclose(skipping.w2, dense.w2, atol=1e-6)


def test_paper_shape_sweeps_run_one_job_per_value_on_the_cpu():
    assert not worth_batching(PAPER_BASE.replace(device="cpu"))
    assert worth_batching(PAPER_BASE.replace(device="cpu", n_features=128, embed_dim=16, n_neurons=256,
                                             batch_size=512))


def test_a_checkpoint_from_another_device_or_optimizer_is_refused_untouched(tiny):
    """A CUDA generator cannot take a CPU one's state, and a graphed GPU run's LAMB is not the library's."""
    trainer = Trainer([tiny])
    trainer.advance(10)
    state = trainer.state_dict()
    fresh = Trainer([tiny])
    with pytest.raises(IncompatibleCheckpoint, match="written on the cuda"):
        fresh.load_state_dict({**state, "device_type": "cuda"})
    with pytest.raises(IncompatibleCheckpoint, match="moments have other shapes"):
        fresh.load_state_dict({**state, "optimizer_kind": "library"})
    assert fresh.step == 0
    fresh.load_state_dict(state)
    assert fresh.step == 10


def test_weights_gone_nan_are_reported_as_divergence_even_with_a_finite_loss(tiny):
    trainer = Trainer([tiny, tiny.replace(seed=5)])
    trainer.advance(10)
    trainer.snapshot()
    trainer.weights[1].w1[3, 0] = float("nan")  # as a fused GPU ReLU could hide it from the loss
    snap = trainer.snapshot()
    assert snap.runs[0].error is None
    assert "weights became NaN or infinite by step 10" in snap.runs[1].error


def test_one_step_runs_never_decay_the_bias(tiny):
    config = tiny.replace(steps=1, bias_decay=50.0, lr=0.01, init_bias=0.5, snapshot_every=1)
    decayed = Trainer([config])
    plain = Trainer([config.replace(bias_decay=0.0)])
    decayed.advance(1)
    plain.advance(1)
    assert torch.equal(decayed.b1, plain.b1)  # the first half of one step is empty (as in the paper's loop)


def test_an_init_variant_is_another_start_in_the_same_world(tiny):
    from core.compare import IncompatibleRuns, Model, check_interpolable
    from core.runfile import build_run_file

    paper, variant, again = (Trainer([tiny.replace(task="random_proj", init_variant=v)]) for v in (0, 1, 1))
    assert torch.equal(paper.embedders[0], variant.embedders[0])  # the seed's world...
    assert torch.equal(paper.output_embedders[0], variant.output_embedders[0])
    assert not torch.equal(paper.weights[0].w1, variant.weights[0].w1)  # ...from another start
    assert torch.equal(variant.weights[0].w1, again.weights[0].w1)  # which the variant fixes
    for trainer in (paper, variant, again):
        trainer.advance(8)
    assert not torch.equal(paper.losses[0, :8], variant.losses[0, :8])  # other samples too
    assert torch.equal(variant.losses[0, :8], again.losses[0, :8])
    models = [Model.from_record(build_run_file(t)) for t in (paper, variant)]
    check_interpolable(*models)  # one world: the basin line between them is measured
    other_world = Model.from_record(build_run_file(Trainer([tiny.replace(task="random_proj", seed=1)])))
    with pytest.raises(IncompatibleRuns, match="vary Init variant"):
        check_interpolable(models[0], other_world)
    stacked = Trainer([tiny.replace(init_variant=0), tiny.replace(init_variant=1)])  # one job, as a comparison
    assert torch.equal(stacked.weights[1].w1, Trainer([tiny.replace(init_variant=1)]).weights[0].w1)


def test_snapshots_come_at_each_power_of_2_before_the_first_interval_then_every_interval():
    """The mono and bias curves on a log-step axis started at the first interval (step 256 of a quick run): the bias
    moving from its init, the paper's story, never showed."""
    from core.train import iterate_training, next_snapshot_step

    steps, step = [], 0
    while step < 1100:
        step = next_snapshot_step(step, 256)
        steps.append(step)
    assert steps[:12] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024]
    assert [next_snapshot_step(s, 3) for s in range(7)] == [1, 2, 3, 6, 6, 6, 9]  # 4 is past the first interval
    config = RunConfig(n_features=8, embed_dim=3, n_neurons=6, eps=1 / 8, batch_size=16, steps=40,
                       snapshot_every=16, device="cpu")
    assert [snap.step for snap in iterate_training(Trainer([config]))] == [1, 2, 4, 8, 16, 32, 40]


def test_divergence_names_the_first_step_whose_loss_was_not_finite():
    trainer = Trainer([diverging_config()])
    trainer.advance(300)
    error = trainer.snapshot().runs[0].error
    losses = trainer.losses[0, :300].numpy()
    first_bad = int(np.argmin(np.isfinite(losses))) + 1  # losses[i] is step i + 1's, as every history counts
    assert not np.isfinite(losses).all() and trainer.diverged_at == [first_bad]
    assert f"loss became {losses[first_bad - 1]} at step {first_bad}:" in error
