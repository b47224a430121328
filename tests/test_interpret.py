"""Section-5 views on tiny hand-built models whose answers are known."""

import numpy as np
import pytest
import torch

from core.compare import Model, evaluation_batch, model_loss
from core.config import RunConfig
from core.interpret import (
    feature_view,
    linear_map_summary,
    mono_feature_of,
    mono_summary,
    neuron_view,
    pair_interference,
    poly_linear_map,
)


def identity_model(n: int = 4, task: str = "decoder") -> Model:
    """m = N (only for hand-built checks): E = I, W1 = I, b = 0, W2 = I, so the model is ReLU(v)."""
    config = RunConfig(n_features=n, embed_dim=n, n_neurons=n, task=task)  # hand-built, never trained
    eye = torch.eye(n)
    return Model(config, eye.clone(), torch.zeros(n), eye.clone(), eye.clone(), None)


def sfa_of(model: Model) -> np.ndarray:
    return model.sfa()


def test_identity_model_every_neuron_is_mono_for_its_feature():
    model = identity_model()
    sfa = sfa_of(model)
    assert list(mono_feature_of(sfa)) == [0, 1, 2, 3]
    view = feature_view(model, sfa, 2)
    assert list(view.neurons) == [2]
    assert view.input_weights[0] == pytest.approx(1.0) and view.output_weights[0] == pytest.approx(1.0)
    assert np.allclose(view.total, view.ideal) and np.allclose(view.mono_part, view.ideal)
    assert np.allclose(view.poly_part, 0)
    summary = mono_summary(model, sfa, samples=512)
    assert summary.counts == {"0": 0, "1": 4, "2": 0, "3+": 0}
    assert summary.group_losses["1"] == pytest.approx(0.0, abs=1e-7)  # ReLU(v) = v for v >= 0


def test_neuron_active_for_exactly_one_feature():
    model = identity_model()
    w1 = model.w1.clone()
    w1[3] = torch.tensor([0.5, 0.5, 0.0, 0.0])  # neuron 3 now reads features 0 and 1
    model = Model(model.config, w1, model.b1, model.w2, model.embedder, None)
    sfa = sfa_of(model)
    view = neuron_view(model, sfa, 3)
    assert not view.monosemantic and view.score == pytest.approx(0.5) and list(view.top_features) == [0, 1]
    assert neuron_view(model, sfa, 2).monosemantic
    assert mono_summary(model, sfa, samples=64).counts == {"0": 1, "1": 3, "2": 0, "3+": 0}


def test_rank_one_poly_part():
    n = 4
    model = identity_model(n)
    u = torch.tensor([1.0, 2.0, 0.0, 1.0])
    # neurons 0 and 1 read u together (polysemantic); their outputs write 0.5 * u each: W2 W1 = u u^T
    w1 = torch.zeros(n, n)
    w1[0] = w1[1] = u
    w2 = torch.zeros(n, n)
    w2[:, 0] = w2[:, 1] = 0.5 * u
    model = Model(model.config, w1, torch.zeros(n), w2, torch.eye(n), None)
    linear = poly_linear_map(model, sfa_of(model))
    assert np.allclose(linear.matrix, np.outer(u, u))
    assert linear.rank90 == 1 and np.sum(linear.singular_values > 1e-6) == 1
    exact = linear_map_summary(2.0 * np.eye(3))
    assert exact.ideal_scale == pytest.approx(2.0) and exact.ideal_error == pytest.approx(0.0)
    assert linear.ideal_error > 0.5  # rank one is far from a scaled identity


def test_poly_map_is_measured_against_the_identity_as_far_as_the_input_carries_it():
    # m = 3 < N = 8: any map through the input has rank <= 3, so against c I itself even the best one reads
    # sqrt(1 - 3/8) = 0.79; the best is c times the projection onto the embedder's rows, and it reads 0
    n, m = 8, 3
    embedder = torch.randn(m, n, generator=torch.Generator().manual_seed(0)).abs() / m**0.5
    config = RunConfig(n_features=n, embed_dim=m, n_neurons=m)
    w2 = 0.7 * torch.linalg.pinv(embedder)  # neurons read E v (all positive: polysemantic, none dead)
    model = Model(config, torch.eye(m), torch.zeros(m), w2, embedder, None)
    assert (mono_feature_of(model.sfa()) < 0).all()
    best = poly_linear_map(model, model.sfa())
    projection = (torch.linalg.pinv(embedder) @ embedder).numpy()
    assert np.allclose(best.matrix, 0.7 * projection, atol=1e-5)
    assert best.ideal_scale == pytest.approx(0.7, rel=1e-4) and best.ideal_error == pytest.approx(0.0, abs=1e-5)
    assert best.rank_cap == m and np.sum(best.singular_values > 1e-4) == m
    assert linear_map_summary(best.matrix).ideal_error == pytest.approx((1 - m / n) ** 0.5, rel=1e-4)
    scrambled = Model(config, torch.eye(m), torch.zeros(m), w2.roll(1, dims=0), embedder, None)
    assert poly_linear_map(scrambled, scrambled.sfa()).ideal_error > 0.5


def test_pair_interference_and_abs_amplitudes():
    model = identity_model()
    amplitudes, grid = pair_interference(model, 0, 1, points=5)
    assert np.allclose(grid, np.tile(amplitudes, (5, 1)))  # output for feature 0 ignores feature 1
    abs_model = identity_model(task="abs")
    view = feature_view(abs_model, sfa_of(abs_model), 0)
    assert view.amplitudes[0] == -1.0 and np.allclose(view.ideal, np.abs(view.amplitudes))
    with pytest.raises(ValueError, match="feature must be"):
        feature_view(model, sfa_of(model), 9)


def random_model(task: str, n: int = 12, m: int = 4, k: int = 10) -> Model:
    config = RunConfig(n_features=n, embed_dim=m, n_neurons=k, task=task)
    g = torch.Generator().manual_seed(3)
    output_embedder = torch.randn(m, n, generator=g) / m**0.5 if task == "random_proj" else None
    w2 = torch.randn(config.output_dim, k, generator=g)
    return Model(config, torch.randn(k, m, generator=g), torch.randn(k, generator=g) * 0.1, w2,
                 torch.randn(m, n, generator=g) / m**0.5, output_embedder)


def test_group_losses_add_up_to_the_loss_and_are_withheld_for_random_proj():
    for task in ("decoder", "abs"):
        model = random_model(task)
        summary = mono_summary(model, model.sfa(), samples=2048, seed=5)
        x, target = evaluation_batch(model.config, model.embedder, None, 2048, 5)
        assert sum(summary.group_losses.values()) == pytest.approx(model_loss(model, x, target), rel=1e-5)
    # random_proj's N target directions overlap in m dimensions: splitting along them summed to ~N/m x the loss
    model = random_model("random_proj")
    assert mono_summary(model, model.sfa()).group_losses is None


def test_random_proj_linear_map_is_measured_against_its_own_ideal():
    model = random_model("random_proj")
    linear = poly_linear_map(model, model.sfa())
    assert linear.ideal == "E2ᵀE2" and linear.matrix.shape == (12, 12)
    ideal = (model.output_embedder.T @ model.output_embedder).numpy()
    exact = linear_map_summary(3.0 * ideal, ideal, "E2ᵀE2")
    assert exact.ideal_scale == pytest.approx(3.0) and exact.ideal_error == pytest.approx(0.0, abs=1e-6)
    assert linear_map_summary(ideal).ideal_error > 0.5  # E2ᵀE2 has rank m < N: far from a scaled identity


def test_a_replayed_step_is_inspected_at_the_latest_weights_saved_by_then():
    from app.inspect_panel import model_at
    from core.runfile import build_run_file
    from core.train import Trainer

    trainer = Trainer([RunConfig(n_features=8, embed_dim=2, n_neurons=4, batch_size=8, steps=64, device="cpu")])
    trainer.advance(64)
    record = build_run_file(trainer)
    assert model_at(record, None)[1] == "final weights" and model_at(record, 64)[1] == "final weights"
    assert model_at(record, 32)[1] == "checkpoint after 32 steps"
    assert model_at(record, 1)[1] == "checkpoint after 1 step"
    model, which, saved = model_at(record, 48)  # a frame between log2 steps: before, the final weights were inspected
    assert which.startswith("checkpoint after 32 steps (the replayed step 48 has no saved weights") and saved == 32
    assert model_at(record, None)[2] is None  # the final weights: Continue starts from them
    assert torch.equal(model.w1, record["log2_spaced_models"][5]["0.weight"])


def test_mono_neurons_per_feature_and_its_figure_by_frequency():
    from app.interpret_figures import mono_by_feature
    from core.interpret import mono_neurons_per_feature

    model = identity_model()
    assert list(mono_neurons_per_feature(model.sfa())) == [1, 1, 1, 1]
    sfa = np.array([[1.0, 0, 0, 0], [0.9, 0, 0, 0], [0, 0.5, 0, 0], [0.3, 0.3, 0.3, 0]])  # two for 0, one for 1
    counts = mono_neurons_per_feature(sfa)
    assert list(counts) == [2, 1, 0, 0]
    fig = mono_by_feature(counts, power_law=True)
    assert list(fig.data[0].y) == [2, 1, 0, 0] and fig.layout.xaxis.title.text == "feature (most frequent first)"
    assert fig.layout.title.subtitle.text == ("2 of 4 features have a monosemantic neuron: 2 of the 2 most frequent, "
                                              "0 of the 2 rarest")
    assert mono_by_feature(counts, power_law=False).layout.xaxis.title.text == "feature"
