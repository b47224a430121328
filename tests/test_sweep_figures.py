import dataclasses

import numpy as np

from app import sweep_figures as sf


def run(value: float, seed: int = 0, mono: float = 0.1) -> sf.SweepRun:
    steps = np.arange(1, 101)
    return sf.SweepRun(value=value, seed=seed, loss_steps=steps, losses=np.linspace(1, 0.3, 100),
                       point_steps=np.array([50, 100]), mono=np.array([0.0, mono]), mean_bias=np.array([-1.0, -0.5]),
                       final_loss=0.3, mono_per_feature=mono, mono_per_neuron=mono / 2, dead=0,
                       bias=np.array([0.3, -0.2, 0.1]), sfa=np.eye(3), nearly_mono_per_feature=mono)


def test_learning_rates_get_log_spaced_colours():
    colours = sf.value_colours([0.001, 0.01, 0.1], "lr")
    linear = sf.value_colours([0.001, 0.01, 0.1], "init_bias")
    assert len(set(colours.values())) == 3
    assert colours[0.01] != linear[0.01]  # the middle learning rate sits mid-scale only on a log scale


def test_band_is_mean_min_max_over_seeds():
    xs, mean, lo, hi = sf.band([1.0, 1.0, 2.0], [0.2, 0.4, 0.5])
    assert list(xs) == [1.0, 2.0] and np.allclose(mean, [0.3, 0.5])
    assert list(lo) == [0.2, 0.5] and list(hi) == [0.4, 0.5]


def test_training_panels_one_legend_entry_per_value_and_reference_line():
    fig = sf.training_panels([run(0.003, 0), run(0.003, 1), run(0.01, 0)], "lr")
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert legend == ["lr=0.003", "lr=0.01"]
    assert len(fig.data) == 9  # three panels per run
    assert any(shape.y0 == 1.0 for shape in fig.layout.shapes)


def test_results_against_value_pair_mono_with_the_final_loss_and_band_only_with_repeated_seeds():
    single = sf.metric_vs_value([run(0.0, mono=0.1), run(-1.0, mono=0.5)], "init_bias")
    names = [t.name for t in single.data]
    assert names == ["final loss", "mono neurons / N (per feature)", "mono neurons / k (per neuron)",
                     "nearly mono (r > 0.9) / N"]
    assert single.data[0].xaxis == "x" and list(single.data[0].y) == [0.3, 0.3]  # the loss in its own panel
    assert single.data[1].xaxis == "x2" and list(single.data[1].x) == [-1.0, 0.0]
    assert list(single.data[1].y) == [0.5, 0.1]
    assert [t.showlegend for t in single.data] == [False, True, True, True]  # the legend beside the mono panel
    repeated = sf.metric_vs_value([run(0.0, 0, 0.1), run(0.0, 1, 0.3), run(-1.0, 0, 0.5)], "init_bias")
    assert len(repeated.data) == 8 and repeated.data[0].fill == "toself"
    assert repeated.layout.yaxis2.rangemode == "tozero"  # a ratio: no negative half of an axis
    own_seeds = sf.metric_vs_value([run(0.0, 0), run(-1.0, 1000)], "init_bias")  # each value its seed: no repeats
    assert len(own_seeds.data) == 4 and "min-max" not in own_seeds.layout.title.text
    unknown = [dataclasses.replace(run(v), nearly_mono_per_feature=None) for v in (0.0, -1.0)]
    assert "nearly mono (r > 0.9) / N" not in [t.name for t in sf.metric_vs_value(unknown, "init_bias").data]
    none_mono = sf.metric_vs_value([run(0.0, mono=0.0), run(-1.0, mono=0.0)], "init_bias")
    assert "no run has a monosemantic neuron" in none_mono.layout.annotations[-1].text


def test_overlaid_sweeps_list_their_entries_under_their_names():
    fig = sf.metric_vs_value([run(0.0, mono=0.1), run(-1.0, mono=0.5)], "init_bias", "demo",
                             others=[("no-decay", [run(0.0, mono=0.2), run(-1.0, mono=0.3)])])
    shown = [(t.legendgroup, t.legendgrouptitle.text, t.name) for t in fig.data if t.showlegend]
    assert shown == [(sweep, sweep, series) for sweep in ("demo", "no-decay")
                     for series in ("mono neurons / N (per feature)", "mono neurons / k (per neuron)",
                                    "nearly mono (r > 0.9) / N")]
    assert fig.data[4].hovertemplate.endswith("<extra>no-decay: final loss</extra>")  # hover names the sweep
    assert fig.data[0].line.color != fig.data[4].line.color


def test_results_axis_is_labelled_with_the_swept_values():
    lrs = sf.metric_vs_value([run(v) for v in (0.003, 0.01, 0.03)], "lr")
    assert lrs.layout.xaxis.type == "log" and list(lrs.layout.xaxis.ticktext) == ["0.003", "0.01", "0.03"]
    decays = sf.metric_vs_value([run(v) for v in (0.0, 0.001, 0.01)], "bias_decay")  # 0 has no place on a log axis
    assert decays.layout.xaxis.type == "category" and list(decays.data[0].x) == ["0", "0.001", "0.01"]


def test_mono_against_value_before_any_snapshot_says_so():
    fresh = [dataclasses.replace(run(v), mono_per_feature=None, mono_per_neuron=None) for v in (0.0, -1.0)]
    fig = sf.metric_vs_value(fresh, "init_bias")
    assert fig.data == () and "once runs have snapshots" in fig.layout.annotations[0].text


def test_sorted_biases_and_parallel_coordinates():
    fig = sf.sorted_biases([run(0.0)], "init_bias")
    assert list(fig.data[0].y) == [-0.2, 0.1, 0.3]
    rows = [{"lr": 0.01, "seed": 0, "final_loss": 0.3, "mono_ratio": 0.1},
            {"lr": 0.03, "seed": 0, "final_loss": 0.25, "mono_ratio": 0.2}]
    labels = [d.label for d in sf.parallel_coordinates(rows, ["lr", "seed"]).data[0].dimensions]
    assert labels == ["lr", "final_loss", "mono_ratio"]  # the constant seed axis is dropped
    rows = [{**row, "mean_bias": bias} for row, bias in zip(rows, (-0.1, -0.4))]
    dims = sf.parallel_coordinates(rows, ["lr", "seed"]).data[0].dimensions
    assert [d.label for d in dims] == ["lr", "mean_bias", "final_loss", "mono_ratio"]
    assert list(dims[1]["values"]) == [-0.1, -0.4]


def test_training_panels_of_queued_runs_say_they_are_queued():
    queued = [dataclasses.replace(run(v), loss_steps=np.zeros(0), losses=np.zeros(0)) for v in (0.0, -1.0)]
    fig = sf.training_panels(queued, "init_bias")
    assert fig.data == () and "2 runs queued" in fig.layout.annotations[0].text
