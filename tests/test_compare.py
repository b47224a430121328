import io

import numpy as np
import pytest
import torch

from app import create_app
from app.compare_page import heatmap_titles, mono_overlay, pair_choice, pair_options, result_names, results_table
from app.figures import run_colour
from core.compare import (
    IncompatibleRuns,
    Model,
    align_neurons,
    differing_fields,
    evaluation_batch,
    interpolate,
    model_loss,
    run_labels,
)
from core.jobs import Lab
from core.runfile import build_run_file
from core.store import DiskStore
from core.train import Trainer
from tests.helpers import dash_call


def trained(config, steps=None) -> Model:
    trainer = Trainer([config])
    trainer.advance(steps or config.steps)
    return Model.from_record(build_run_file(trainer))


def test_differences_and_labels(tiny):
    configs = [tiny.replace(init_bias=0.0).to_dict(), tiny.replace(init_bias=-1.0, lr=0.003).to_dict()]
    assert differing_fields(configs) == ["lr", "init_bias"]
    metas = [{"id": f"id{i}", "label": "", "config": c} for i, c in enumerate(configs)]
    assert run_labels(metas) == ["lr=0.01, init_bias=0", "lr=0.003, init_bias=-1"]
    # nothing differs: each run's own label, else its id
    assert run_labels([{**metas[0], "label": "zero bias"}, {**metas[0], "id": "id1"}]) == ["zero bias", "id1"]


def test_labels_short_of_room_name_the_fields_that_tell_the_runs_apart_what_matters_first(tiny):
    """Two presets at two biases each: six fields differ, and a legend cut to its width showed only the first
    few, the same for the two runs of a preset."""
    quick, demo = tiny.replace(n_features=128, n_neurons=256, steps=2048), tiny.replace(nonlinearity="gelu")
    configs = [quick.replace(init_bias=-1.0, bias_decay=0.12), quick, demo, demo.replace(init_bias=-1.0)]
    metas = [{"id": f"id{i}", "label": "", "config": c.to_dict()} for i, c in enumerate(configs)]
    assert differing_fields([m["config"] for m in metas]) == [
        "nonlinearity", "n_features", "n_neurons", "init_bias", "bias_decay", "steps"]
    assert run_labels(metas)[0] == ("nonlinearity=relu, n_features=128, n_neurons=256, init_bias=-1, "
                                    "bias_decay=0.12, steps=2048")
    # steps tells relu from gelu as well as nonlinearity does, but says less: nonlinearity is named (by its value)
    assert run_labels(metas, width=24) == ["relu, init_bias=-1, …", "relu, init_bias=0, …", "gelu, init_bias=0, …",
                                           "gelu, init_bias=-1, …"]
    # more room, more fields: what matters first
    assert run_labels(metas, width=40)[0] == "relu, init_bias=-1, bias_decay=0.12, …"
    # labels that fit name every difference, no "…"
    assert run_labels(metas[:2], width=52) == ["init_bias=-1, bias_decay=0.12", "init_bias=0, bias_decay=0"]
    assert run_labels(metas[:2], width=20) == ["init_bias=-1, …", "init_bias=0, …"]
    # what tells them apart stays, whatever the width
    assert run_labels(metas, width=5) == run_labels(metas, width=24)


def test_a_short_label_keeps_what_tells_the_runs_apart(tiny):
    """Two runs of one config (their ids tell them apart) and runs continued from different steps: cut to a
    heatmap title's width, the ids and steps went and the titles read alike."""
    quick = tiny.replace(n_features=128, n_neurons=256, init_bias=-1.0)
    metas = [{"id": "7a4500b3433a", "label": "", "config": quick.to_dict()},
             {"id": "7d65fa4bd48a", "label": "", "config": quick.to_dict()},
             {"id": "e260d9ed690f", "label": "", "config": tiny.replace(nonlinearity="gelu").to_dict()}]
    assert run_labels(metas, width=34) == ["relu, … (7a4500b3433a)", "relu, … (7d65fa4bd48a)", "gelu, …"]
    start = {"run": "p", "label": "zero bias", "step": 2048, "bias_push": 0.0}
    parent = {"id": "p", "label": "zero bias", "config": tiny.to_dict()}
    late = {"id": "l", "label": "", "config": tiny.replace(l1_reg=0.01, lr=0.003, init_bias=-1.0).to_dict(),
            "start": start}
    early = {**late, "id": "e", "start": {**start, "step": 64}}
    # short of room, "from step S" says it was continued
    assert run_labels([parent, late, early], width=44) == [
        "init_bias=0, …", "init_bias=-1, …, from step 2,048", "init_bias=-1, …, from step 64"]
    assert run_labels([parent, late, early], width=60)[1] == "lr=0.003, init_bias=-1, l1_reg=0.01, from step 2,048"
    assert run_labels([parent, late, early])[1] == "lr=0.003, init_bias=-1, l1_reg=0.01, continued from step 2,048"


def test_labels_tell_a_continued_run_from_its_parent(tiny):
    parent = {"id": "p", "label": "zero bias", "config": tiny.to_dict()}
    start = {"run": "p", "label": "zero bias", "step": 256, "bias_push": 0.0}
    child = {"id": "c", "label": "zero bias → continued", "config": tiny.to_dict(), "start": start}
    pushed = {"id": "d", "label": "", "config": tiny.replace(init_bias=-1.0).to_dict(),
              "start": {**start, "bias_push": -1.0}}
    assert run_labels([parent, child, pushed]) == ["init_bias=0", "init_bias=0, continued", "init_bias=-1, continued"]
    early = {**child, "id": "e", "start": {**start, "step": 8}}
    assert run_labels([parent, child, early]) == ["zero bias", "continued from step 256", "continued from step 8"]
    # all continued, from one step: their starts tell nothing, their own labels do
    grandchild = {**child, "id": "g", "label": "zero bias → continued → continued", "start": {**start, "run": "c"}}
    assert run_labels([child, grandchild]) == ["zero bias → continued", "zero bias → continued → continued"]
    assert run_labels([child, {**grandchild, "start": {**start, "step": 8}}]) == ["from step 256", "from step 8"]
    # the same config from the same start: told apart by id
    twin = {**child, "id": "t"}
    assert run_labels([child, twin]) == ["zero bias → continued (c)", "zero bias → continued (t)"]
    assert run_labels([child, twin], unique=False) == ["zero bias → continued"] * 2


def test_alignment_recovers_a_known_permutation():
    rng = np.random.default_rng(0)
    sfa = rng.random((30, 12))
    perm = rng.permutation(30)
    shuffled = sfa[np.argsort(perm)]  # shuffled[perm] == sfa
    found = align_neurons(sfa, shuffled)
    assert np.array_equal(shuffled[found], sfa)


def test_permuting_neurons_keeps_the_function(tiny):
    model = trained(tiny)
    perm = np.random.default_rng(1).permutation(tiny.n_neurons)
    x, target = evaluation_batch(tiny, model.embedder, None, 512, 0)
    assert model_loss(model.permuted(perm), x, target) == pytest.approx(model_loss(model, x, target), rel=1e-5)


def test_interpolation_endpoints_equal_each_runs_own_loss(tiny):
    a = trained(tiny.replace(init_bias=0.0))
    b = trained(tiny.replace(init_bias=-1.0, bias_decay=2.0))  # same seed: same world
    result = interpolate(a, b, points=21, align=True, samples=2048)
    x, target = evaluation_batch(tiny, a.embedder, None, 2048, 12345)
    assert len(result.alphas) == 21
    assert result.losses[0] == pytest.approx(model_loss(a, x, target), rel=1e-5)
    assert result.losses[-1] == pytest.approx(model_loss(b, x, target), rel=1e-5)  # alignment keeps b's loss
    assert result.barrier >= 0


def test_different_worlds_or_shapes_are_refused(tiny):
    a = trained(tiny, steps=4)
    with pytest.raises(IncompatibleRuns, match="embedders differ"):
        interpolate(a, trained(tiny.replace(seed=7), steps=4))
    with pytest.raises(IncompatibleRuns, match="n_neurons differs"):
        interpolate(a, trained(tiny.replace(n_neurons=32), steps=4))
    # Same world, different data: the line's losses would be measured on a's data alone.
    with pytest.raises(IncompatibleRuns, match=r"eps differs \(0.125 vs 0.0625\)"):
        interpolate(a, trained(tiny.replace(eps=1 / 16), steps=4))
    with pytest.raises(IncompatibleRuns, match="sample_kind differs"):
        interpolate(a, trained(tiny.replace(sample_kind="power_law"), steps=4))
    assert torch.equal(a.embedder, trained(tiny, steps=2).embedder)


def test_loss_is_final_only_once_every_run_has_finished(tiny, tmp_path):
    assert result_names(["done", "stopped", "failed"])[0] == "final loss (last 5%)"
    assert result_names(["done", "running"])[0] == "loss (last 5% so far)"
    lab = Lab(DiskStore(tmp_path / "data"))
    metas = [lab.get(lab.submit(tiny.replace(init_bias=v))) for v in (0.0, -1.0)]  # queued: not finished
    table = str(results_table(lab, metas, ["a", "b"]))
    assert "loss (last 5% so far)" in table and "final loss" not in table


def test_the_pair_keeps_its_runs_and_moves_the_other_end_off_a_clash():
    chosen = ["r1", "r2", "r3"]
    assert pair_choice(chosen, None, None, False) == ("r1", "r2")
    assert pair_choice(chosen, "r3", "r1", False) == ("r3", "r1")
    assert pair_choice(chosen, "r2", "r2", True) == ("r1", "r2")  # B picked as A's run: A moves
    assert pair_choice(chosen, "r2", "r2", False) == ("r2", "r1")  # A picked as B's run: B moves
    assert pair_choice(["r2"], "gone", "r2", False) == ("r2", None)


def test_pair_options_name_each_run_s_status(tiny):
    metas = [{"id": "r1", "label": "zero bias", "status": "running", "config": tiny.replace(init_bias=0.0).to_dict()},
             {"id": "r2", "label": "", "status": "done", "config": tiny.replace(init_bias=-1.0).to_dict()}]
    assert pair_options(metas) == [{"label": "init_bias=0 · r1 · running", "value": "r1"},
                                   {"label": "init_bias=-1 · r2 · done", "value": "r2"}]


def test_pair_options_follow_the_runs_status_at_each_tick_and_keep_the_pair(tiny, tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    a, b = (lab.submit(tiny.replace(init_bias=v)) for v in (0.0, -1.0))
    app = create_app(lab)
    values = {"compare-runs.value": [a, b], "interp-a.value": b, "interp-b.value": a, "url.pathname": "/compare"}
    _, sent = dash_call(app, "interp-a.options", values, ["compare-runs.value"])
    assert [o["label"].rsplit(" · ", 1)[1] for o in sent["interp-a"]["options"]] == ["queued", "queued"]
    before = sent["interp-a"]["options"]
    lab.store.set(f"meta/{a}", {**lab.get(a), "status": "done"})
    status, sent = dash_call(app, "interp-a.options", {**values, "interp-a.options": before},
                             ["compare-tick.n_intervals"])
    assert status == 200 and sent["interp-a"]["options"][0]["label"].endswith(f"{a} · done")
    # the user's pair stays, and is not sent again: a value sent would clear the line computed for it
    assert sent["interp-b"]["options"] == sent["interp-a"]["options"] and "value" not in sent["interp-a"]
    assert "value" not in sent["interp-b"]
    unchanged = {**values, "interp-a.options": sent["interp-a"]["options"]}
    assert dash_call(app, "interp-a.options", unchanged, ["compare-tick.n_intervals"])[1] == {}  # nothing to resend
    off_page = {**values, "url.pathname": "/sweeps"}
    assert dash_call(app, "interp-a.options", off_page, ["compare-tick.n_intervals"])[1] == {}


def test_a_comparisons_runs_are_named_for_the_preset_they_vary():
    from app.compare_page import comparison_base
    from core.presets import PRESETS

    preset = PRESETS["quick-negative-bias"].config
    assert comparison_base("quick-negative-bias", preset.replace(init_bias=0.0), "init_bias") == "quick-negative-bias"
    assert comparison_base("quick-negative-bias", preset.replace(seed=3), "init_bias") == "quick-negative-bias (edited)"
    assert comparison_base("custom", preset, "init_bias") == ""


def test_runs_deleted_while_compared_are_named_until_another_run_is_added():
    from app.compare_page import deleted_since

    exists = {"a", "b", "c"}.__contains__
    # "x" was shown and is gone (the run picker already dropped it from the choice)
    gone = deleted_since({"ids": ["a", "x"]}, ["a"], ["a"], exists)
    assert gone == ["x"]
    assert deleted_since({"ids": ["a"], "gone": gone}, ["a"], ["a"], exists) == ["x"]  # still said at the next tick
    assert deleted_since({"ids": ["a"], "gone": gone}, ["a", "b"], ["a", "b"], exists) == []  # the user moved on
    assert deleted_since({}, ["a", "b"], ["a", "b"], exists) == []


def test_the_mono_overlay_keys_each_run_once_below_the_plot_with_its_positive_part_dashed_under_it():
    history = {"points": {"step": [16, 32], "mono_ratio": [0.1, 0.2], "positive_mono_ratio": [0.3, 0.4]}}
    labels = ["nonlinearity=relu", "nonlinearity=gelu"]
    fig = mono_overlay(labels, [history, history], [0, 0], ["relu", "gelu"], "Training step (log scale)")
    assert [(t.name, t.legendgroup, t.showlegend, t.line.dash) for t in fig.data] == [
        ("nonlinearity=relu", "nonlinearity=relu", None, None), ("nonlinearity=gelu", "nonlinearity=gelu", None, None),
        ("nonlinearity=gelu (positive part, not the paper's)", "nonlinearity=gelu", False, "dashdot"),
        ("dash-dotted: the positive part, not the paper's", None, None, "dashdot")]  # the line style's key
    assert list(fig.data[-1].x) == [None]  # a key, no curve
    # above the plot: in a corner it covered some run's curve
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y > 1


def test_a_run_is_named_in_full_beside_its_colour_in_the_table(tiny, tmp_path):
    from app import figures

    lab = Lab(DiskStore(tmp_path))
    ids = [lab.submit(tiny.replace(init_bias=b)) for b in (0.0, -1.0)]
    labels = ["nonlinearity=relu, n_features=32, embed_dim=6, n_neurons=64, eps=0.0625, init_bias=" + b
              for b in ("0", "-1")]
    header = results_table(lab, [lab.get(i) for i in ids], labels).children[0].children.children[1:]
    assert [(cell.children[0].style["background"], cell.children[1]) for cell in header] == [
        (figures.RUN_COLOURS[0], labels[0]), (figures.RUN_COLOURS[1], labels[1])]


def test_the_connectivity_line_names_and_colours_a_and_b_as_the_curves_do(tiny, tmp_path):
    """Its ends were blue and red whichever runs A and B were, named by labels worked out for the two alone."""
    lab = Lab(DiskStore(tmp_path / "data"))
    ids = [lab.submit(tiny.replace(init_bias=bias, lr=lr)) for bias, lr in ((0.0, 0.01), (-1.0, 0.01), (-1.0, 0.003))]
    for run_id in ids:
        trainer = Trainer([lab.config(run_id)])
        trainer.advance(8)
        buffer = io.BytesIO()
        torch.save(build_run_file(trainer), buffer)
        lab.store.set(f"file/{run_id}", buffer.getvalue())
        lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": "done"})
    values = {"interp-a.value": ids[2], "interp-b.value": ids[1], "interp-align.value": True,
              "compare-runs.value": ids, "interp-button.n_clicks": 1}
    status, sent = dash_call(create_app(lab), "interp-result.data", values, ["interp-button.n_clicks"])
    ends = sent["interp-result"]["data"]["figure"]["data"][1:]
    # the third and second runs' colours; "init_bias=-1" alone would name both (the legends say the lr too)
    assert [(end["name"], end["marker"]["color"]) for end in ends] == [
        ("A: lr=0.003, init_bias=-1", run_colour(2)), ("B: lr=0.01, init_bias=-1", run_colour(1))]


def test_heatmap_titles_fit_their_row_and_keep_what_tells_the_runs_apart(tiny):
    quick = tiny.replace(n_features=128, n_neurons=256, init_bias=-1.0, steps=8192)
    metas = [{"id": i, "label": "", "steps": 8192, "config": c.to_dict()} for i, c in (
        ("7a4500b3433a", quick), ("7d65fa4bd48a", quick), ("e260d9ed690f", tiny.replace(nonlinearity="gelu")),
        ("ac3fb6aaa7c8", tiny.replace(nonlinearity="gelu", init_bias=-1.0)))]
    titles = heatmap_titles(metas, [8192, 8192, 256, 64], [0] * 4)
    assert titles == [("relu, init_bias=-1, … (7a4500b3433a)", "step 8,192"),
                      ("relu, init_bias=-1, … (7d65fa4bd48a)", "step 8,192"),
                      ("gelu, init_bias=0, …", "step 256"), ("gelu, init_bias=-1, …", "step 64")]
    assert all(len(title) <= 44 for title, _ in titles)  # the step on a line of its own: a long title cut it off
    # two a row: room for every difference; and the step the slider shows, where the curves show it
    assert heatmap_titles(metas[1:3], [8192, 256], [0, 0])[1][0] == (
        "gelu, n_features=16, n_neurons=24, init_bias=0, steps=64")
    assert heatmap_titles(metas[1:3], [1024, 256], [0, 2048])[1][1] == "step 256 (2,304 counted on)"
