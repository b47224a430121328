"""Continuing a finished run from its final weights with settings changed (core.continuation)."""

import io
import math
import re

import numpy as np
import pytest
import torch

from core.config import RunConfig
from core.continuation import CannotContinue
from core.jobs import InvalidConfig, Lab, can_continue
from core.runfile import load_run_file
from core.store import DiskStore
from core.train import Trainer
from tests.helpers import diverging_config, wait_until

LONG = RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=64, steps=200_000,
                 snapshot_every=500, device="cpu")
PARENT = RunConfig(n_features=16, embed_dim=4, n_neurons=24, eps=1 / 8, batch_size=64, steps=600,
                   snapshot_every=100, lr=0.01, device="cpu")


def first_losses(lab, run_id: str, n: int = 16) -> float:
    return float(np.mean(lab.history(run_id)["losses"][:n]))


def test_a_continued_run_starts_where_its_parent_ended_and_keeps_its_start_when_the_parent_goes(pool):
    lab = pool.lab
    parent = lab.submit(PARENT, label="zero bias")
    with pytest.raises(CannotContinue, match="only a done, stopped or diverged run"):  # no final weights yet
        lab.continue_run(parent, PARENT)
    wait_until(lambda: lab.get(parent)["status"] == "done", message="the parent")
    parent_file = torch.load(io.BytesIO(lab.run_file(parent)), weights_only=True)

    # L1 on the hidden activations from the parent's weights: the authors' way to push a model out of its basin
    with_l1 = PARENT.replace(l1_reg=0.01, steps=200, snapshot_every=50)
    child = lab.continue_run(parent, with_l1, label="zero bias + L1")
    assert lab.get(child)["start"] == {"run": parent, "label": "zero bias", "step": PARENT.steps, "bias_push": 0.0,
                                   "offset": PARENT.steps}
    lab.delete(parent)  # its start was copied: the child loses nothing
    wait_until(lambda: lab.get(child)["status"] == "done", message="the continued run")
    fresh = lab.submit(with_l1, label="fresh")
    wait_until(lambda: lab.get(fresh)["status"] == "done", message="a fresh run of the same config")

    # It starts in the parent's basin: its first losses are the parent's last, far below a fresh start's.
    parent_final = parent_file["metrics"]["final_loss"]
    assert first_losses(lab, child) < 1.5 * parent_final < first_losses(lab, fresh)
    record = torch.load(io.BytesIO(lab.run_file(child)), weights_only=True)
    assert record["started_from"] == {"run": parent, "label": "zero bias", "step": PARENT.steps, "bias_push": 0.0,
                                   "offset": PARENT.steps}
    assert record["config"]["l1_reg"] == 0.01


def test_a_continued_run_keeps_what_its_weights_mean(pool):
    lab = pool.lab
    parent = lab.submit(PARENT.replace(steps=50, snapshot_every=50))
    wait_until(lambda: lab.get(parent)["status"] == "done", message="the parent")
    with pytest.raises(InvalidConfig) as refused:
        lab.continue_run(parent, PARENT.replace(n_neurons=32, seed=3, init_variant=1))
    assert set(refused.value.errors) == {"n_neurons", "seed", "init_variant"}
    assert "n_neurons must stay 24 when continuing run" in refused.value.errors["n_neurons"]
    assert "not from a fresh init" in refused.value.errors["init_variant"]
    with pytest.raises(InvalidConfig) as refused:  # weights are saved after steps 1, 2, 4, ..., 32 of 50
        lab.continue_run(parent, PARENT, step=48)
    assert refused.value.errors["from_step"] == ("from_step must be a step with saved weights (1, 2, 4, 8, 16, 32, "
                                                 "50) or none for the final weights, got 48")
    assert [m["id"] for m in lab.list()] == [parent]  # nothing queued
    last = lab.continue_run(parent, PARENT, step=50)  # the last step, by number: the final weights
    assert lab.get(last)["start"]["step"] == 50
    lab.delete(last)
    # from the weights saved after step 8: where the inspector's replay stood
    early = lab.continue_run(parent, PARENT.replace(l1_reg=0.01), step=8)
    assert lab.get(early)["start"]["step"] == 8
    wait_until(lambda: lab.get(early)["status"] == "done", message="the run continued from step 8")
    record = torch.load(io.BytesIO(lab.run_file(early)), weights_only=True)
    assert record["started_from"]["step"] == 8


def test_a_change_of_init_bias_pushes_the_trained_biases_by_the_difference(pool):
    lab = pool.lab
    trained_with = PARENT.replace(init_bias=-0.5, bias_decay=0.5)
    parent = lab.submit(trained_with, label="negative bias")
    wait_until(lambda: lab.get(parent)["status"] == "done", message="the parent")
    trained = torch.load(io.BytesIO(lab.run_file(parent)), weights_only=True)["final_model"]
    # a learning rate too small to move the weights in the step before the first save (after step 1)
    barely = trained_with.replace(lr=1e-9, steps=2, snapshot_every=1)
    children = lab.continue_runs(parent, [barely.replace(init_bias=b) for b in (-1.5, -0.5, 0.5)])
    assert [lab.get(c)["label"] for c in children] == [
        "negative bias → lr=1e-09, biases pushed by -1, steps=2",
        "negative bias → lr=1e-09, steps=2",
        "negative bias → lr=1e-09, biases pushed by 1, steps=2"]
    assert [lab.get(c)["start"]["bias_push"] for c in children] == [-1.0, 0.0, 1.0]
    wait_until(lambda: all(lab.get(c)["status"] == "done" for c in children), message="the pushed runs")
    for child, push in zip(children, (-1.0, 0.0, 1.0)):
        first = torch.load(io.BytesIO(lab.run_file(child)), weights_only=True)["log2_spaced_models"][0]
        torch.testing.assert_close(first["0.bias"], trained["0.bias"] + push, atol=1e-6, rtol=0)
        torch.testing.assert_close(first["0.weight"], trained["0.weight"], atol=1e-6, rtol=0)


def test_a_given_start_replaces_the_drawn_weights_and_leaves_the_samples_alone(tiny):
    fresh = Trainer([tiny])
    start = Trainer([tiny.replace(seed=9)]).weights[0]
    continued = Trainer([tiny], starts=[start])
    for given, used in zip(start.tensors(), continued.weights[0].tensors()):
        assert torch.equal(given, used)
    # the generator stands where a fresh run's does: the same samples train both
    fresh.advance(1)
    continued.advance(1)
    assert torch.equal(fresh.workspace.x, continued.workspace.x)


def test_cli_trains_on_from_a_run_file(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core.cli", "train", *args, "--quiet"], cwd=root,
                              capture_output=True, text=True, timeout=120)

    tiny = ["--n-features", "16", "--embed-dim", "4", "--n-neurons", "24", "--batch-size", "64", "--lr", "0.01"]
    parent = cli(*tiny, "--steps", "600", "--snapshot-every", "100", "--out", str(tmp_path / "parent.pt"), "--json")
    assert parent.returncode == 0, parent.stderr
    child = cli("--continue-from", str(tmp_path / "parent.pt"), "--l1-reg", "0.01", "--steps", "64",
                "--snapshot-every", "16", "--out", str(tmp_path / "child.pt"))
    assert child.returncode == 0, child.stderr
    record = torch.load(tmp_path / "child.pt", weights_only=True)
    assert record["started_from"] == {"file": str(tmp_path / "parent.pt"), "step": 600, "bias_push": 0.0,
                                     "offset": 600}
    assert record["config"]["l1_reg"] == 0.01 and record["config"]["n_neurons"] == 24  # the file's config, changed
    # it starts in its parent's basin
    assert np.mean(record["loss_history"][:16].numpy()) < 1.5 * json.loads(parent.stdout.splitlines()[-1])["final_loss"]
    pushed = cli("--continue-from", str(tmp_path / "parent.pt"), "--init-bias", "-1", "--lr", "1e-9", "--steps", "2",
                 "--snapshot-every", "1", "--out", str(tmp_path / "pushed.pt"))
    assert pushed.returncode == 0, pushed.stderr
    record = torch.load(tmp_path / "pushed.pt", weights_only=True)
    assert record["started_from"]["bias_push"] == -1.0
    parent_biases = torch.load(tmp_path / "parent.pt", weights_only=True)["final_model"]["0.bias"]
    torch.testing.assert_close(record["log2_spaced_models"][0]["0.bias"], parent_biases - 1, atol=1e-6, rtol=0)
    # it trains in its parent's world, as the file keeps it (a GPU's generator draws another from the same seed)
    record = torch.load(tmp_path / "parent.pt", weights_only=True)
    record["setup"]["fixed_embedder"] = -record["setup"]["fixed_embedder"]
    torch.save(record, tmp_path / "elsewhere.pt")
    assert cli("--continue-from", str(tmp_path / "elsewhere.pt"), "--steps", "2", "--snapshot-every", "1", "--out",
               str(tmp_path / "world.pt")).returncode == 0
    assert torch.equal(torch.load(tmp_path / "world.pt", weights_only=True)["setup"]["fixed_embedder"],
                       record["setup"]["fixed_embedder"])
    refused = cli("--continue-from", str(tmp_path / "parent.pt"), "--n-neurons", "32")
    assert refused.returncode == 2 and "n_neurons must stay 24 when continuing run" in refused.stderr
    too_far = cli("--continue-from", str(tmp_path / "parent.pt"), "--init-bias", "-11")
    assert too_far.returncode == 2 and "(continuing, it is the total: run " in too_far.stderr
    missing = cli("--continue-from", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "--continue-from: not a readable run file" in missing.stderr


def test_a_run_stopped_while_paused_keeps_what_it_learnt(pool):
    """Its checkpoint is the only copy of its weights: Stop hands it to a worker, which saves its run file from it
    (no step further); a run stopped before it trained has nothing to continue from."""
    lab = pool.lab
    run_id = lab.submit(LONG)
    wait_until(lambda: lab.get(run_id)["step"] > 0, message="training")
    lab.pause(run_id)
    wait_until(lambda: lab.get(run_id)["status"] == "paused", message="paused")
    paused_at = lab.get(run_id)["step"]
    lab.stop(run_id)
    wait_until(lambda: lab.get(run_id)["status"] == "stopped", message="stopped by a worker")
    meta = lab.get(run_id)
    assert meta["has_file"] and meta["step"] == paused_at and meta["note"] is None
    record = load_run_file(io.BytesIO(lab.run_file(run_id)))
    assert record["metrics"]["steps_trained"] == paused_at
    child = lab.continue_run(run_id, LONG.replace(steps=64, snapshot_every=16))
    assert lab.get(child)["start"]["step"] == paused_at



def test_a_run_stopped_before_it_trained_has_nothing_to_continue_from(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))  # no worker: the run waits in the queue
    run_id = lab.submit(LONG)
    lab.stop(run_id)
    assert lab.get(run_id)["status"] == "stopped" and lab.get(run_id)["step"] == 0
    with pytest.raises(CannotContinue, match="stopped before it trained a step"):
        lab.continue_run(run_id, LONG)
    assert not lab.get(run_id).get("has_file")  # so the run list offers no Continue


def test_continuing_at_several_values_trains_them_as_one_batched_job(pool):
    """The comparison starter's runs (one start, several settings) train stacked, as a sweep's do."""
    lab = pool.lab
    parent = lab.submit(PARENT, label="zero bias")
    wait_until(lambda: lab.get(parent)["status"] == "done", message="the parent")
    parent_final = torch.load(io.BytesIO(lab.run_file(parent)), weights_only=True)["metrics"]["final_loss"]
    children = lab.continue_runs(parent, [PARENT.replace(l1_reg=v, steps=100, snapshot_every=50) for v in (0.01, 0.03)])
    assert len({lab.get(c)["job"] for c in children}) == 1
    assert [lab.get(c)["label"] for c in children] == ["zero bias → l1_reg=0.01, steps=100",
                                                      "zero bias → l1_reg=0.03, steps=100"]
    wait_until(lambda: all(lab.get(c)["status"] == "done" for c in children), message="the continued runs")
    for child in children:  # each from the parent's weights
        assert first_losses(lab, child) < 1.5 * parent_final
        assert lab.get(child)["start"] == {"run": parent, "label": "zero bias", "step": PARENT.steps, "bias_push": 0.0,
                                   "offset": PARENT.steps}


def test_a_diverged_run_is_continued_from_its_last_good_weights(pool):
    lab = pool.lab
    config = diverging_config()
    run_id = lab.submit(config, label="too fast")
    meta = wait_until(lambda: (m := lab.get(run_id))["status"] == "failed" and m.get("has_file") and m,
                      message="the run to diverge and its weights to be saved")
    first_bad = int(re.search(r"loss became \S+ at step (\d+)", meta["error"]).group(1))
    kept = 2 ** int(math.log2(first_bad - 2))  # the last power of 2 whose weights gave a finite next loss
    assert can_continue(meta) and meta["weights_step"] == kept
    record = load_run_file(io.BytesIO(lab.run_file(run_id)))
    assert record["metrics"]["steps_trained"] == kept and record["metrics"]["diverged_at"] == first_bad
    # the weights of that step: the replay frame there keeps their biases
    assert np.array_equal(lab.frame(run_id, kept)["bias"], record["final_model"]["0.bias"].numpy())

    assert f"weights up to step {kept} kept: Continue goes on from step 1" in meta["note"]
    by_default = lab.continue_run(run_id, config.replace(lr=0.01, steps=256))  # from the last of them
    assert lab.get(by_default)["label"] == f"too fast at step {kept} → lr=0.01, steps=256"
    assert lab.get(by_default)["start"]["step"] == kept
    lab.delete(by_default)
    # its loss ran away from the first steps: at step 1 it had not yet, and a lower learning rate trains on from there
    child = lab.continue_run(run_id, config.replace(lr=0.01, steps=256), step=1)
    assert lab.get(child)["label"] == "too fast at step 1 → lr=0.01, steps=256"
    wait_until(lambda: lab.get(child)["status"] == "done", message="the continued run")
    assert np.isfinite(lab.history(child)["losses"]).all()


def test_a_run_that_cannot_be_continued_says_why(tmp_path):
    lab = Lab(DiskStore(tmp_path / "data"))
    run_id = lab.submit(PARENT)
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "status": "failed", "error": "loss became nan at step 1",
                                     "diverged": True})
    with pytest.raises(CannotContinue, match="it diverged before any weights were saved"):
        lab.continue_run(run_id, PARENT)
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "error": "its job record was lost", "diverged": False})
    with pytest.raises(CannotContinue, match="only a done, stopped or diverged run has weights"):
        lab.continue_run(run_id, PARENT)
    lab.store.set(f"meta/{run_id}", {**lab.get(run_id), "job_failed": True, "has_file": True})
    with pytest.raises(CannotContinue, match="it failed with its job: Resume retries it"):
        lab.continue_run(run_id, PARENT)
