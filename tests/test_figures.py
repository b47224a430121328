"""app.figures: the numbers and labels a user reads off each dashboard plot."""

import math

import numpy as np
import pytest

from app import figures
from core.metrics import heatmap_order


def reference_ema(values, weight):
    """TensorBoard's smoothing written out longhand, skipping non-finite values."""
    out, last, count, smoothed = [], math.nan, 0, 0.0
    for v in values:
        if np.isfinite(v):
            smoothed = smoothed * weight + (1 - weight) * v
            count += 1
            last = smoothed / (1 - weight**count)
        out.append(last)
    return np.array(out)


# --- EMA ---------------------------------------------------------------------------------------


def test_ema_hand_checked_debiased_values():
    # s1 = .5, s2 = .25, s3 = .125; debiased by 1 - .5, 1 - .25, 1 - .125
    assert np.allclose(figures.ema(np.array([1.0, 0.0, 0.0]), 0.5), [1.0, 1 / 3, 1 / 7])


def test_ema_of_a_constant_is_that_constant_from_the_first_step():
    assert np.allclose(figures.ema(np.full(50, 3.5), 0.99), 3.5)


def test_ema_matches_longhand_tensorboard_smoothing():
    values = np.random.default_rng(1).random(300)
    assert np.allclose(figures.ema(values, 0.9), reference_ema(values, 0.9))


def test_ema_weight_zero_is_identity_and_input_is_untouched():
    values = np.array([3.0, np.nan, 2.0])
    copy = values.copy()
    out = figures.ema(values, 0.0)
    assert np.array_equal(out, values, equal_nan=True)
    figures.ema(values, 0.7)
    assert np.array_equal(values, copy, equal_nan=True)


def test_ema_skips_nans_instead_of_poisoning_the_rest():
    out = figures.ema(np.array([np.nan, 2.0, np.nan, 4.0]), 0.5)
    assert np.isnan(out[0])  # nothing seen yet
    assert np.allclose(out[1:], [2.0, 2.0, 2.5 / 0.75])


# --- loss and metric curves ---------------------------------------------------------------------


def test_loss_figure_small_run_draws_everything_on_a_log_axis():
    steps = np.arange(1, 101)
    losses = np.linspace(1.0, 0.1, 100)
    fig = figures.loss_figure(steps, losses, smoothing=0.6)
    raw, smooth = fig.data
    assert (raw.name, smooth.name) == ("raw", "smoothed (0.6)")
    assert raw.opacity < 0.5 and raw.line.width < smooth.line.width
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.xaxis.title.text == "Training step (log scale)"
    assert fig.layout.yaxis.title.text == "Loss (squared error)"
    assert np.array_equal(raw.x, steps)
    assert np.allclose(raw.y, losses)
    assert np.allclose(smooth.y, figures.ema(losses, 0.6), rtol=1e-6)
    assert fig.layout.uirevision


def test_long_loss_curve_is_thinned_evenly_in_log_step_with_ema_from_the_full_series():
    n = 100_000
    steps = np.arange(1, n + 1)
    losses = np.random.default_rng(0).random(n)
    raw, smooth = figures.loss_figure(steps, losses, smoothing=0.9).data
    x = np.asarray(raw.x)
    assert len(x) <= figures.MAX_CURVE_POINTS + 2
    assert x[0] == 1 and x[-1] == n and np.all(np.diff(x) > 0)
    # Evenly spread in log(step): each of the 5 decades gets about a fifth of the 4000 targets
    # (the first decades hold fewer integer steps than that, so fewer points are kept there).
    assert abs(np.sum(x >= 10_000) - 800) < 50 and abs(np.sum((x >= 1000) & (x < 10_000)) - 800) < 50
    # The smoothing is of the full series, read off at the kept steps (not an EMA of the thinned points).
    assert np.allclose(smooth.y, figures.ema(losses, 0.9)[x - 1], rtol=1e-5)
    assert not np.allclose(smooth.y, figures.ema(losses[x - 1], 0.9), rtol=1e-3)


def test_metric_figure_reference_line_and_extra_series():
    steps = np.array([1, 10, 100])
    fig = figures.metric_figure(steps, np.array([0.1, 0.5, 0.9]), "Mono", "neurons per feature", reference=1.0,
                                extra={"positive part": np.array([0.2, 0.6, 1.0])})
    assert fig.layout.xaxis.type == "log"
    assert [t.name for t in fig.data][1:] == ["positive part"]
    assert np.allclose(fig.data[1].y, [0.2, 0.6, 1.0])
    assert "markers" in fig.data[0].mode
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == 1.0 and line.line.dash == "dot"
    assert figures.metric_figure(steps, np.ones(3), "Mono", "n").layout.shapes == ()


# --- SFA heatmap -------------------------------------------------------------------------------


def small_sfa():
    sfa = np.zeros((3, 3))
    sfa[2, 1] = 1.0  # neuron 2 is monosemantic for feature 1
    sfa[0] = [0.4, 0.3, 0.2]
    sfa[1] = [0.0, 0.1, 0.6]
    return sfa


def test_heatmap_puts_the_most_monosemantic_neuron_on_top_with_its_real_index():
    sfa = small_sfa()
    fig = figures.sfa_heatmap(sfa)
    heat = fig.data[0]
    neurons, features = heatmap_order(sfa)
    rows_top_down = list(heat.y)[::-1]  # a category axis draws its first row at the bottom
    assert rows_top_down[0] == "n2" and heat.x[0] == "f1"
    assert rows_top_down == [f"n{i}" for i in neurons] and list(heat.x) == [f"f{j}" for j in features]
    assert np.array_equal(np.asarray(heat.z)[::-1], sfa[neurons][:, features].astype(np.float32))
    assert np.asarray(heat.z).dtype == np.float32
    assert fig.layout.yaxis.autorange is None  # not "reversed": see figures.sfa_heatmap
    assert heat.hovertemplate == "neuron %{y}<br>feature %{x}<br>activation %{z:.3f}<extra></extra>"
    assert (heat.zmin, heat.zmax) == (0, 1) and heat.colorbar.title.text == "activation"
    assert "ordered" in fig.layout.xaxis.title.text and "ordered" in fig.layout.yaxis.title.text


def fig_pooled_ticks(fig) -> bool:
    return bool(fig.layout.xaxis.showticklabels or fig.layout.yaxis.showticklabels)


def test_the_heatmap_gives_each_rows_r_beside_it():
    """A diagonal bright on the colour scale can be made of neurons far from the r > 0.999 that counts."""
    sfa = np.zeros((4, 8), dtype=np.float32)
    sfa[0, 0] = 1.0  # monosemantic
    sfa[1, 1], sfa[1, 2:] = 1.0, 0.015  # looks as clean on screen: r = 1 / 1.09 = 0.917, nearly mono
    sfa[2, 3], sfa[2, 4:] = 0.8, 0.1  # r = 0.8 / 1.2
    fig = figures.sfa_heatmap(sfa)  # neuron 3 is dead: r 0, grey
    heat, strip = fig.data
    assert list(strip.x) == ["r"] and list(strip.y) == list(heat.y) and strip.xaxis == "x2"
    assert np.allclose(np.asarray(strip.z)[::-1, 0], [1.0, 1 / 1.09, 0.8 / 1.2, 0.0])
    colour_of = {r: next(c for edge, c in reversed(strip.colorscale) if r >= edge) for r in (1.0, 0.917, 0.67)}
    assert colour_of[1.0] != colour_of[0.917] != colour_of[0.67]  # red, orange, grey
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]  # beside it, not over it
    assert [t[0] for t in strip.text][::-1] == ["monosemantic", "nearly monosemantic", "not monosemantic",
                                                "not monosemantic"]  # the hover's verdict, top row first
    # max-pooled (paper scale): each block's best r, one cell per drawn row
    big = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    big[7] = 0.0
    big[7, 5] = 1.0
    heat, strip = figures.sfa_heatmap(big, max_cells=1000).data
    assert np.asarray(strip.z).shape == (len(heat.y), 1) and np.asarray(strip.z).max() == 1.0
    assert sum(int(t[0].split()[0]) for t in strip.text) == 1  # a block's count of monosemantic neurons
    assert not fig_pooled_ticks(figures.sfa_heatmap(big, max_cells=1000))
    # a click on the strip's best row names the neuron that gives it its colour
    best_row = list(strip.y)[int(np.argmax(np.asarray(strip.z)[:, 0]))]
    assert figures.pooled_strip_neuron(big, True, None, best_row) == 7
    assert figures.pooled_strip_neuron(big, True, None, "n7") is None


def test_unordered_heatmap_keeps_index_order():
    sfa = small_sfa()
    fig = figures.sfa_heatmap(sfa, ordered=False)
    assert list(fig.data[0].y)[::-1] == ["n0", "n1", "n2"]  # top down
    assert np.array_equal(np.asarray(fig.data[0].z)[::-1], sfa.astype(np.float32))
    assert "index" in fig.layout.xaxis.title.text


def test_paper_scale_heatmap_is_block_max_pooled_under_the_cell_budget():
    sfa = np.random.default_rng(0).random((1024, 512)).astype(np.float32)
    fig = figures.sfa_heatmap(sfa, ordered=False)
    heat = fig.data[0]
    z = np.asarray(heat.z)[::-1]  # top down
    assert z.size <= figures.MAX_POOLED_HEATMAP_CELLS
    br, bc = math.ceil(1024 / z.shape[0]), math.ceil(512 / z.shape[1])
    assert z[3, 5] == sfa[3 * br:4 * br, 5 * bc:6 * bc].max()
    assert heat.y[-1] == f"#0-{br - 1}" and heat.y[0] == f"#{(z.shape[0] - 1) * br}-1023"  # ragged last block
    assert "neurons %{y}" in heat.hovertemplate
    assert f"{br}x{bc}" in fig.layout.title.text


def test_ordered_downsampled_heatmap_keeps_the_peak():
    sfa = np.random.default_rng(2).random((300, 200)) * 0.5
    sfa[123, 45] = 0.97
    z = np.asarray(figures.sfa_heatmap(sfa, max_cells=1000).data[0].z)
    assert z.size <= 1000 and z.max() == pytest.approx(0.97)


@pytest.mark.parametrize("shape, cells", [((100, 70), 1000), ((7, 3000), 500), ((33, 33), 100)])
def test_block_max_handles_ragged_edges(shape, cells):
    matrix = np.random.default_rng(3).random(shape).astype(np.float32)
    pooled, br, bc = figures.block_max(matrix, cells)
    assert pooled.size <= cells
    assert pooled.shape == (math.ceil(shape[0] / br), math.ceil(shape[1] / bc))
    expected = np.array([[matrix[i * br:(i + 1) * br, j * bc:(j + 1) * bc].max() for j in range(pooled.shape[1])]
                         for i in range(pooled.shape[0])])
    assert np.array_equal(pooled, expected)


# --- biases and score histogram ----------------------------------------------------------------


def test_bias_figure_in_heatmap_order_with_monosemantic_neurons_coloured():
    sfa = small_sfa()
    biases = np.array([-1.0, 0.2, -0.5])
    fig = figures.bias_figure(biases, sfa)
    order = heatmap_order(sfa)[0]
    mono, rest = fig.data
    assert mono.name == "monosemantic" and list(mono.customdata) == [2]
    assert mono.marker.color != rest.marker.color
    xs = np.concatenate([mono.x, rest.x])
    ys = np.concatenate([mono.y, rest.y])
    assert sorted(xs) == [0, 1, 2]
    assert np.allclose(ys[np.argsort(xs)], biases[order])
    assert fig.layout.barmode == "overlay"  # one bar per position: grouping would halve and shift them
    assert fig.layout.xaxis.title.text == "neuron (ordered as in the heatmap)"


def test_dead_neurons_are_never_coloured_monosemantic():
    sfa = np.array([[1.0, 0.0], [0.0, 0.0]])
    mono, rest = figures.bias_figure(np.array([0.1, -3.0]), sfa).data
    assert list(mono.customdata) == [0] and list(rest.customdata) == [1]


def test_the_bias_figure_keys_its_colours_with_no_neuron_monosemantic_too():
    """Plotly leaves out the legend of a figure whose one trace has bars: the grey bars had no key."""
    sfa = np.full((3, 4), 0.5)
    mono, rest = (fig := figures.bias_figure(np.array([0.1, -3.0, 0.0]), sfa)).data
    assert len(mono.x) == 0 and len(rest.x) == 3 and fig.layout.showlegend is True


def test_bias_figure_without_sfa_sorts_ascending():
    biases = np.array([0.3, -1.0, 0.0])
    bar = figures.bias_figure(biases).data[0]
    assert np.allclose(bar.y, [-1.0, 0.0, 0.3]) and list(bar.customdata) == [1, 2, 0]


def test_score_histogram_counts_alive_neurons_in_20_bins_over_0_1():
    sfa = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    fig = figures.score_histogram_figure(sfa)
    assert "2 of 4 above 0.999 (1 dead)" in fig.layout.title.text
    (bars,) = fig.data  # no bars for r outside [0, 1]: ReLU never puts it there
    counts = np.asarray(bars.y)
    assert len(counts) == 20 and counts.sum() == 3  # the dead neuron is left out
    assert counts[-1] == 2 and counts[10] == 1  # r = 1 (exactly, in float32) falls in the last bin
    assert list(fig.layout.xaxis.range) == [0, 1]
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 0.999 and line.line.dash == "dot"


def test_score_histogram_gives_r_above_1_and_below_0_bars_of_their_own():
    # GeLU-like rows: negatives shrink the sum (r = 2) or turn it negative (r = -0.5); before, they were clipped
    # into the end bins, where r = 2 read as monosemantic and r = -0.5 as r = 0
    sfa = np.array([[1.0, -0.5], [0.5, -1.5], [0.5, 0.5], [1.0, 0.0]], dtype=np.float32)
    fig = figures.score_histogram_figure(sfa)
    inside, outside = fig.data
    assert np.asarray(inside.y).sum() == 2 and np.asarray(inside.y)[-1] == 1 and np.asarray(inside.y)[10] == 1
    assert list(outside.text) == ["r < 0", "r > 1"] and list(outside.y) == [1, 1]
    assert outside.x[0] < 0 < 1 < outside.x[1]
    lo, hi = fig.layout.xaxis.range
    assert lo < outside.x[0] and outside.x[1] < hi
    only_above = figures.score_histogram_figure(sfa[[0, 2]])
    assert list(only_above.data[1].text) == ["r > 1"] and only_above.layout.xaxis.range[0] == 0


# --- empty inputs and live updates -------------------------------------------------------------


def test_empty_inputs_show_a_message_not_a_blank_figure():
    empty = np.zeros(0)
    loss = figures.loss_figure(empty, empty)
    assert loss.layout.annotations[0].text == "No steps trained yet"
    for fig in (loss, figures.metric_figure(empty, empty, "Mono", "n"), figures.sfa_heatmap(None),
                figures.sfa_heatmap(np.zeros((0, 4))), figures.bias_figure(None),
                figures.score_histogram_figure(None)):
        assert fig.data == ()
        assert fig.layout.annotations and fig.layout.annotations[0].text


def test_every_figure_keeps_zoom_across_live_updates():
    sfa, steps = small_sfa(), np.arange(1, 5)
    for fig in (figures.loss_figure(steps, np.ones(4)), figures.metric_figure(steps, np.ones(4), "t", "y"),
                figures.sfa_heatmap(sfa), figures.bias_figure(np.zeros(3), sfa),
                figures.score_histogram_figure(sfa), figures.loss_figure(np.zeros(0), np.zeros(0))):
        assert fig.layout.uirevision


def test_a_click_on_a_pooled_block_picks_the_cell_that_gives_it_its_colour():
    rng = np.random.default_rng(3)
    sfa = rng.random((200, 150)).astype(np.float32) * (rng.random((200, 150)) < 0.05)
    for ordered in (True, False):
        fig = figures.sfa_heatmap(sfa, ordered=ordered, max_cells=40 * 30)
        heat = fig.data[0]
        z, rows, cols = np.asarray(heat.z), list(heat.y), list(heat.x)
        assert rows[0].startswith("#")  # pooled
        for r, c in ((0, 0), (len(rows) - 1, 3), (7, len(cols) - 1)):
            neuron, feature = figures.pooled_block_cell(sfa, ordered, None, rows[r], cols[c])
            assert sfa[neuron, feature] == pytest.approx(z[r][c])  # the block's colour is this cell's value
    assert figures.pooled_block_cell(sfa, True, None, "n3", "f4") is None  # a single cell names itself


def test_heatmap_with_feature_ticks_leaves_room_for_them_above_the_axis_title():
    rng = np.random.default_rng(0)
    labelled = figures.sfa_heatmap(rng.random((48, 64), dtype=np.float32))  # ticks shown, upright once crowded
    unlabelled = figures.sfa_heatmap(rng.random((256, 128), dtype=np.float32))
    assert labelled.layout.xaxis.showticklabels and not unlabelled.layout.xaxis.showticklabels
    assert labelled.layout.margin.b >= 70 > unlabelled.layout.margin.b


def test_a_click_beside_a_bright_cell_picks_it():
    """Rows are ~2 px high: a click aimed at the diagonal often lands on the dark cell above or below it."""
    sfa = np.zeros((8, 3), dtype=np.float32)
    sfa[4, 1] = 0.9
    sfa[0, 1] = 1.0  # brighter, but 4 rows away in the drawn order
    drawn = np.arange(8)
    assert figures.nearest_bright_neuron(sfa, drawn, 5, 1) == 4  # one row off: snapped
    assert figures.nearest_bright_neuron(sfa, drawn, 3, 1) == 4
    assert figures.nearest_bright_neuron(sfa, drawn, 7, 1) == 7  # nothing bright near: as clicked
    assert figures.nearest_bright_neuron(sfa, drawn, 5, 0) == 5  # a dark column: as clicked
    sfa[5, 1] = 0.6
    assert figures.nearest_bright_neuron(sfa, drawn, 5, 1) == 5  # bright itself: as clicked
    shuffled = np.array([0, 4, 7, 1, 2, 3, 5, 6])
    assert figures.nearest_bright_neuron(sfa, shuffled, 7, 1) == 0  # rows beside it as drawn, not by index


def test_each_extra_mono_count_has_one_line_style_on_every_page():
    """Train drew nearly mono and the positive part both dashed, Compare the positive part dashed, Sweeps them
    dotted and dash-dotted."""
    from app import sweep_figures

    steps = np.array([1, 10, 100])
    fig = figures.metric_figure(steps, np.zeros(3), "Mono", "mono neurons / N",
                                extra={figures.NEARLY_MONO_NAME: np.ones(3), figures.POSITIVE_MONO_NAME: np.ones(3)})
    assert [t.line.dash for t in fig.data[1:]] == ["dot", "dashdot"]
    sweeps = {name: dash for name, _, _, _, dash in sweep_figures.RESULT_SERIES}
    assert sweeps[figures.NEARLY_MONO_NAME] == "dot"
    assert sweeps[f"{figures.POSITIVE_MONO_NAME} (not the paper's)"] == "dashdot"


def test_a_loss_that_ran_away_is_drawn_on_a_log_axis():
    steps = np.arange(1, 101)
    calm = figures.loss_figure(steps, np.linspace(1.0, 0.5, 100))
    assert calm.layout.yaxis.type is None and calm.layout.yaxis.title.text == "Loss (squared error)"
    diverging = figures.loss_figure(steps, np.concatenate([np.linspace(1.0, 0.5, 90), np.logspace(2, 35, 9),
                                                           [np.inf]]))
    assert diverging.layout.yaxis.type == "log" and "log scale" in diverging.layout.yaxis.title.text
