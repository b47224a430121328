import pytest
import torch

from core.data import (
    FeatureSampler,
    bernoulli_positions,
    feature_probabilities,
    make_embedder,
    sample_task_batch,
    task_sampler,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample_features(batch_size: int, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return FeatureSampler(probs).sparse(batch_size, generator).dense()


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
    sampler = task_sampler("abs", 64, 1 / 8, "equal")
    probs = sampler.probs
    e = make_embedder(64, 8, gen(1))
    x, target = sample_task_batch("abs", 20000, sampler, gen(), e, None)
    density = (target > 0).float().mean().item()
    assert abs(density - 1 / 8) < 0.005  # two draws at eps/2: nearly eps when overlaps are rare
    assert torch.all(target >= 0)
    g = gen()
    v = sample_features(20000, probs, g) - sample_features(20000, probs, g)
    assert torch.allclose(x, v @ e.T, atol=1e-5) and torch.equal(target, v.abs())
    assert (v < 0).any() and (v > 0).any()


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("task", ["decoder", "random_proj", "abs"])
def test_both_sampling_paths_give_inputs_and_targets_of_the_same_features(task, sparse):
    """x = v @ E.T, and the target is v, v @ E2.T or |v|, on the CPU's sparse path and the GPU's dense one."""
    sampler = task_sampler(task, 48, 1 / 8, "power_law")
    e, e2 = make_embedder(48, 6, gen(1)), make_embedder(48, 6, gen(2))
    x, target = sample_task_batch(task, 500, sampler, gen(3), e, e2 if task == "random_proj" else None,
                                  sparse=sparse)
    assert x.shape == (500, 6) and target.shape == ((500, 6) if task == "random_proj" else (500, 48))
    if task == "random_proj":  # the same stream as a decoder batch: the same features
        _, v = sample_task_batch("decoder", 500, sampler, gen(3), e, None, sparse=sparse)
        assert torch.allclose(x, v @ e.T, atol=1e-5) and torch.allclose(target, v @ e2.T, atol=1e-5)
    elif task == "abs":
        assert torch.all(target >= 0) and (target > 0).float().mean() == pytest.approx(1 / 8, abs=0.02)
    else:
        assert torch.allclose(x, target @ e.T, atol=1e-5)


def test_decoder_and_random_proj_targets():
    sampler = task_sampler("decoder", 32, 1 / 4, "equal")
    e, e2 = make_embedder(32, 6, gen(1)), make_embedder(32, 6, gen(2))
    g1, g2 = gen(5), gen(5)
    x, target = sample_task_batch("decoder", 100, sampler, g1, e, None)
    assert torch.allclose(x, target @ e.T, atol=1e-6)
    x2, target2 = sample_task_batch("random_proj", 100, sampler, g2, e, e2)
    assert torch.allclose(x2, x)  # same stream, same features
    assert torch.allclose(target2, target @ e2.T, atol=1e-6)
    assert target2.shape == (100, 6)


def test_bernoulli_positions_match_independent_trials():
    """Geometric gaps give i.i.d. Bernoulli trials: the count, and each position's rate, match."""
    total, rate, repeats = 1000, 0.03, 4000
    g = gen(3)
    hits = torch.zeros(total)
    counts = []
    for _ in range(repeats):
        positions = bernoulli_positions(total, rate, g)
        assert torch.all(positions[1:] > positions[:-1]) and positions.min() >= 0 and positions.max() < total
        hits[positions] += 1
        counts.append(len(positions))
    counts = torch.tensor(counts, dtype=torch.float64)
    assert abs(counts.mean().item() - total * rate) < 4 * (total * rate * (1 - rate) / repeats) ** 0.5
    assert abs(counts.var().item() / (total * rate * (1 - rate)) - 1) < 0.1  # binomial, not over-dispersed
    # the first and the last positions are hit at the same rate (no drift along the gaps)
    first, last = hits[:100].mean().item() / repeats, hits[-100:].mean().item() / repeats
    assert abs(first - rate) < 0.003 and abs(last - rate) < 0.003


def test_bernoulli_positions_keep_drawing_past_the_first_chunk():
    g = gen(4)
    assert torch.equal(bernoulli_positions(50, 1.0, g), torch.arange(50))
    assert len(bernoulli_positions(50, 0.0, g)) == 0
    many = [len(bernoulli_positions(10, 0.999, g)) for _ in range(200)]  # chunk sized for ~10 successes
    assert max(many) == 10 and sum(many) > 1990


@pytest.mark.parametrize("sample_kind", ["equal", "power_law"])
def test_sparse_and_dense_samplers_match_the_definition(sample_kind):
    """Both samplers against v = U(0,1) * Bernoulli(p): per-feature presence, amplitude quartiles."""
    probs = feature_probabilities(256, 1 / 32, sample_kind)
    sampler = FeatureSampler(probs)
    batch = 40000
    for v in (sampler.sparse(batch, gen(8)).dense(), sampler.dense(batch, gen(9))):
        present = v > 0
        sigma = (probs * (1 - probs) / batch).sqrt().clamp(min=1e-6)
        assert ((present.float().mean(0) - probs).abs() / sigma).max() < 5.5
        amplitudes = v[present]
        assert amplitudes.max() < 1
        quartiles = torch.quantile(amplitudes[:100000], torch.tensor([0.25, 0.5, 0.75]))
        assert torch.allclose(quartiles, torch.tensor([0.25, 0.5, 0.75]), atol=0.01)


def test_dense_features_take_the_dense_path(monkeypatch):
    """Above density 1/8 a present cell's indices would outweigh the dense batch: draw it densely."""
    def refuse(*_):
        raise AssertionError("the sparse path was taken")

    monkeypatch.setattr(FeatureSampler, "sparse", refuse)
    e = make_embedder(32, 6, gen(1))
    x, target = sample_task_batch("decoder", 400, task_sampler("decoder", 32, 0.5, "equal"), gen(2), e, None)
    assert (target > 0).float().mean() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(AssertionError, match="sparse path"):
        sample_task_batch("decoder", 400, task_sampler("decoder", 32, 1 / 64, "equal"), gen(2), e, None)


@pytest.mark.parametrize("task", ["decoder", "random_proj", "abs"])
def test_a_bf16_batch_is_the_fp32_batch_rounded(task):
    """The bf16 step's batch: drawn exactly as in fp32 (same stream), stored in bfloat16."""
    sampler = task_sampler(task, 48, 1 / 8, "power_law")
    e, e2 = make_embedder(48, 6, gen(1)), make_embedder(48, 6, gen(2))
    out_dim = 6 if task == "random_proj" else 48
    x_out, target_out = torch.empty(500, 6, dtype=torch.bfloat16), torch.empty(500, out_dim, dtype=torch.bfloat16)
    x, target = sample_task_batch(task, 500, sampler, gen(3), e, e2, x_out=x_out, target_out=target_out,
                                  sparse=False)
    assert x is x_out and target is target_out
    x32, target32 = sample_task_batch(task, 500, sampler, gen(3), e, e2, sparse=False)
    assert torch.equal(x, x32.bfloat16()) and torch.equal(target, target32.bfloat16())
