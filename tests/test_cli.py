import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_train_writes_run_file_and_json_summary(tmp_path):
    out = tmp_path / "run.pt"
    result = cli("train", "--preset", "demo-tiny", "--steps", "64", "--snapshot-every", "16",
                 "--n-neurons", "32", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 64 and summary["out"] == str(out) and summary["device"] == "cpu"
    assert set(summary) >= {"final_loss", "mono_ratio", "mean_bias", "seconds", "steps_per_second"}
    record = torch.load(out, weights_only=True)
    assert record["k"] == 32 and record["final_model"]["0.weight"].shape == (32, 6)
    assert abs(record["metrics"]["final_loss"] - summary["final_loss"]) < 1e-9
    assert "step" in result.stderr  # the progress bar


def test_bad_values_exit_2_naming_each_field_and_write_nothing(tmp_path):
    out = tmp_path / "run.pt"
    result = cli("train", "--eps", "2", "--n-neurons", "-3", "--task", "sideways", "--out", str(out))
    assert result.returncode == 2
    for field in ("eps", "n_neurons", "task"):
        assert f"{field} must be" in result.stderr
    assert not out.exists()


def test_unwritable_out_is_refused_before_training(tmp_path):
    folder, file = tmp_path / "a-folder", tmp_path / "a-file"
    folder.mkdir()
    file.write_text("")
    for out, says in ((folder, "is a folder"), (file / "run.pt", "is a file"), ("", "empty")):
        result = cli("train", "--preset", "demo-tiny", "--steps", "100000", "--quiet", "--out", str(out))
        assert result.returncode == 2 and "out: " in result.stderr and says in result.stderr, result.stderr
    result = cli("sweep", "--preset", "demo-tiny", "--field", "lr", "--values", "0.01", "0.02", "--steps", "100000",
                 "--quiet", "--out", str(file))
    assert result.returncode == 2 and "out: " in result.stderr and "is a file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]  # nothing written


def test_unknown_preset_and_flag_exit_2():
    assert cli("train", "--preset", "nope").returncode == 2
    result = cli("train", "--colour", "red")
    assert result.returncode == 2 and "colour" in result.stderr


def test_out_paths_that_fail_only_when_written_are_refused_before_training(tmp_path):
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    long_name = tmp_path / ("a" * 300 + ".pt")
    for out in (broken / "run.pt", long_name):
        result = cli("train", "--preset", "demo-tiny", "--steps", "100000", "--quiet", "--out", str(out))
        assert result.returncode == 2 and "out: cannot write" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = cli("sweep", "--preset", "demo-tiny", "--field", "lr", "--values", "0.01", "--steps", "100000",
                 "--quiet", "--out", str(broken))
    assert result.returncode == 2 and "broken link" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
    deep = tmp_path / "new" / "deeper" / "run.pt"  # missing folders are made, and the probe leaves nothing
    assert cli("train", "--preset", "demo-tiny", "--steps", "16", "--snapshot-every", "16", "--quiet",
               "--out", str(deep)).returncode == 0
    assert [p.name for p in deep.parent.iterdir()] == ["run.pt"]


def test_environment_and_device_problems_exit_2_before_training():
    env = {**os.environ, "LAB_MEMORY_BUDGET_GIB": "nan"}
    result = subprocess.run([sys.executable, "-m", "core.cli", "train", "--preset", "demo-tiny"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "LAB_MEMORY_BUDGET_GIB must be a number of GiB" in result.stderr
    if not torch.cuda.is_available():
        result = cli("train", "--preset", "demo-tiny", "--device", "cuda")
        assert result.returncode == 2 and "device must be auto or cpu on this machine" in result.stderr
    result = cli("sweep", "--preset", "LR3", "--field", "", "--values", "0.01")
    assert result.returncode == 2 and "field must be one of" in result.stderr


def test_negative_numbers_in_e_notation_are_values_not_options():
    from core.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--init-bias", "-1e-3"]).init_bias == "-1e-3"
    assert parser.parse_args(["sweep", "--preset", "LR3", "--values", "-1e-1", "-2", "-.5"]).values == [
        "-1e-1", "-2", "-.5"]
    assert parser.parse_args(["train", "--init-bias", "-1"]).init_bias == "-1"
