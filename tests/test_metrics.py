import numpy as np
import torch

from core.metrics import (
    SfaSummary,
    dead_neurons,
    heatmap_order,
    mono_ratio,
    mono_scores,
    monosemantic_neurons,
    positive_mono_scores,
    positive_monosemantic_neurons,
    score_histogram,
    single_feature_activations,
)


def test_mono_scores_hand_checked():
    sfa = np.array([[1.0, 0.0, 0.0],   # one feature only: r = 1
                    [0.5, 0.5, 0.0],   # two equal: r = 0.5
                    [0.0, 0.0, 0.0],   # dead: r = 0
                    [0.9, 0.0005, 0.0]])  # r = 0.9/0.9005 = 0.99944 > 0.999
    r = mono_scores(sfa)
    assert np.allclose(r, [1.0, 0.5, 0.0, 0.9 / (1e-10 + 0.9005)])
    assert monosemantic_neurons(sfa).tolist() == [True, False, False, True]
    assert dead_neurons(sfa).tolist() == [False, False, True, False]
    assert mono_ratio(sfa) == 2 / 3  # two mono neurons, three features


def test_positive_part_ratio_ignores_negative_outputs():
    sfa = np.array([[1.0, -0.5, 0.0]])  # GeLU-like: max/sum = 2 > 0.999 by accident
    assert mono_scores(sfa)[0] == 1.0 / (1e-10 + 0.5)
    assert np.isclose(positive_mono_scores(sfa)[0], 1.0)


def test_heatmap_order_puts_selective_neurons_first_and_aligns_features():
    sfa = np.array([[0.3, 0.3, 0.3],   # polysemantic
                    [0.0, 0.0, 0.8],   # mono for feature 2
                    [0.7, 0.0, 0.0]])  # mono for feature 0
    neurons, features = heatmap_order(sfa)
    assert set(neurons[:2]) == {1, 2} and neurons[2] == 0
    ordered = sfa[neurons][:, features]
    # each of the first two features peaks in the row of its own mono neuron: a diagonal
    assert ordered[0, 0] > 0 and ordered[1, 1] > 0 and ordered[0, 1] == 0


def test_summary_counts():
    sfa = np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 0.0]])
    s = SfaSummary.of(sfa)
    assert s.mono_neurons == 1 and s.dead_neurons == 1 and s.nearly_mono_neurons == 2
    assert s.mono_ratio == 0.5


def test_sfa_is_hidden_activation_of_each_embedded_feature():
    torch.manual_seed(0)
    w1, b1, e = torch.randn(2, 5, 3), torch.randn(2, 5), torch.randn(2, 3, 4)
    sfa = single_feature_activations(w1, b1, e, "relu")
    assert sfa.shape == (2, 5, 4)
    for r in range(2):
        for f in range(4):
            expected = torch.relu(w1[r] @ e[r][:, f] + b1[r])
            assert torch.allclose(sfa[r, :, f], expected, atol=1e-6)


def test_positive_part_mono_mask_is_the_summarys_definition():
    sfa = np.array([[1.0, -0.5, 0.0],   # r = 2, positive part 1: mono both ways
                    [0.6, 0.5, -0.8],   # r = 2 by accident; positive part 0.55: not
                    [0.0, 0.0, 0.0]])   # dead: never
    assert monosemantic_neurons(sfa).tolist() == [True, True, False]
    assert positive_monosemantic_neurons(sfa).tolist() == [True, False, False]
    assert SfaSummary.of(sfa).positive_mono_ratio == 1 / 3


def test_score_histogram_counts_r_outside_0_1_apart():
    hist = score_histogram(np.array([-0.5, 0.0, 0.5, 1.0, 1.0001, 20.7]))
    assert hist.below == 1 and hist.above == 2
    assert hist.counts.sum() == 3 and hist.counts[0] == 1 and hist.counts[10] == 1 and hist.counts[-1] == 1
    assert len(hist.edges) == 21 and hist.edges[0] == 0 and hist.edges[-1] == 1
