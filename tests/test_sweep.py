import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.presets import LR_VALUES, PAPER_BASE, PAPER_BATCHES
from core.sweep import Sweep, preset_sweep, run_sweep, seeds_from, with_settings
from core.train import Trainer, max_runs_per_job

ROOT = Path(__file__).resolve().parents[1]


def test_per_run_fields_batch_into_one_job_and_shapes_split(tiny):
    assert len(Sweep(tiny, "lr", (0.003, 0.01, 0.03)).jobs()) == 1
    assert len(Sweep(tiny, "init_bias", (0.0, -1.0), seeds=(0, 1)).jobs()) == 1
    assert len(Sweep(tiny, "n_neurons", (16, 24, 32)).jobs()) == 3


def test_a_stacked_paper_sweep_on_a_gpu_is_split_into_jobs_within_the_memory_budget(monkeypatch):
    monkeypatch.setenv("LAB_MEMORY_BUDGET_GIB", "2")
    sweep = Sweep(PAPER_BASE.replace(device="cuda"), "lr", LR_VALUES, seeds=(0, 1, 2))
    per_job = max_runs_per_job(sweep.base)
    assert 1 < per_job < len(sweep.configs())
    jobs = sweep.jobs()
    assert all(len(job) <= per_job for job in jobs) and len(jobs) > 1
    assert sorted(i for job in jobs for i in job) == list(range(len(sweep.configs())))
    assert all(len(job) == 1 for job in Sweep(PAPER_BASE.replace(device="cpu"), "lr", LR_VALUES).jobs())


def test_seeds_own_by_default_shared_on_request(tiny):
    own = Sweep(tiny, "lr", (0.003, 0.01), seeds=(0, 1))
    assert [seed for _, seed, _ in own.runs()] == [0, 1, 1000, 1001]
    shared = Sweep(tiny, "lr", (0.003, 0.01), seeds=(0, 1), shared_seed=True)
    assert [seed for _, seed, _ in shared.runs()] == [0, 1, 0, 1]


def test_batched_sweep_equals_separate_runs_for_two_fields(tiny):
    for sweep in (Sweep(tiny, "lr", (0.003, 0.03)), Sweep(tiny, "bias_decay", (0.0, 5.0), shared_seed=True)):
        results = run_sweep(sweep)
        for result in results:
            alone = Trainer([result.config])
            alone.advance(result.config.steps)
            assert torch.allclose(result.record["final_model"]["0.weight"], alone.weights[0].w1.detach(),
                                  rtol=1e-5, atol=1e-6)
            assert abs(result.record["metrics"]["final_loss"] - alone.final_loss(0)) < 1e-5


def test_paper_batches_have_quick_twins():
    sweep = preset_sweep("LR3")
    assert sweep.field == "lr" and sweep.values == (0.001, 0.003, 0.005, 0.007, 0.01, 0.03)
    assert sweep.base.n_features == 128 and sweep.base.steps == 8192
    assert len(sweep.jobs()) == 1  # six learning rates, one batched job
    paper = preset_sweep("LR3", scale="paper")
    assert paper.base.n_features == 512
    assert len(paper.jobs()) == 6  # at batch 8192 stacking costs more than it saves on a CPU


def test_cli_sweep_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "demo-tiny", "--field",
                             "init_bias", "--values", "0", "-1", "--steps", "64", "--snapshot-every", "16",
                             "--out", str(out), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["field"] == "init_bias" and summary["jobs"] == 1 and len(summary["runs"]) == 2
    assert summary["settings"] == {"steps": 64, "snapshot_every": 16}
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [float(r["init_bias"]) for r in rows] == [0.0, -1.0]
    assert {"final_loss", "mono_ratio", "nearly_mono_neurons", "mean_bias", "dead_neurons"} <= set(rows[0])
    record = torch.load(out / rows[1]["file"], weights_only=True)
    assert record["initial_bias"] == -1.0 and record["log2_training_steps"] == 6


def test_cli_sweep_says_which_runs_diverged_and_writes_strict_json(tmp_path):
    out = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "demo-tiny", "--field", "lr",
                             "--values", "0.01", "1", "--nonlinearity", "solu", "--init-bias", "8", "--steps", "64",
                             "--snapshot-every", "16", "--quiet", "--out", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "error: lr=1, seed 1000: loss became inf at step" in result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in summary.json")

    runs = json.loads((out / "summary.json").read_text(), parse_constant=refuse)["runs"]
    assert runs[0]["error"] is None and runs[1]["error"].startswith("loss became inf")
    assert runs[1]["final_loss"] is None  # not NaN, which JSON does not have


def test_cli_sweep_rejects_bad_values(tmp_path):
    result = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "LR1", "--values", "0.01", "5",
                             "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "lr=5" in result.stderr
    assert not (tmp_path / "x").exists()


def test_sweep_inputs_checked_before_anything_is_built():
    with pytest.raises(ValueError, match="seeds must be an integer from 1 to 16, got 2000000"):
        preset_sweep("demo-tiny", field_name="lr", values=["0.01"], seeds=2_000_000)  # not a list of 2M first
    with pytest.raises(ValueError, match="seeds .* got -5.*'abc'.*'x'"):  # every problem at once
        preset_sweep("demo-tiny", field_name="lr", values=["0.01", "abc", "x"], seeds=-5)
    near_twins = preset_sweep("demo-tiny", field_name="lr", values=["0.01", "0.010000001"], shared_seed=True)
    assert "0.01 is given more than once" in near_twins.validate()["values"]  # they would share one run file name
    with pytest.raises(ValueError, match=r"lr must be a number in \(0, 1\], got 'nan'"):  # quoted as typed
        preset_sweep("demo-tiny", field_name="lr", values=["0.01", "nan"])
    out_of_range = preset_sweep("demo-tiny", field_name="lr", values=["0.01", "2", "3"]).validate()["values"]
    assert "lr=2" in out_of_range and "lr=3" in out_of_range
    pasted = ["x"] * 5000  # counted first: one short message, not 5000 parse errors
    with pytest.raises(ValueError, match=r"^values must list 1 to 32 values, got 5000$"):
        preset_sweep("demo-tiny", field_name="lr", values=pasted)
    lr3 = preset_sweep("LR3")
    too_high = Sweep(lr3.base, "lr", lr3.values, seeds_from(2147483640, 16))
    assert too_high.validate() == {"seed": "the runs' seeds would go up to 2147488655: seed must be an integer from 0 "
                                           "to 2147483647 (without a shared seed, the runs of the i-th value use seed "
                                           "+ 1000 x i)"}  # once, not once per run


def test_cli_sweep_starts_its_seeds_from_the_given_seed(tmp_path):
    out = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "demo-tiny", "--field",
                             "init_bias", "--values", "0", "-1", "--seed", "7", "--steps", "32", "--snapshot-every",
                             "16", "--quiet", "--out", str(out), "--json"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert [row["seed"] for row in json.loads(result.stdout.strip().splitlines()[-1])["runs"]] == [7, 1007]
    too_big = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "demo-tiny", "--field",
                              "init_bias", "--values", "0", "-1", "--seed", "2147483000", "--out", str(tmp_path / "x")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert too_big.returncode == 2 and "seed + 1000 x i" in too_big.stderr


def test_a_sweep_of_init_variants_keeps_one_world():
    sweep = preset_sweep("demo-tiny", field_name="init_variant", values=["0", "1", "2"], seeds=2)
    assert [(value, seed) for value, seed, _ in sweep.runs()] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_settings_change_every_run_and_name_the_sweep():
    # LR3's learning rates from zero bias without decay: the paper's LR1 beside LR3 from one batch
    sweep, errors = with_settings(preset_sweep("LR3"), {"init_bias": "0", "bias_decay": 0, "seed": "5"})
    assert errors == {}
    assert {(c.init_bias, c.bias_decay) for c in sweep.configs()} == {(0.0, 0.0)}
    assert [c.lr for c in sweep.configs()] == list(PAPER_BATCHES["LR3"].quick().values)
    assert sweep.title == "LR3 with init_bias=0, bias_decay=0, seed=5" and sweep.seeds == (5,)
    assert with_settings(sweep, {}) == (sweep, {})


def test_a_paper_scale_batch_is_named_for_its_scale():
    """LR3 at quick scale (the default) and at paper scale overlay and list apart."""
    assert preset_sweep("LR3").title == "LR3"
    paper = preset_sweep("LR3", "paper")
    assert paper.title == "LR3 (paper scale)" and paper.base.batch_size == 8192
    assert preset_sweep("quick-zero-bias", "paper", ["0.01"], field_name="lr").title == "quick-zero-bias"


@pytest.mark.parametrize("settings, field, says", [
    ({"lr": "0.1"}, "lr", "lr is the swept field"),
    ({"init_bias": "x"}, "init_bias", "init_bias must be a number in [-10, 10], got 'x'"),
    ({"color": "1"}, "color", "unknown field 'color'"),
    ({"steps": "1"}, "steps", "steps must be an integer from 2 to"),
])
def test_bad_settings_are_named_and_build_nothing(settings, field, says):
    sweep, errors = with_settings(preset_sweep("LR3"), settings)
    assert sweep is None and says in errors[field]


def test_a_huge_unknown_setting_is_named_cut_short_not_a_crash():
    """Its key is echoed cut, as for a run's fields: looking it up by the name sent raised KeyError (a 500)."""
    sweep, errors = with_settings(preset_sweep("LR3"), {"x" * 100: "1"})
    assert sweep is None and list(errors.values())[0].startswith("unknown field 'xxxx")


def test_settings_are_checked_across_fields_with_each_runs_own_swept_value():
    """embed_dim=40 fits a sweep of n_features over 64 and 128: it was refused against the preset's N = 32."""
    wide = preset_sweep("demo-tiny", values=["64", "128"], field_name="n_features")
    sweep, errors = with_settings(wide, {"embed_dim": "40", "steps": "4", "snapshot_every": "4"})
    assert errors == {} and sweep.validate() == {} and [c.embed_dim for c in sweep.configs()] == [40, 40]
    slow = preset_sweep("demo-tiny", values=["0.001", "0.002"], field_name="lr")
    assert with_settings(slow, {"bias_decay": "400"})[0].validate() == {}  # 400 * 0.002 <= 1
    # one that no run meets is still refused, by the runs' check, each value named
    too_wide, _ = with_settings(wide, {"embed_dim": "100"})
    assert too_wide.validate()["values"] == ("at n_features=64: embed_dim (m) must be below n_features (N = 64): "
                                             "allowed 1 to 63, got 100")


def test_cli_sweep_settings_are_refused_for_the_swept_field(tmp_path):
    result = subprocess.run([sys.executable, "-m", "core.cli", "sweep", "--preset", "LR1", "--lr", "0.1",
                             "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error: lr is the swept field" in result.stderr
    assert not (tmp_path / "x").exists()


def test_an_unknown_preset_lists_every_preset_a_field_can_be_swept_on():
    from core.presets import PRESETS

    with pytest.raises(ValueError) as err:
        preset_sweep("quick-zero-bais", field_name="lr", values=["0.01"])
    assert str(err.value).startswith(f"unknown preset 'quick-zero-bais'; allowed: {', '.join(PRESETS)} (")
    assert "quick-zero-bias" in str(err.value) and "LR3" in str(err.value)


def test_a_problem_only_some_values_have_is_filed_under_values():
    """n_features values below embed_dim: the Values box is what to fix (the message was filed under embed_dim, and
    no box of the form was marked)."""
    errors = preset_sweep("quick-zero-bias", values=["8", "32"], field_name="n_features").validate()
    assert list(errors) == ["values"] and "at n_features=8: embed_dim (m) must be below n_features" in errors["values"]
    every = preset_sweep("quick-zero-bias", values=["8", "12"], field_name="n_features").validate()
    assert list(every) == ["embed_dim"]  # every value: the base config's embed_dim, as much as the values


def test_a_sweep_over_steps_raises_the_snapshot_interval_of_runs_too_long_for_it(tiny):
    """At most 65,536 snapshots a run: no one interval fits both 8 steps and 2^20, so the long runs' is raised."""
    sweep = Sweep(tiny.replace(snapshot_every=8), "steps", (8, 2**20))
    assert sweep.validate() == {}
    assert [c.snapshot_every for c in sweep.configs()] == [8, 16]
