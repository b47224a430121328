import torch

from core.data import feature_probabilities, make_embedder, sample_features, sample_task_batch, task_probabilities


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_embedder_shape_and_unit_columns():
    e = make_embedder(64, 8, gen())
    assert e.shape == (8, 64)
    # E = u.T with u's rows unit-normalised: every feature's embedding (column) has norm 1
    assert torch.allclose(e.norm(dim=0), torch.ones(64), atol=1e-5)


def test_equal_sampler_density_and_amplitudes():
    probs = feature_probabilities(128, 1 / 16, "equal")
    v = sample_features(20000, probs, gen())
    density = (v > 0).float().mean().item()
    assert abs(density - 1 / 16) < 0.002
    present = v[v > 0]
    assert present.max() <= 1 and abs(present.mean().item() - 0.5) < 0.01


def test_power_law_probabilities_sum_to_n_eps_and_decay():
    probs = feature_probabilities(512, 1 / 128, "power_law")  # p_1 ~ 0.53: nothing clipped
    assert abs(probs.sum().item() - 512 / 128) < 1e-3
    assert torch.all(probs[:-1] >= probs[1:])
    ratio = probs[0] / probs[9]
    assert abs(ratio.item() - 10**1.1) < 1e-2
    v = sample_features(20000, probs, gen())
    empirical = (v > 0).float().mean(0)
    assert abs(empirical[0].item() - probs[0].item()) < 0.01


def test_power_law_clipped_at_one():
    probs = feature_probabilities(8, 0.9, "power_law")
    assert probs.max() <= 1.0


def test_abs_task_density_matches_eps_and_target_is_abs():
    probs = task_probabilities("abs", 64, 1 / 8, "equal")
    e = make_embedder(64, 8, gen(1))
    x, target = sample_task_batch("abs", 20000, probs, gen(), e, None)
    density = (target > 0).float().mean().item()
    assert abs(density - 1 / 8) < 0.005  # two draws at eps/2: nearly eps when overlaps are rare
    assert torch.all(target >= 0)
    g = gen()
    v = sample_features(20000, probs, g) - sample_features(20000, probs, g)
    assert torch.allclose(x, v @ e.T) and torch.equal(target, v.abs())
    assert (v < 0).any() and (v > 0).any()


def test_decoder_and_random_proj_targets():
    probs = task_probabilities("decoder", 32, 1 / 4, "equal")
    e, e2 = make_embedder(32, 6, gen(1)), make_embedder(32, 6, gen(2))
    g1, g2 = gen(5), gen(5)
    x, target = sample_task_batch("decoder", 100, probs, g1, e, None)
    assert torch.allclose(x, target @ e.T)
    x2, target2 = sample_task_batch("random_proj", 100, probs, g2, e, e2)
    assert torch.allclose(x2, x)  # same stream, same features
    assert torch.allclose(target2, target @ e2.T)
    assert target2.shape == (100, 6)
