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


def test_fewer_steps_than_the_presets_snapshot_interval_train_without_a_flag_never_passed(tmp_path):
    """demo-tiny snapshots every 64 steps: `--steps 32` alone used to exit 2 over snapshot_every."""
    parent = tmp_path / "parent.pt"
    result = cli("train", "--preset", "demo-tiny", "--steps", "32", "--quiet", "--out", str(parent))
    assert result.returncode == 0, result.stderr
    assert torch.load(parent, weights_only=True)["config"]["snapshot_every"] == 32
    child = tmp_path / "child.pt"  # continuing: the run file's 32 is the one capped
    result = cli("train", "--continue-from", str(parent), "--steps", "8", "--quiet", "--out", str(child))
    assert result.returncode == 0, result.stderr
    assert torch.load(child, weights_only=True)["config"]["snapshot_every"] == 8
    result = cli("sweep", "--preset", "demo-tiny", "--field", "steps", "--values", "16", "32", "--quiet", "--out",
                 str(tmp_path / "sweep"), "--json")
    assert result.returncode == 0, result.stderr
    files = [row["file"] for row in json.loads(result.stdout.strip().splitlines()[-1])["runs"]]
    configs = [torch.load(tmp_path / "sweep" / f, weights_only=True)["config"] for f in files]
    assert [c["snapshot_every"] for c in configs] == [16, 16]
    given = cli("train", "--preset", "demo-tiny", "--steps", "32", "--snapshot-every", "64")  # the user's own: kept
    assert given.returncode == 2 and "snapshot_every must be between 1 and steps (32), got 64" in given.stderr


def test_sweep_settings_of_fewer_steps_cap_snapshots_without_naming_them(tmp_path):
    result = cli("sweep", "--preset", "demo-tiny", "--field", "lr", "--values", "0.01", "--steps", "32", "--quiet",
                 "--out", str(tmp_path / "sweep"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["settings"] == {"steps": 32}


def test_scale_is_refused_for_a_preset_that_is_not_a_paper_batch(tmp_path):
    """The API refuses it too: quick-zero-bias has one size, and --scale paper silently trained it at that size."""
    for scale in ("paper", "quick"):
        result = cli("sweep", "--preset", "demo-tiny", "--scale", scale, "--field", "lr", "--values", "0.01",
                     "--out", str(tmp_path / "x"))
        assert result.returncode == 2
        assert "error: --scale is for the paper batches (LR1, LR2," in result.stderr
        assert "demo-tiny has its own sizes (leave --scale out)" in result.stderr
    assert not (tmp_path / "x").exists()
    unknown = cli("sweep", "--preset", "nope", "--field", "lr", "--values", "0.01")
    assert unknown.returncode == 2 and "unknown preset 'nope'; allowed: quick-zero-bias," in unknown.stderr
    assert "demo-tiny" in unknown.stderr and "LR3" in unknown.stderr


def test_help_says_a_preset_or_run_file_gives_the_default():
    result = cli("train", "--help")
    text = " ".join(result.stdout.split())
    assert "Default: the preset's or run file's, else 0.01." in text  # --lr
    assert "else 256 (at most steps, when not given)." in text  # --snapshot-every


def test_continuing_into_the_parents_own_file_is_refused_before_training(tmp_path):
    """--out a.pt --continue-from a.pt replaced the parent with the child, whose started_from then named itself."""
    parent = tmp_path / "a.pt"
    assert cli("train", "--preset", "demo-tiny", "--steps", "16", "--quiet", "--out", str(parent)).returncode == 0
    saved = parent.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(parent)
    for out in (parent, tmp_path / "sub" / ".." / "a.pt", tmp_path / "link.pt"):  # however the path is spelt
        result = cli("train", "--continue-from", str(parent), "--steps", "4", "--quiet", "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (f"error: --out must not be the --continue-from file ({parent}): the "
                                         "continued run would replace the run it starts from; give another path")
    assert parent.read_bytes() == saved


def test_a_diverged_train_saves_its_weights_from_before_and_goes_on_from_them(tmp_path):
    out = tmp_path / "diverged.pt"
    result = cli("train", "--preset", "demo-tiny", "--nonlinearity", "solu", "--lr", "1", "--init-bias", "5",
                 "--steps", "2000", "--snapshot-every", "50", "--out", str(out), "--quiet")
    assert result.returncode == 1 and "loss became inf at step" in result.stderr
    record = torch.load(out, weights_only=True)
    kept = record["metrics"]["steps_trained"]
    assert f"{out} keeps the run up to step {kept}, the last weights saved before it diverged" in result.stderr
    assert record["metrics"]["diverged_at"] > kept and torch.isfinite(record["final_model"]["0.weight"]).all()
    # from its first step's weights, where its loss had not yet run away, with a learning rate it can take
    again = cli("train", "--continue-from", str(out), "--continue-step", "1", "--lr", "0.01", "--steps", "64",
                "--snapshot-every", "16", "--out", str(tmp_path / "on.pt"), "--quiet")
    assert again.returncode == 0, again.stderr
