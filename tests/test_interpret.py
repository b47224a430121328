"""Section-5 views on tiny hand-built models whose answers are known."""

import numpy as np
import pytest
import torch

from app.figures import LAYOUT_STYLE
from app.interpret_figures import SUBTITLE_HEIGHT
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
from tests.helpers import dash_call


def subtitle_text(fig) -> str:  # noqa: ANN001
    """A figure's subtitle as read: its lines (wrapped to fit half a screen) joined."""
    return fig.layout.title.subtitle.text.replace("<br>", " ")

def identity_model(n: int = 4, task: str = "decoder", nonlinearity: str = "relu") -> Model:
    """m = N (only for hand-built checks): E = I, W1 = I, b = 0, W2 = I, so the model is ReLU(v)."""
    config = RunConfig(n_features=n, embed_dim=n, n_neurons=n, task=task, nonlinearity=nonlinearity)  # never trained
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
    assert np.allclose(view.rest_part, 0)
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
    from app.inspect_panel import model_at, weights_label
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
    # the last weights of a run not trained to its end are named for where it stands
    assert weights_label(None, None, "paused", 30) == "weights at step 30 (where it was paused)"
    assert weights_label(None, None, "stopped", 1_500) == "weights at step 1,500 (where it was stopped)"
    assert weights_label(None, None, "done", 64) == "final weights"
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
    assert subtitle_text(fig) == ("2 of 4 features have a monosemantic neuron: 2 of the 2 most frequent, "
                                              "0 of the 2 rarest")
    assert mono_by_feature(counts, power_law=False).layout.xaxis.title.text == "feature"


# --- GeLU / SoLU: the inspector splits on the positive part ------------------------------------------------------


def gelu_model() -> Model:
    """Neurons 0-2 read features 0-2 alone; neuron 3 reads 0.3 of feature 0, 0.2 of feature 1 and -0.75 of
    feature 2: GeLU gives 0.1854, 0.1159 and -0.1700, so the paper's max/sum is 0.1854 / 0.1313 = 1.412
    (monosemantic by accident) and r on the positive part 0.1854 / 0.3013 = 0.615."""
    model = identity_model(nonlinearity="gelu")
    w1 = model.w1.clone()
    w1[3] = torch.tensor([0.3, 0.2, -0.75, 0.0])
    return Model(model.config, w1, model.b1, model.w2, model.embedder, None)


def test_gelu_neuron_mono_only_by_the_papers_accident_is_polysemantic_in_the_inspector():
    from app.interpret_figures import feature_curves, mono_by_feature, mono_histogram, neuron_profile
    from core.interpret import mono_neurons_per_feature
    from core.metrics import SfaSummary

    model = gelu_model()
    sfa = model.sfa()
    assert list(mono_feature_of(sfa)) == [0, 1, 2, 0]  # the paper's r: neuron 3 "serves" feature 0
    assert list(mono_feature_of(sfa, positive_part=True)) == [0, 1, 2, -1]
    view = feature_view(model, sfa, 0)
    assert list(view.neurons) == [0]
    assert "mono on the positive part" in subtitle_text(feature_curves(view))
    neuron = neuron_profile(neuron_view(model, sfa, 3))
    assert neuron.layout.title.text == "Neuron 3: not monosemantic on the positive part"
    assert subtitle_text(neuron).startswith("r = 1.412 (paper's max/sum), 0.615 on the positive part")
    assert neuron_profile(neuron_view(model, sfa, 0)).layout.title.text == "Neuron 0: monosemantic on the positive part"
    assert poly_linear_map(model, sfa).poly_neurons == 1  # neuron 3 joins the polysemantic part
    summary = mono_summary(model, sfa, samples=64)
    assert summary.counts == {"0": 1, "1": 3, "2": 0, "3+": 0}
    assert subtitle_text(mono_histogram(summary)).startswith("mono on the positive part")
    counts = mono_neurons_per_feature(sfa, positive_part=True)
    assert "monosemantic neuron on the positive part" in subtitle_text(mono_by_feature(counts, False, True))
    # the headline figures stay the paper's: 4 mono neurons for 4 features, 3 on the positive part
    assert SfaSummary.of(sfa).mono_ratio == 1.0 and SfaSummary.of(sfa).positive_mono_ratio == 0.75


def test_relu_neuron_view_shows_the_papers_r_alone():
    from app.interpret_figures import neuron_profile

    model = identity_model()
    fig = neuron_profile(neuron_view(model, model.sfa(), 1))
    assert fig.layout.title.text == "Neuron 1: monosemantic"
    assert subtitle_text(fig).startswith("r = 1.000; bias 0.000")


# --- the feature view's parts ------------------------------------------------------------------------------------


def test_feature_curves_count_only_this_features_mono_neurons():
    # abs: neuron 1 is monosemantic for feature 1 (it reads -1 x feature 0, silent at +1) and writes to feature 0
    # too, so it adds to feature 0's output at negative amplitudes
    from app.interpret_figures import feature_curves

    model = identity_model(task="abs")
    w1, w2 = model.w1.clone(), model.w2.clone()
    w1[1, 0] = -1.0
    w2[0, 1] = 1.0
    model = Model(model.config, w1, model.b1, w2, model.embedder, None)
    sfa = model.sfa()
    assert list(mono_feature_of(sfa)) == [0, 1, 2, 3]
    view = feature_view(model, sfa, 0, points=5)  # amplitudes -1, -0.5, 0, 0.5, 1
    assert np.allclose(view.mono_part, [0, 0, 0, 0.5, 1])  # neuron 0 alone: ReLU(a)
    assert np.allclose(view.other_mono_part, [1, 0.5, 0, 0, 0]) and np.allclose(view.rest_part, view.other_mono_part)
    assert np.allclose(view.total, view.mono_part + view.rest_part)
    fig = feature_curves(view)
    names = [trace.name for trace in fig.data]
    assert names[2] == "this feature's mono neurons (1)" and "other features' mono" in names[3]
    assert subtitle_text(fig) == "other features' mono neurons: up to 1.000 of the rest"


# --- the linear map ----------------------------------------------------------------------------------------------


def test_no_live_polysemantic_neuron_shows_a_message_not_an_error_of_zero():
    from app.interpret_figures import linear_map_heatmap, singular_values

    model = identity_model()  # every neuron monosemantic
    linear = poly_linear_map(model, model.sfa())
    assert linear.poly_neurons == 0
    for fig in (linear_map_heatmap(linear), singular_values(linear)):
        assert fig.data == () and fig.layout.annotations[0].text.startswith("No live polysemantic neurons")
        assert "error" not in fig.to_json()


def test_factorised_singular_values_match_the_maps_svd():
    for task in ("decoder", "random_proj"):
        model = random_model(task, n=12, m=4, k=30)
        linear = poly_linear_map(model, model.sfa())
        full = np.linalg.svd(linear.matrix, compute_uv=False)
        assert np.allclose(linear.singular_values, full[:len(linear.singular_values)], atol=1e-6)
        assert np.allclose(full[len(linear.singular_values):], 0, atol=1e-6)  # rank <= m


def test_large_linear_map_is_pooled_keeping_the_sign_of_each_blocks_largest_entry():
    from app.interpret_figures import linear_map_heatmap

    matrix = np.full((512, 512), 0.1)
    matrix[3, 400] = -2.0  # a strong negative entry: a plain max-pool would hide it
    fig = linear_map_heatmap(linear_map_summary(matrix))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (256, 256) and "max |value| of 2x2 blocks" in fig.layout.title.text
    assert z[1, 200] == pytest.approx(-2.0) and z.max() == pytest.approx(0.1)
    assert fig.data[0].x0 == 0.5 and fig.data[0].dx == 2  # the axes still count features
    small = linear_map_heatmap(linear_map_summary(np.eye(256)))
    assert np.asarray(small.data[0].z).shape == (256, 256) and small.data[0].dx is None


# --- abs ---------------------------------------------------------------------------------------------------------


def test_abs_linear_map_is_not_compared_with_the_identity():
    from app.interpret_figures import linear_map_heatmap

    model = random_model("abs")
    linear = poly_linear_map(model, model.sfa())
    assert linear.ideal is None and linear.ideal_error is None
    fig = linear_map_heatmap(linear)
    subtitle = subtitle_text(fig)
    assert "no linear map is its ideal" in subtitle and "error" not in subtitle
    # plotly does not wrap: a long subtitle comes in lines that fit half a laptop screen, with room made above
    lines = fig.layout.title.subtitle.text.split("<br>")
    assert len(lines) == 2 and all(len(line) <= 64 for line in lines)
    assert fig.layout.margin.t == LAYOUT_STYLE["margin"]["t"] + 2 * SUBTITLE_HEIGHT


def test_abs_neuron_silent_at_plus_one_is_shown_at_minus_one():
    from app.interpret_figures import neuron_profile

    model = identity_model(task="abs")
    w1, b1 = model.w1.clone(), model.b1.clone()
    w1[1] = torch.tensor([-1.0, 0.0, 0.0, 0.0])  # fires for feature 0 at -1 only
    w1[2], b1[2] = 0.0, -1.0  # silent everywhere
    model = Model(model.config, w1, b1, model.w2, model.embedder, None)
    sfa = model.sfa()
    fires = neuron_profile(neuron_view(model, sfa, 1))
    assert fires.layout.title.text == "Neuron 1: silent at +1 (the SFA's amplitude), fires at -1"
    assert [t.name for t in fires.data] == ["at amplitude +1", "at amplitude -1"]
    assert list(fires.data[1].y) == [1.0, 0.0, 0.0, 0.0]
    assert neuron_profile(neuron_view(model, sfa, 2)).layout.title.text == "Neuron 2: dead (silent at +1 and -1)"


# --- small things a user reads -----------------------------------------------------------------------------------


def test_r_just_above_the_threshold_is_not_shown_as_the_threshold():
    from app.interpret_figures import format_r, neuron_profile

    assert format_r(0.99904) == "0.99904" and format_r(0.9994) == "0.9994" and format_r(0.9989) == "0.9989"
    assert format_r(0.5) == "0.500" and format_r(1.0) == "1.000" and format_r(0.99996) == "0.99996"
    assert format_r(20.7) == "20.700" and format_r(1.0000002) == "1.0000002"
    model = identity_model()
    w1 = model.w1.clone()
    w1[3] = torch.tensor([0.0, 0.0, 0.0004, 1.0])  # r = 1 / 1.0004 = 0.9996: monosemantic
    model = Model(model.config, w1, model.b1, model.w2, model.embedder, None)
    fig = neuron_profile(neuron_view(model, model.sfa(), 3))
    assert fig.layout.title.text == "Neuron 3: monosemantic"
    assert subtitle_text(fig).startswith("r = 0.9996;")


def test_dead_neuron_is_called_dead():
    from app.interpret_figures import neuron_profile

    model = identity_model()
    b1 = model.b1.clone()
    b1[2] = -5.0
    model = Model(model.config, model.w1, b1, model.w2, model.embedder, None)
    fig = neuron_profile(neuron_view(model, model.sfa(), 2))
    assert fig.layout.title.text == "Neuron 2: dead"
    assert subtitle_text(fig).startswith("no activation;") and "r =" not in subtitle_text(fig)


def test_pair_grid_with_the_same_feature_twice_says_so():
    from app.inspect_panel import pair_figure

    model = identity_model()
    same = pair_figure(model, 2, 2)
    assert same.data == () and same.layout.annotations[0].text == "Pick a second feature other than feature 2"
    assert len(pair_figure(model, 2, 1).data) == 1


def test_replayed_step_is_bounded_by_the_runs_own_frames():
    from app.inspect_panel import replayed_step

    frames = [1, 2, 4]
    assert replayed_step(frames, 1, 3, False) == 2
    assert replayed_step(frames, 3, 3, False) is None  # the slider's live end: the final weights
    # the last run's slider (max 10) on a run with 3 frames: was frames[5], an IndexError
    assert replayed_step(frames, 5, 10, False) is None
    assert replayed_step(frames, 1, 3, True) is None  # a run just picked: its final weights, whatever the slider
    assert replayed_step(frames, None, None, False) is None


def test_model_views_draw_the_whole_model_views():
    from app.inspect_panel import model_views

    figures = model_views(*(lambda m: (m, m.sfa()))(random_model("decoder")))
    titles = [f.layout.title.text for f in figures]
    assert titles[0].startswith("Polysemantic part's linear map") and titles[1] == "Its singular values"
    assert titles[2] == "Features by number of monosemantic neurons"
    assert titles[3] == "Monosemantic neurons serving each feature"


# --- the panel's callbacks, through Dash's endpoint -------------------------------------------------------------


def test_picking_an_index_redraws_only_its_views_and_a_stale_slider_cannot_break_a_run_just_picked(tmp_path):
    import io

    from app import create_app
    from core.jobs import Lab
    from core.runfile import build_run_file
    from core.store import DiskStore
    from core.train import Trainer

    lab = Lab(DiskStore(tmp_path / "data"))
    config = RunConfig(n_features=8, embed_dim=2, n_neurons=4, batch_size=8, steps=16, snapshot_every=4, device="cpu")
    run_id = lab.submit(config)
    trainer = Trainer([config])
    trainer.advance(16)
    buffer = io.BytesIO()
    torch.save(build_run_file(trainer), buffer)
    lab.store.set(f"file/{run_id}", buffer.getvalue())
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": "done", "frames": [1, 2, 4, 8, 16], "step": 16})
    app = create_app(lab)
    page = {"selected-run.data": run_id, "inspect-feature-input.value": 0, "inspect-neuron-input.value": 0,
            "inspect-pair-input.value": 1, "checkpoint-slider.value": 5, "checkpoint-slider.max": 5}

    status, sent = dash_call(app, "feature-curves", page, ["inspect-feature-input.value"])
    assert status == 200 and "Inspecting final weights" in str(sent["inspect-message"])
    assert "poly-map" not in sent and "mono-histogram" not in sent  # the N x N map waits for a new run or step
    status, sent = dash_call(app, "poly-map", page, ["checkpoint-slider.value"])
    assert status == 200 and set(sent) == {"poly-map", "poly-singular", "mono-histogram", "mono-by-feature"}
    # the last run's slider (position 7 of 10) on this run of 5 frames: frames[7] failed the callback
    stale = {**page, "checkpoint-slider.value": 7, "checkpoint-slider.max": 10}
    for changed in ("selected-run.data", "checkpoint-slider.value"):
        status, sent = dash_call(app, "feature-curves", stale, [changed])
        assert status == 200 and "Inspecting final weights" in str(sent["inspect-message"])
    status, sent = dash_call(app, "feature-curves", {**page, "inspect-pair-input.value": 0},
                             ["inspect-pair-input.value"])
    message = sent["pair-grid"]["figure"]["layout"]["annotations"][0]["text"]
    assert message == "Pick a second feature other than feature 0"
