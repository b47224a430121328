"""Figure functions: what a user reads off each plot."""

import numpy as np

from app import figures


def test_ema_is_debiased_and_identity_at_zero():
    assert np.allclose(figures.ema(np.array([1.0, 0.0, 0.0]), 0.5), [1.0, 1 / 3, 1 / 7])
    values = np.array([3.0, 1.0, 2.0])
    assert np.array_equal(figures.ema(values, 0.0), values)
    assert np.allclose(figures.ema(np.array([1.0, np.nan, 1.0]), 0.9), [1.0, 1.0, 1.0])


def test_loss_figure_log_axis_raw_and_smoothed():
    steps = np.arange(1, 101)
    fig = figures.loss_figure(steps, np.linspace(1, 0, 100), smoothing=0.6)
    assert [t.name for t in fig.data] == ["raw", "smoothed (0.6)"]
    assert fig.layout.xaxis.type == "log"
    assert np.allclose(fig.data[0].y, np.linspace(1, 0, 100))


def test_long_loss_curves_are_thinned_keeping_both_ends():
    steps = np.arange(1, 2**17 + 1)
    fig = figures.loss_figure(steps, np.ones(len(steps)))
    x = np.asarray(fig.data[0].x)
    assert len(x) <= figures.MAX_CURVE_POINTS + 2 and x[0] == 1 and x[-1] == 2**17


def test_heatmap_in_paper_order_names_original_indices():
    sfa = np.zeros((3, 2))
    sfa[2, 1] = 1.0  # neuron 2 is monosemantic for feature 1
    sfa[0] = 0.4     # neuron 0 fires for both
    fig = figures.sfa_heatmap(sfa)
    heat = fig.data[0]
    assert heat.y[-1] == "n2" and heat.x[0] == "f1"  # the last row given is the top one on screen
    assert np.asarray(heat.z)[-1, 0] == 1.0
    unsorted = figures.sfa_heatmap(sfa, ordered=False).data[0]
    assert list(unsorted.y) == ["n2", "n1", "n0"]


def test_bias_figure_highlights_monosemantic_neurons():
    sfa = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.9]])
    fig = figures.bias_figure(np.array([-1.0, 0.2, -0.5]), sfa)
    mono, rest = fig.data
    assert mono.name == "monosemantic" and sorted(mono.customdata) == [0, 2]
    assert list(rest.customdata) == [1]


def test_score_histogram_title_counts():
    sfa = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    assert "1 of 3 above 0.999 (1 dead)" in figures.score_histogram_figure(sfa).layout.title.text
    assert "(1 dead at +1)" in figures.score_histogram_figure(sfa, task="abs").layout.title.text  # may fire at -1


def test_empty_inputs_say_so():
    for fig in (figures.loss_figure(np.zeros(0), np.zeros(0)), figures.sfa_heatmap(None),
                figures.bias_figure(None), figures.score_histogram_figure(None)):
        assert fig.layout.annotations and fig.layout.annotations[0].text


def test_checkpoint_marks_never_crowd():
    from app.components import checkpoint_marks

    # log2 checkpoints then evenly spaced ones: the early ones sit one position apart on the slider
    steps = [2 ** i for i in range(14)] + list(range(8192 + 4096, 2 ** 17 + 1, 4096))
    marks = checkpoint_marks(steps, "live")
    positions = sorted(marks)
    assert marks[len(steps)] == "live" and all(int(marks[i]) == steps[i] for i in positions[:-1])
    assert all(b - a >= len(steps) / 8 for a, b in zip(positions, positions[1:]))  # labels do not run together
    assert len(marks) >= 3
