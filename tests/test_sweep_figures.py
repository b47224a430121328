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
    # steps as steps on a log axis, from step 1, as the Train and Compare pages draw them (not log2 of the step)
    axes = [fig.layout[f"xaxis{i or ''}"] for i in ("", 2, 3)]
    assert all(a.type == "log" and a.autorangeoptions.include == (1,) for a in axes)
    assert list(fig.data[0].x) == list(run(0.003, 0).loss_steps)


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
    diverged = dataclasses.replace(run(-1.0), bias=np.array([40.0, -90.0, 3.0]), status="failed")
    fig = sf.sorted_biases([run(0.0), diverged], "init_bias")
    assert [list(trace.y) for trace in fig.data] == [[-0.2, 0.1, 0.3]]  # the diverged run's are no result
    rows = [{"lr": 0.01, "seed": 0, "final_loss": 0.3, "mono_ratio": 0.1},
            {"lr": 0.03, "seed": 0, "final_loss": 0.25, "mono_ratio": 0.2}]
    labels = [d.label for d in sf.parallel_coordinates(rows, ["lr", "seed"]).data[0].dimensions]
    assert labels == ["lr", "final loss", "mono neurons / N"]  # the constant seed axis is dropped
    rows = [{**row, "mean_bias": bias} for row, bias in zip(rows, (-0.1, -0.4))]
    dims = sf.parallel_coordinates(rows, ["lr", "seed"]).data[0].dimensions
    assert [d.label for d in dims] == ["lr", "mean bias", "final loss", "mono neurons / N"]
    assert list(dims[1]["values"]) == [-0.1, -0.4]
    # results read to three figures at the axes' ends (0.289064 read as such); the swept value as given
    assert [d.tickformat for d in dims] == [None, ".3g", ".3g", ".3g"]
    assert dims[-1].range == (0.0, 0.2)
    # no run monosemantic: the ratio's axis and colours span 0 to 1 (0 to 0.01 ticked 0.002, 0.004, ...)
    figure = sf.parallel_coordinates([{**row, "mono_ratio": 0.0} for row in rows], ["lr"])
    assert figure.data[0].dimensions[-1].range == (0.0, 1.0) and figure.data[0].line.cmax == 1.0


def test_training_panels_of_queued_runs_say_they_are_queued():
    queued = [dataclasses.replace(run(v), loss_steps=np.zeros(0), losses=np.zeros(0)) for v in (0.0, -1.0)]
    fig = sf.training_panels(queued, "init_bias")
    assert fig.data == () and "2 runs queued" in fig.layout.annotations[0].text


def test_results_show_finished_runs_only_and_count_those_left_out():
    runs = [run(0.003, mono=0.1), dataclasses.replace(run(0.01, mono=0.9), status="failed"),
            dataclasses.replace(run(0.03, mono=0.8), status="running"), run(0.001, mono=0.2),
            dataclasses.replace(run(0.001, seed=1, mono=0.6), status="stopped")]
    fig = sf.metric_vs_value(runs, "lr")
    mono = next(t for t in fig.data if t.name == "mono neurons / N (per feature)")
    assert list(mono.x) == [0.001, 0.003] and list(mono.y) == [0.4, 0.1]  # a stopped run is a result too
    # paired: seed 0 for both values (0.001's second run, seed 1, has no partner at 0.003)
    assert fig.layout.title.subtitle.text == ("paired: every value from the same seeds; not shown: 1 failed, 1 still "
                                              "training")
    own = sf.metric_vs_value([run(0.001), run(0.003, seed=1000)], "lr").layout.title.subtitle.text
    assert own == "each value with seeds of its own (a world and init of its own)"
    assert sf.metric_vs_value([run(0.001)], "lr").layout.title.subtitle.text is None  # one value: nothing to pair
    training = [dataclasses.replace(run(v), status="running") for v in (0.001, 0.003)]
    waiting = sf.metric_vs_value(training, "lr")
    assert waiting.data == () and waiting.layout.annotations[0].text == "Available once runs finish (2 still training)"


def test_zero_and_the_smallest_value_get_colours_as_far_apart_as_their_places_on_the_axis():
    colours = sf.value_colours([0.0, 1e-5, 1e-4, 1e-3, 1e-2], "l1_reg")  # RG1: a categorical axis, by rank
    assert colours[1e-5] == sf.sample_colorscale("Viridis", [0.2])[0]
    assert len(set(colours.values())) == 5
    neurons = sf.value_colours([128, 256, 512, 1024], "n_neurons")  # K batches double k: log-spaced
    assert neurons[256] == sf.sample_colorscale("Viridis", [0.8 / 3])[0]
    assert sf.metric_vs_value([run(v) for v in (128, 256, 512)], "n_neurons").layout.xaxis.type == "log"


def test_a_value_s_heatmap_is_a_seed_with_a_snapshot_and_a_failed_run_says_so():
    queued = dataclasses.replace(run(0.01, seed=0), sfa=None, status="queued")
    failed = dataclasses.replace(run(0.01, seed=1), status="failed")
    chosen = sf.heatmap_run([queued, failed, run(0.03)], 0.01)
    assert chosen is failed
    assert sf.heatmap_run([queued, failed, run(0.01, seed=2)], 0.01).seed == 2  # a finished seed rather
    assert sf.heatmap_title("lr", chosen, several_seeds=True) == "lr=0.01 (seed 1) (failed)"
    assert sf.heatmap_title("lr", run(0.03), several_seeds=False) == "lr=0.03"


def test_gelu_sweeps_show_the_positive_part_ratio_beside_the_paper_s():
    relu = sf.metric_vs_value([run(0.0), run(-1.0)], "init_bias")
    assert not any("positive part" in t.name for t in relu.data)
    gelu = [dataclasses.replace(run(v), positive_mono_per_feature=p) for v, p in ((0.0, 0.05), (-1.0, 0.25))]
    fig = sf.metric_vs_value(gelu, "init_bias")
    positive = next(t for t in fig.data if t.name == "mono on positive part / N (not the paper's)")
    assert positive.xaxis == "x2" and list(positive.y) == [0.25, 0.05]


def test_mono_counts_include_the_positive_part_ratio():
    sfa = np.array([[1.0, 0.5, -0.5], [0.2, 0.2, 0.2]])  # neuron 0: max/sum = 1 only because of the negative
    per_feature, _, _, positive = sf.mono_counts(sfa)
    assert per_feature == 1 / 3 and positive == 0.0  # on the positive part, 1 / 1.5


def test_traces_keep_their_identity_as_runs_gain_points():
    """A hidden trace stays hidden: with a uirevision, plotly matches a user's edits to traces by uid (by index
    without one, so a run's first snapshot moved them onto other runs)."""
    queued = dataclasses.replace(run(0.01, seed=1), point_steps=np.zeros(0), mono=np.zeros(0),
                                 mean_bias=np.zeros(0))
    before = {t.uid for t in sf.training_panels([queued, run(0.03)], "lr").data}
    after = sf.training_panels([run(0.01, seed=1), run(0.03)], "lr").data
    assert None not in before and len({t.uid for t in after}) == len(after) and before < {t.uid for t in after}


def test_a_values_heatmap_is_a_finished_seeds_and_says_when_it_is_not():
    training = dataclasses.replace(run(0.1, seed=0), status="running")
    assert sf.heatmap_run([training, run(0.1, seed=1)], 0.1).seed == 1
    assert sf.heatmap_title("lr", sf.heatmap_run([training], 0.1), False) == "lr=0.1 (still training)"


def test_sorted_biases_of_failed_runs_only_say_so():
    failed = dataclasses.replace(run(0.1), status="failed")
    assert "1 failed runs: not shown" in sf.sorted_biases([failed], "lr").layout.annotations[0].text


def test_runs_stopped_early_are_shown_as_they_stood_and_said_to_be():
    """Stop on a sweep's job stops all its runs: their numbers are half-trained ones, and say so."""
    early = dataclasses.replace(run(0.03), status="stopped", complete=False)
    fig = sf.metric_vs_value([run(0.01), early], "lr")
    assert fig.layout.title.subtitle.text == ("paired: every value from the same seeds; 1 stopped early, shown as "
                                              "they stood")
    assert sf.heatmap_title("lr", early, False) == "lr=0.03 (stopped early)"
    assert sf.heatmap_title("lr", run(0.01), False) == "lr=0.01"


def test_biases_of_runs_still_training_are_not_called_final():
    assert sf.sorted_biases([run(0.0), run(-1.0)], "init_bias").layout.title.text == "Final biases, sorted"
    training = dataclasses.replace(run(-1.0), status="running")
    fig = sf.sorted_biases([run(0.0), training], "init_bias")
    assert fig.layout.title.text == "Biases at the latest snapshot, sorted" and len(fig.data) == 2
    stopped = dataclasses.replace(run(-1.0), status="stopped")
    failed = dataclasses.replace(run(-0.5), status="failed")  # not shown: no say in the title
    assert sf.sorted_biases([run(0.0), stopped, failed], "init_bias").layout.title.text == "Final biases, sorted"
