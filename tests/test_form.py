"""The run form's link: the URL query that holds a config."""

from app.form import (
    FIELD_NAMES,
    LinkedConfig,
    config_from_query,
    config_to_query,
    form_errors,
    form_summary,
    snapshots_for_steps,
    values_from_config,
)
from core.config import RunConfig
from core.presets import PRESETS, preset_config


def test_a_link_gives_back_the_very_same_config():
    config = preset_config("quick-negative-bias").replace(lr=0.010000001, eps=1 / 3, init_bias=-0.123456789,
                                                          n_neurons=300)
    query = config_to_query(config, "quick-negative-bias")
    assert query.startswith("?preset=quick-negative-bias&")
    assert config_from_query(query) == LinkedConfig("quick-negative-bias", config, [])  # no digit lost to rounding
    whole = config.replace(init_bias=-2.0, lr=1.0)  # a whole number is written as people write it
    assert "&lr=1&" in config_to_query(whole, None) and "&init_bias=-2&" in config_to_query(whole, None)
    assert config_from_query(config_to_query(whole, None)).config == whole


def test_a_link_with_bad_values_keeps_the_valid_ones_and_names_the_rest():
    linked = config_from_query("?preset=quick-negative-bias&n_neurons=300&eps=7&colour=red&lr=1" + "0" * 400)
    assert linked.preset == "quick-negative-bias"
    assert linked.config == preset_config("quick-negative-bias").replace(n_neurons=300)
    assert len(linked.ignored) == 3
    assert "'colour' is not a field" in linked.ignored
    assert any(p.startswith("Feature density eps must be a number in (0, 1], got 7") for p in linked.ignored)
    assert any(p.startswith("Learning rate must be") and "(401 characters)" in p for p in linked.ignored)


def test_a_link_names_blank_and_repeated_values_and_a_link_without_a_config_keeps_the_form():
    linked = config_from_query("?preset=demo-tiny&steps=&lr=0.5&lr=0.02")
    assert linked.config == preset_config("demo-tiny").replace(lr=0.02)  # the last of a repeated key
    assert "'lr' is given 2 times: all but the last" in linked.ignored
    assert any(p.startswith("Steps must be an integer from 2 to 1048576, got ''") for p in linked.ignored)
    assert config_from_query("?utm_source=mail") == LinkedConfig(None, None, ["'utm_source' is not a field"])
    assert config_from_query("?token=s3cret") == LinkedConfig(None, None, [])  # the lab's token: not a field
    custom = config_from_query("?preset=custom&n_neurons=48")  # no preset: against the defaults, nothing ignored
    assert custom == LinkedConfig(None, RunConfig(n_neurons=48), [])
    assert config_from_query(config_to_query(RunConfig(n_neurons=48), "custom")) == custom
    assert config_to_query(RunConfig(), "custom") == "?preset=custom"  # the defaults as they are: still custom
    assert config_from_query("?preset=custom") == LinkedConfig(None, RunConfig(), [])


def test_a_link_whose_values_clash_fills_the_form_which_then_marks_them():
    linked = config_from_query("?preset=demo-tiny&n_features=4")
    assert linked == LinkedConfig("demo-tiny", preset_config("demo-tiny").replace(n_features=4), [])
    _, errors = form_errors(values_from_config(linked.config))
    assert errors["embed_dim"].startswith("Embedding dim m must be below Features N (N = 4)")
    assert config_from_query("?preset=nonsense").ignored == ["preset 'nonsense' is unknown"]
    assert config_from_query("") == LinkedConfig(None, None, [])


def test_form_messages_use_the_labels_a_user_sees():
    config = RunConfig(n_features=64, embed_dim=100, lr=0.1, bias_decay=50.0)
    _, errors = form_errors(values_from_config(config))
    assert errors["embed_dim"].startswith("Embedding dim m must be below Features N (N = 64): allowed 1 to 63")
    assert errors["bias_decay"].startswith("Bias decay * Learning rate must be at most 1")
    # Start is off: the summary names every field to fix, and says which are in the collapsed Advanced section.
    assert form_summary(errors) == "To start, fix: Embedding dim m (Advanced), Bias decay."


def test_a_config_over_the_memory_budget_says_so_above_start(monkeypatch):
    monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", "0.01")
    config, errors = form_errors(values_from_config(preset_config("quick-negative-bias").replace(steps=2**20)))
    assert config is None and list(errors) == ["memory"]  # no field is wrong: the message must still show
    assert form_summary(errors).startswith("This run needs about")
    assert "reduce Steps" in form_summary(errors)
    # with a field to fix too, the two are sentences of their own
    _, errors = form_errors(values_from_config(preset_config("quick-negative-bias").replace(steps=2**20, lr=5)))
    errors["memory"] = "this run needs about 9 GiB: reduce Steps"
    assert form_summary(errors) == "this run needs about 9 GiB: reduce Steps. To start, fix: Learning rate (Advanced)."


def test_a_paper_scale_preset_says_it_is_one_long_run_before_it_starts():
    from app.form import preset_options, run_cost

    labels = {o["value"]: o["label"] for o in preset_options()}
    assert "single run at lr = 0.003; paper scale" in labels["LR1"]  # not a sweep: the Sweeps page runs those
    cost = run_cost(PRESETS["LR1"].config)
    assert cost == "A long run (131,072 steps of 28.5 GFLOP): about 10 h on a 2-core CPU, 2 min on an H100 (fp32)."
    assert run_cost(PRESETS["quick-negative-bias"].config) == ""  # seconds: nothing to warn of


def test_a_paper_scale_sweep_is_timed_before_it_starts():
    from app.form import training_time
    from core.sweep import preset_sweep

    # measured on an H100 in fp32 (RESULTS.md): the six runs stacked in 631 s
    paper = preset_sweep("LR1", "paper").configs()
    assert training_time(paper) == "about 62 h on a 2-core CPU, 11 min on an H100 (fp32)"
    assert training_time(preset_sweep("LR1", "quick").configs()) == ""
    # bf16, measured on an H200: the whole stacked sweep in 142 s
    bf16 = [c.replace(precision="bf16") for c in paper]
    assert training_time(bf16) == "about 62 h on a 2-core CPU, 2 min on an H200 (bf16)"
    # a sweep over the neuron count has a shape per value: each run alone, at the single-run rate
    neurons = [c.replace(precision="bf16") for c in preset_sweep("K0", "paper").configs()]
    assert training_time(neurons) == "about 81 h on a 2-core CPU, 5 min on an H200 (bf16)"


def test_the_sweep_form_times_the_sweep_as_typed():
    from app.sweep_page import sweep_cost, sweep_from_form

    three_seeds, _ = sweep_from_form("LR1", "paper", None, 3, False)
    assert sweep_cost(three_seeds).startswith("18 runs in ") and "186 h on a 2-core CPU" in sweep_cost(three_seeds)
    two_values, _ = sweep_from_form("LR1", "paper", "0.001, 0.01", 1, False)
    assert "21 h on a 2-core CPU" in sweep_cost(two_values)
    assert sweep_cost(sweep_from_form("LR1", "quick", None, 1, False)[0]) == "6 runs in 1 job."
    assert sweep_cost(None) == ""


def test_the_sweep_form_sweeps_any_preset_over_a_chosen_field():
    from app.sweep_page import sweep_from_form
    from core.presets import PRESETS

    sweep, errors = sweep_from_form("quick-zero-bias", "quick", "0, -1", 2, False, "init_bias")
    assert not errors and sweep.field == "init_bias" and len(sweep.runs()) == 4
    assert sweep.base == PRESETS["quick-zero-bias"].config
    _, errors = sweep_from_form("quick-zero-bias", "quick", "0 -1", 1, False, "own")
    assert set(errors) == {"field"} and "name the field to sweep" in errors["field"]
    # another field than the batch's own: the batch's values (learning rates) are not init biases
    _, errors = sweep_from_form("LR3", "quick", None, 1, False, "init_bias")
    assert errors == {"values": "values are needed: LR3 has none of its own for init_bias"}
    sweep, errors = sweep_from_form("LR3", "quick", "0 -2", 1, False, "init_bias")
    assert not errors and [c.init_bias for c in sweep.configs()] == [0.0, -2.0] and sweep.base.bias_decay == 0.12
    _, errors = sweep_from_form("LR3", "quick", "1", 1, False, "task")
    assert "field must be one of" in errors["field"]
    # a decimal comma is named, not read as two values (0 and 01)
    _, errors = sweep_from_form("LR3", "quick", "0,01 0,02", 1, False)
    assert errors == {"values": "0,01 reads as two values (commas and spaces both separate them): write decimals "
                                "with a point, as 0.01"}


def test_the_sweep_form_lowers_the_snapshot_interval_for_fewer_steps_as_the_api_does():
    from app.sweep_page import sweep_from_form

    sweep, errors = sweep_from_form("quick-negative-bias", "quick", "0.01 0.02", 1, False, "lr", "steps=100")
    assert errors == {} and {c.snapshot_every for c in sweep.configs()} == {100}
    sweep, errors = sweep_from_form("quick-negative-bias", "quick", "100 200", 1, False, "steps")
    assert errors == {} and [c.snapshot_every for c in sweep.configs()] == [100, 100]
    # a set field that no run can take is the "Also set" box's problem
    _, errors = sweep_from_form("quick-negative-bias", "quick", "0.01 0.02", 1, False, "lr", "bias_decay=400")
    assert set(errors) == {"settings"} and "bias_decay * lr must be at most 1" in errors["settings"]


def blank(config: RunConfig, *names: str) -> list:
    return [None if n in names else v for n, v in zip(FIELD_NAMES, values_from_config(config))]


def test_a_blank_field_is_said_to_be_required_not_judged_by_a_default_never_typed():
    config, errors = form_errors(blank(preset_config("demo-tiny").replace(steps=100), "snapshot_every"))
    assert config is None and errors == {"snapshot_every": "Snapshot every is empty or not a readable number: an "
                                                           "integer from 1 to 1048576"}
    _, errors = form_errors(blank(RunConfig(n_features=8, embed_dim=4, lr=-1.0), "embed_dim"))
    # not "allowed 1 to 7, got 16"
    assert errors["embed_dim"].startswith("Embedding dim m is empty or not a readable number")
    assert errors["lr"].startswith("Learning rate must be")  # a value wrong on its own still says so


def test_fewer_steps_than_the_preset_snapshots_lower_the_interval_in_links_and_as_typed():
    preset = preset_config("quick-negative-bias")
    assert preset.snapshot_every == 256
    linked = config_from_query("?preset=quick-negative-bias&steps=100")
    assert linked.config == preset.replace(steps=100, snapshot_every=100) and linked.ignored == []
    assert form_errors(values_from_config(linked.config))[1] == {}
    typed = values_from_config(preset.replace(steps=100))  # Steps typed; the interval still the preset's
    assert snapshots_for_steps(typed, "quick-negative-bias") == 100
    # the user's own interval is theirs to fix: the form marks it
    assert snapshots_for_steps(values_from_config(preset.replace(steps=100, snapshot_every=300)),
                               "quick-negative-bias") is None
    assert config_from_query("?preset=quick-negative-bias&steps=100&snapshot_every=300").config.snapshot_every == 300
    assert snapshots_for_steps(values_from_config(preset.replace(steps=5000)), "quick-negative-bias") is None
    # an interval the form lowered follows Steps on: lower still, and back up to the preset's
    lowered = preset.replace(steps=50, snapshot_every=100)
    assert snapshots_for_steps(values_from_config(lowered), "quick-negative-bias", previous_steps=100) == 50
    raised = preset.replace(steps=5000, snapshot_every=100)
    assert snapshots_for_steps(values_from_config(raised), "quick-negative-bias", previous_steps=100) == 256
    # continuing a run (the form's preset "custom"), its interval is the one that follows
    demo = preset_config("demo-tiny")
    fewer = values_from_config(demo.replace(steps=10))
    assert snapshots_for_steps(fewer, "custom", previous_steps=demo.steps, continued=demo) == 10


def test_too_little_bias_decay_for_the_steps_is_pointed_out_with_the_decay_that_fits():
    """The quick presets' decay is calibrated for 8192 steps: at 2048 it shrinks the biases by exp(-1.2) only."""
    from app.form import decay_note, run_cost

    preset = preset_config("quick-negative-bias")
    assert decay_note(preset) == "" and run_cost(preset) == ""
    assert decay_note(preset.replace(steps=2048)) == (
        "Bias decay shrinks the biases by about exp(-1.2) in all (decay x lr x steps / 2), which leaves many neurons "
        "dead; about exp(-5) works: bias decay 0.488 for 2,048 steps at this learning rate.")
    assert decay_note(preset.replace(steps=2048, init_bias=0.0)) == ""  # no silenced neuron to revive
    assert decay_note(preset.replace(steps=2048, bias_decay=0.0)) == ""  # no decay asked for: a choice
    assert decay_note(preset.replace(steps=8, snapshot_every=8)) == ""  # no allowed decay would do: none suggested


def test_a_bias_decayed_away_early_in_the_run_is_pointed_out():
    """demo-tiny's decay is calibrated for 2048 steps: over 40000 the bias is gone by step 1000 (mono 0 seen)."""
    from app.form import decay_note

    preset = preset_config("demo-tiny")
    assert decay_note(preset) == "" and decay_note(preset.replace(steps=4096)) == ""  # by 1000 of 4096: not early
    assert decay_note(preset.replace(steps=40000, snapshot_every=256)) == (
        "Bias decay shrinks the biases to about exp(-5) of their size by step 1,000 of 40,000 (exp(-100) by half-way; "
        "decay x lr x steps / 2); exp(-5) by half-way works: bias decay 0.025 for 40,000 steps at this learning rate.")
