import math

from core.config import FIELDS, RunConfig, checked_value, config_from_dict, memory_budget_bytes, memory_budget_problem
from core.presets import PAPER_BATCHES, PRESETS, QUICK_DECAY_SCALE, QUICK_PRESETS, QUICK_STEPS


def test_defaults_are_valid():
    assert RunConfig().validate() == {}


def test_every_bad_field_reported_at_once_with_its_range():
    bad = RunConfig(eps=0.0, lr=-1.0, n_neurons=0, task="nope", steps=1)
    errors = bad.validate()
    assert set(errors) == {"eps", "lr", "n_neurons", "task", "steps"}
    assert "(0, 1]" in errors["eps"]
    assert "decoder, random_proj, abs" in errors["task"]
    assert "from 2 to" in errors["steps"]


def test_embed_dim_must_be_below_features():
    errors = RunConfig(n_features=16, embed_dim=16).validate()
    assert "allowed 1 to 15" in errors["embed_dim"]


def test_a_run_keeps_at_most_65536_snapshots():
    """Each is kept in the run's history: a million-step run snapshotting every step was slow to open."""
    errors = RunConfig(steps=2**20, snapshot_every=1).validate()
    assert errors == {"snapshot_every": "snapshot_every must be at least steps / 65536 (each snapshot is kept in the "
                                        "run's history): with steps = 1048576 allowed 16 to 1048576, got 1"}
    assert RunConfig(steps=2**20, snapshot_every=16).validate() == {}
    assert RunConfig(steps=100, snapshot_every=1).validate() == {}


def test_eps_too_small_for_any_feature_to_appear_is_refused():
    """eps = 1e-300 passed the (0, 1] range and trained a run in which no feature was ever present."""
    errors = RunConfig(eps=1e-300, n_features=128, batch_size=512, steps=8192).validate()
    assert errors == {"eps": "eps * n_features * batch_size * steps must be at least 1 (on average, a feature present "
                             "at least once in the whole run): with N = 128, batch 512 and 8192 steps allowed 1.87e-09 "
                             "to 1, got 1e-300"}
    assert RunConfig(eps=1 / (128 * 512 * 8192), n_features=128, batch_size=512, steps=8192).validate() == {}


def test_cross_field_check_runs_beside_other_errors():
    errors = RunConfig(n_features=16, embed_dim=20, eps=3.0).validate()
    assert set(errors) == {"embed_dim", "eps"}


def test_memory_bound_on_batch_times_width():
    errors = RunConfig(n_neurons=16384, batch_size=65536).validate()
    assert "memory" in errors["batch_size"]


def test_nan_inf_and_bool_rejected():
    for value in (math.nan, math.inf, True):
        assert "lr" in RunConfig(lr=value).validate()


def test_ranges_are_stated_exactly_and_huge_values_quoted_short():
    _, errors = config_from_dict({"steps": 1048577, "seed": 2**31, "lr": 10**400, "init_bias": -(10**400),
                                  "batch_size": "99999999999999999999999999"})
    assert errors["steps"] == "steps must be an integer from 2 to 1048576, got 1048577"  # not 1.04858e+06
    assert errors["seed"] == "seed must be an integer from 0 to 2147483647, got 2147483648"
    assert errors["lr"].startswith("lr must be a number in (0, 1], got 1000") and "(401 characters)" in errors["lr"]
    assert "init_bias must be a number in [-10, 10]" in errors["init_bias"]
    assert errors["batch_size"].endswith("got 99999999999999999999999999")  # as given, not rounded by a float
    # typed text out of range is quoted as typed, not as the digits it parsed to
    assert checked_value("n_neurons", " 1e40")[1] == "n_neurons must be an integer from 1 to 16384, got 1e40"
    assert config_from_dict({"steps": "2e6"})[1]["steps"] == "steps must be an integer from 2 to 1048576, got 2e6"
    # text that is no number stays quoted, in a choice field too
    assert checked_value("precision", "fp64")[1] == "precision must be one of fp32, tf32, bf16, got 'fp64'"
    assert config_from_dict({"device": ""})[1] == {"device": "device must be one of auto, cpu, cuda, got ''"}
    assert checked_value("n_neurons", "2.5")[1] == "n_neurons must be an integer from 1 to 16384, got 2.5"


def test_over_budget_message_names_what_to_reduce(monkeypatch):
    monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", "4")
    errors = RunConfig(n_features=4096, embed_dim=16, n_neurons=16384, batch_size=1024, steps=1 << 20,
                       snapshot_every=4096).validate()
    assert "most of it is checkpoints" in errors["memory"] and "reduce steps" in errors["memory"]


def test_from_dict_coerces_strings_and_rejects_unknown_fields():
    config, errors = config_from_dict({"n_neurons": "64", "lr": "0.003", "task": "abs"})
    assert errors == {} and config.n_neurons == 64 and config.lr == 0.003 and config.task == "abs"
    _, errors = config_from_dict({"n_neurons": 2.5, "colour": "red", "eps": "lots"})
    assert set(errors) == {"n_neurons", "colour", "eps"}


def test_field_table_has_help_and_range_for_every_knob():
    for f in FIELDS.values():
        assert f.metadata["help"]
        assert f.metadata["choices"] or f.metadata["lo"] is not None


def test_presets_valid_and_paper_batches_complete():
    assert all(not p.config.validate() for p in PRESETS.values())
    expected = {"LR1", "LR2", "LR3", "LR4", "B1", "B2", "B3", "B4", "B5", "G3", "E1", "E2", "E3", "E4",
                "K0", "K1", "K2", "RG1", "RP1", "LR5", "D1"}
    assert set(PAPER_BATCHES) == expected
    lr3 = PAPER_BATCHES["LR3"]
    assert lr3.values == (0.001, 0.003, 0.005, 0.007, 0.01, 0.03)
    assert lr3.base.n_features == 512 and lr3.base.n_neurons == 1024 and lr3.base.steps == 2**17
    assert PAPER_BATCHES["LR5"].base.n_neurons == 2048 and PAPER_BATCHES["LR5"].base.task == "abs"


def test_quick_twins_take_the_decay_the_quick_presets_are_calibrated_with():
    """LR3's twin at lr 0.01 is quick-negative-bias, the preset the science test trains (with decay x16, for
    decay * lr * steps as in the paper, the twins showed no bias effect at all)."""
    quick = PAPER_BATCHES["LR3"].quick()
    assert quick.base.steps == QUICK_STEPS and all(not c.validate() for c in quick.configs())
    assert quick.base.replace(lr=0.01) == QUICK_PRESETS["quick-negative-bias"].config
    assert PAPER_BATCHES["LR1"].quick().base.replace(lr=0.01) == QUICK_PRESETS["quick-zero-bias"].config
    decays = PAPER_BATCHES["D1"]
    assert decays.quick().values == tuple(QUICK_DECAY_SCALE * v for v in decays.values)


def test_only_plain_decimal_text_is_a_number():
    config, errors = config_from_dict({"steps": "1_0", "snapshot_every": "\u0662", "lr": " 1e-3 ", "eps": ".5"})
    assert set(errors) == {"steps", "snapshot_every"}  # float() reads both: 10 and 2
    assert errors["steps"] == "steps must be an integer from 2 to 1048576, got '1_0'"
    # quoted as typed, not as the 0 it underflows to; a zero written so is zero
    assert config_from_dict({"lr": "1e-400"})[1] == {
        "lr": "lr must be a number in (0, 1], got 1e-400, too small for a float (write 0 for zero)"}
    assert checked_value("init_bias", "1e-400")[1].endswith("got 1e-400, too small for a float (write 0 for zero)")
    assert config_from_dict({"init_bias": "0.0e-400"}) == (RunConfig(init_bias=0.0), {})


def test_values_an_api_client_sent_are_quoted_as_json():
    _, errors = config_from_dict({"seed": True, "eps": None, "lr": {"a": 1}})
    assert errors["seed"].endswith("got true") and errors["eps"].endswith("got null")
    assert errors["lr"].endswith('got {"a": 1}')


def test_bad_memory_budget_is_named(monkeypatch):
    for raw in ("nan", "inf", "abc", "0", "-1", "1_0"):  # float() reads "1_0" as 10: config fields refuse it
        monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", raw)
        assert memory_budget_problem() == f"LAB_MEMORY_BUDGET_GIB must be a number of GiB in (0, 1048576], got {raw!r}"
    monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", "0.5")
    assert memory_budget_problem() is None and memory_budget_bytes() == 2**29
